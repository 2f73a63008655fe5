"""One shared encoder with a head per task (MT-DNN).

Every head runs on every example and the example's own task selects its row,
so a batch of any task (or a mix) goes through one compiled function. Heads
are padded to the widest task with zeros; losses mask the padded classes.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kdjax.models.bert import BertConfig, BertEncoder, compute_dtype
from kdjax.models.heads import TaskHead


class MultiTaskModel(nn.Module):
  """`task_outputs[t]`: classes of task t (1 for a regression task)."""
  config: BertConfig
  task_outputs: tuple[int, ...]
  dtype: Any = None  # None: the config's compute dtype

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, task_ids, *,
               deterministic: bool = True, output_hidden_states: bool = False):
    """Returns the encoder outputs plus `logits` [B, max outputs] of each example's task."""
    out = BertEncoder(self.config, self.dtype, name='bert')(
        input_ids, token_type_ids, attention_mask, deterministic=deterministic,
        output_hidden_states=output_hidden_states)
    width = max(self.task_outputs)
    per_task = []
    for t, n in enumerate(self.task_outputs):
      logits = TaskHead(n, self.config.hidden_dropout, self.config.initializer_range,
                        compute_dtype(self.config, self.dtype),
                        name=f'head_{t}')(out['pooled'], deterministic)
      per_task.append(jnp.pad(logits, ((0, 0), (0, width - n))))
    stacked = jnp.stack(per_task)                       # [T, B, width]
    out['logits'] = stacked[task_ids, jnp.arange(input_ids.shape[0])]
    return out
