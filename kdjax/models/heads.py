"""Task heads on the pooled [CLS] vector, and the encoder + head model."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kdjax.models.bert import BertConfig, BertEncoder, compute_dtype
from kdjax.models.dropout import Dropout


class TaskHead(nn.Module):
  """Dropout + dense: `num_labels` logits (classification) or 1 score (regression)."""
  num_labels: int
  dropout: float
  initializer_range: float = 0.02
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled, deterministic: bool):
    pooled = Dropout(self.dropout)(pooled, deterministic=deterministic)
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


class _HeadAlone(nn.Module):
  """A BertClassifier's head at the same place in the param tree ('classifier')."""
  config: BertConfig
  num_labels: int

  @nn.compact
  def __call__(self, pooled):
    return TaskHead(self.num_labels, self.config.hidden_dropout, self.config.initializer_range,
                    name='classifier')(pooled, True)


def init_head(config: BertConfig, num_labels: int, seed: int):
  """The 'classifier' params `BertClassifier(config, num_labels)` initialises from
  PRNGKey(seed), without initialising (and compiling) the encoder: Flax draws a
  submodule's params from the key and the submodule's path only."""
  pooled = jnp.zeros((1, config.hidden_size), jnp.float32)
  params = jax.jit(_HeadAlone(config, num_labels).init)(jax.random.PRNGKey(seed), pooled)
  return jax.tree.map(np.asarray, params['params']['classifier'])
