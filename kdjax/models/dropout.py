"""Dropout that draws half the random bits of `flax.linen.Dropout`.

On CPU, threefry random bits are a large share of a training step: flax draws
one 32-bit word per element for its Bernoulli mask, which for the default
4 x 256 student at 128 tokens is more of the step than any single matmul
(experiments/dropout_cost.py measures it). Here each 32-bit word is split into
two 16-bit draws, one per element: an element is kept when its draw is below
round(keep * 2**16). That keep probability differs from the configured one by
at most 2**-17, and kept elements are scaled by the inverse of the probability
actually used, so the output's expectation is exactly the input's.

Same interface as flax's: the `dropout` rng stream, `deterministic=True` (or
rate 0) returns the input untouched.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_LEVELS = 1 << 16  # values of one 16-bit draw


def keep_threshold(rate: float) -> int:
  """Draws below this (of 2**16) keep their element."""
  return max(1, round((1.0 - rate) * _LEVELS))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
  """Boolean mask of `shape`, True (kept) with probability ~1 - rate; two
  elements per 32-bit random word, paired along the last axis so a batch
  sharded on its leading axis keeps that sharding."""
  threshold = keep_threshold(rate)
  if threshold >= _LEVELS:  # a rate below 2**-17 keeps everything
    return jnp.ones(shape, bool)
  lead, last = shape[:-1], (shape[-1] if shape else 1)
  words = jax.random.bits(key, (*lead, (last + 1) // 2), jnp.uint32)
  draws = lax.bitcast_convert_type(words, jnp.uint16)  # [..., words, 2]
  draws = draws.reshape(*lead, -1)[..., :last]
  return (draws < jnp.uint16(threshold)).reshape(shape)


class Dropout(nn.Module):
  """Inverted dropout with `rate` the probability of zeroing an element."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    keep = keep_mask(self.make_rng('dropout'), x.shape, self.rate)
    scale = _LEVELS / keep_threshold(self.rate)  # 1 / the keep probability used
    return jnp.where(keep, x * jnp.asarray(scale, x.dtype), jnp.zeros((), x.dtype))
