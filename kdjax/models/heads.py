"""Task heads on the pooled [CLS] vector, and the encoder + head model."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kdjax.models.bert import BertConfig, BertEncoder, compute_dtype


class TaskHead(nn.Module):
  """Dropout + dense: `num_labels` logits (classification) or 1 score (regression)."""
  num_labels: int
  dropout: float
  initializer_range: float = 0.02
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled, deterministic: bool):
    pooled = nn.Dropout(self.dropout)(pooled, deterministic=deterministic)
    init = nn.initializers.normal(stddev=self.initializer_range)
    return nn.Dense(self.num_labels, kernel_init=init, dtype=self.dtype,
                    name='dense')(pooled).astype(jnp.float32)


class BertClassifier(nn.Module):
  """Encoder + task head on the pooled [CLS] vector (HF's BertForSequenceClassification).

  `num_labels` logits for classification; one score ([B, 1]) for regression.
  """
  config: BertConfig
  num_labels: int
  dtype: Any = None  # None: the config's compute dtype

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, *,
               deterministic: bool = True, output_hidden_states: bool = False,
               output_attentions: bool = False):
    out = BertEncoder(self.config, self.dtype, name='bert')(
        input_ids, token_type_ids, attention_mask, deterministic=deterministic,
        output_hidden_states=output_hidden_states,
        output_attentions=output_attentions)
    out['logits'] = TaskHead(self.num_labels, self.config.hidden_dropout,
                             self.config.initializer_range,
                             compute_dtype(self.config, self.dtype),
                             name='classifier')(out['pooled'], deterministic)
    return out
