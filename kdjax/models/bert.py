"""A BERT encoder in Flax linen, numerically equivalent to Hugging Face's BertModel.

Every size is configurable so the same module builds the teacher (e.g. the real
all-MiniLM-L6-v2) and small students. `apply` is pure: dropout draws from the
`dropout` rng stream only when `deterministic=False`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.models.dropout import Dropout


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Architecture of a BERT encoder (names follow HF's `BertConfig`)."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  initializer_range: float = 0.02
  # Compute dtype of activations and matmuls ('float32' or 'bfloat16'). Params
  # stay float32 (the master weights), softmaxes and losses run in float32.
  # Not part of the HF config: an export holds float32 weights either way.
  dtype: str = 'float32'

  def __post_init__(self):
    for name in ('vocab_size', 'hidden_size', 'num_layers', 'num_heads', 'intermediate_size',
                 'max_position_embeddings', 'type_vocab_size'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} is {value!r}, not a positive integer')
    for name in ('hidden_dropout', 'attention_dropout'):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f'{name} is {getattr(self, name)!r}, not in [0, 1)')
    if not 0 < self.layer_norm_eps < 1:
      raise ValueError(f'layer_norm_eps is {self.layer_norm_eps!r}, not in (0, 1)')
    if self.dtype not in ('float32', 'bfloat16'):
      raise ValueError(f"dtype {self.dtype!r}: use 'float32' or 'bfloat16'")
    if not 0 <= self.pad_token_id < self.vocab_size:
      raise ValueError(f'pad_token_id {self.pad_token_id} is outside the vocabulary')
    if self.hidden_size % self.num_heads:
      raise ValueError(f'hidden_size {self.hidden_size} is not a multiple of '
                       f'num_heads {self.num_heads}')

  @classmethod
  def from_hf_dict(cls, hf: dict[str, Any]) -> 'BertConfig':
    return cls(
        vocab_size=hf['vocab_size'], hidden_size=hf['hidden_size'],
        num_layers=hf['num_hidden_layers'], num_heads=hf['num_attention_heads'],
        intermediate_size=hf['intermediate_size'],
        max_position_embeddings=hf['max_position_embeddings'],
        type_vocab_size=hf.get('type_vocab_size', 2),
        hidden_dropout=hf.get('hidden_dropout_prob', 0.1),
        attention_dropout=hf.get('attention_probs_dropout_prob', 0.1),
        layer_norm_eps=hf.get('layer_norm_eps', 1e-12),
        pad_token_id=hf.get('pad_token_id', 0) or 0,
        initializer_range=hf.get('initializer_range', 0.02))

  def to_hf_dict(self) -> dict[str, Any]:
    return {
        'model_type': 'bert', 'vocab_size': self.vocab_size,
        'hidden_size': self.hidden_size, 'num_hidden_layers': self.num_layers,
        'num_attention_heads': self.num_heads,
        'intermediate_size': self.intermediate_size, 'hidden_act': 'gelu',
        'max_position_embeddings': self.max_position_embeddings,
        'type_vocab_size': self.type_vocab_size,
        'hidden_dropout_prob': self.hidden_dropout,
        'attention_probs_dropout_prob': self.attention_dropout,
        'layer_norm_eps': self.layer_norm_eps, 'pad_token_id': self.pad_token_id,
        'initializer_range': self.initializer_range,
        'position_embedding_type': 'absolute',
    }


def compute_dtype(config: BertConfig, override=None):
  """The dtype a module computes in: `override` if given, else the config's."""
  return override if override is not None else jnp.dtype(config.dtype)


def _dense(features: int, config: BertConfig, name: str, dtype) -> nn.Dense:
  init = nn.initializers.normal(stddev=config.initializer_range)
  return nn.Dense(features, kernel_init=init, dtype=dtype, name=name)


def _layer_norm(config: BertConfig, name: str, dtype) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


class Embeddings(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, token_type_ids, deterministic: bool, word_override=None):
    cfg = self.config
    init = nn.initializers.normal(stddev=cfg.initializer_range)
    seq_len = input_ids.shape[1]
    words = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init,
                     name='word_embeddings')(input_ids)
    if word_override is not None:  # (vectors [B, L, H], use [B, L]): other word vectors
      vectors, use = word_override
      words = jnp.where(use[..., None], vectors.astype(words.dtype), words)
    positions = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size,
                         embedding_init=init, name='position_embeddings')(
                             jnp.arange(seq_len)[None, :])
    types = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init,
                     name='token_type_embeddings')(token_type_ids)
    x = _layer_norm(cfg, 'LayerNorm', self.dtype)(words + positions + types)
    return Dropout(cfg.hidden_dropout)(x, deterministic=deterministic)


class SelfAttention(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask_bias, deterministic: bool):
    """x: [B, L, H]; mask_bias: [B, 1, 1, L] additive. Returns (out, probs)."""
    cfg = self.config
    batch, seq_len, hidden = x.shape
    head_dim = hidden // cfg.num_heads

    def heads(name):  # [B, L, H] -> [B, heads, L, head_dim]
      y = _dense(hidden, cfg, name, self.dtype)(x)
      return y.reshape(batch, seq_len, cfg.num_heads, head_dim).transpose(0, 2, 1, 3)

    query, key, value = heads('query'), heads('key'), heads('value')
    scores = jnp.einsum('bhqd,bhkd->bhqk', query, key) / jnp.sqrt(head_dim).astype(query.dtype)
    # Softmax in float32 whatever the compute dtype: padding bias is large.
    probs = jax.nn.softmax(scores.astype(jnp.float32) + mask_bias, axis=-1)
    dropped = Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
    context = jnp.einsum('bhqk,bhkd->bhqd', dropped.astype(value.dtype), value)
    context = context.transpose(0, 2, 1, 3).reshape(batch, seq_len, hidden)
    out = _dense(hidden, cfg, 'output', self.dtype)(context)
    out = Dropout(cfg.hidden_dropout)(out, deterministic=deterministic)
    return _layer_norm(cfg, 'LayerNorm', self.dtype)(out + x), probs


class Layer(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask_bias, deterministic: bool):
    cfg = self.config
    x, probs = SelfAttention(cfg, self.dtype, name='attention')(x, mask_bias, deterministic)
    h = _dense(cfg.intermediate_size, cfg, 'intermediate', self.dtype)(x)
    h = nn.gelu(h, approximate=False)  # HF's "gelu" is the exact erf form.
    h = _dense(cfg.hidden_size, cfg, 'output', self.dtype)(h)
    h = Dropout(cfg.hidden_dropout)(h, deterministic=deterministic)
    return _layer_norm(cfg, 'output_LayerNorm', self.dtype)(h + x), probs


class BertEncoder(nn.Module):
  """Embeddings + transformer layers + [CLS] pooler.

  Returns a dict with `last_hidden_state` [B, L, H] and `pooled` [B, H]; with
  `output_hidden_states`, `hidden_states` (num_layers + 1 arrays, embeddings
  first); with `output_attentions`, `attentions` (num_layers arrays [B, h, L, L]).
  `word_override=(vectors [B, L, H], use [B, L])` replaces the word embedding
  where `use` is true (mixed-vocabulary input).
  """
  config: BertConfig
  dtype: Any = None  # None: the config's compute dtype

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, *,
               deterministic: bool = True, output_hidden_states: bool = False,
               output_attentions: bool = False, word_override=None):
    cfg = self.config
    dtype = compute_dtype(cfg, self.dtype)
    x = Embeddings(cfg, dtype, name='embeddings')(input_ids, token_type_ids, deterministic,
                                                  word_override)
    mask_bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0,
                          jnp.finfo(jnp.float32).min).astype(jnp.float32)
    hidden_states, attentions = [x], []
    for i in range(cfg.num_layers):
      x, probs = Layer(cfg, dtype, name=f'layer_{i}')(x, mask_bias, deterministic)
      hidden_states.append(x)
      attentions.append(probs)
    pooled = jnp.tanh(_dense(cfg.hidden_size, cfg, 'pooler', dtype)(x[:, 0]))
    out = {'last_hidden_state': x, 'pooled': pooled}
    if output_hidden_states:
      out['hidden_states'] = tuple(hidden_states)
    if output_attentions:
      out['attentions'] = tuple(attentions)
    return out


def init_params(model: nn.Module, rng: jax.Array, seq_len: int = 8):
  """Initialises `model`'s params from dummy inputs of shape [1, seq_len]."""
  ids = jnp.zeros((1, seq_len), jnp.int32)
  # One jitted program rather than dozens of eager ops, each compiled on its
  # own: the program is compiled once and found in the persistent compilation
  # cache by later runs (eagerly, a small BERT takes ~5 s to initialise on CPU).
  return jax.jit(model.init)(rng, ids, ids, jnp.ones_like(ids))['params']


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
