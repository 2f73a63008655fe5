"""kdjax's Dropout: the configured rate, an unbiased output, pure in its key."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.models.dropout import Dropout, keep_mask, keep_threshold


@pytest.mark.parametrize('rate', [0.1, 0.5, 0.9])
def test_mask_keeps_the_configured_share(rate):
  mask = np.asarray(keep_mask(jax.random.PRNGKey(0), (400, 1001), rate))
  assert mask.shape == (400, 1001) and mask.dtype == bool
  # 400,400 draws: the share's std is below 0.0008.
  assert abs(mask.mean() - (1 - rate)) < 0.004


def test_the_two_halves_of_a_word_are_independent():
  """Neighbours along the last axis share a 32-bit word: each half must be
  its own draw, not a copy or a complement of the other."""
  mask = np.asarray(keep_mask(jax.random.PRNGKey(1), (2000, 200), 0.5), np.float64)
  even, odd = mask[:, 0::2].ravel(), mask[:, 1::2].ravel()
  assert abs(np.corrcoef(even, odd)[0, 1]) < 0.01
  assert abs(np.corrcoef(mask[:-1].ravel(), mask[1:].ravel())[0, 1]) < 0.01


def test_output_is_unbiased_and_zero_where_dropped():
  x = jnp.full((300, 333), 2.0)
  y = np.asarray(Dropout(0.1).apply({}, x, False, rngs={'dropout': jax.random.PRNGKey(2)}))
  kept = y != 0
  assert np.allclose(y[kept], 2.0 * 65536 / keep_threshold(0.1))
  assert abs(y.mean() - 2.0) < 0.01  # ~100,000 elements; std of the mean ~0.002


def test_odd_last_axis_and_scalars():
  assert keep_mask(jax.random.PRNGKey(3), (4, 7), 0.3).shape == (4, 7)
  assert keep_mask(jax.random.PRNGKey(3), (), 0.3).shape == ()
  assert bool(keep_mask(jax.random.PRNGKey(3), (5,), 1e-9).all())  # nothing to drop


def test_deterministic_or_rate_zero_is_the_identity():
  x = jnp.arange(12.0).reshape(3, 4)
  assert Dropout(0.5).apply({}, x, True) is x
  assert Dropout(0.0).apply({}, x, False) is x


def test_same_key_same_mask_other_key_other_mask():
  def mask(seed):
    return np.asarray(keep_mask(jax.random.PRNGKey(seed), (64, 64), 0.5))
  assert np.array_equal(mask(4), mask(4))
  assert not np.array_equal(mask(4), mask(5))


def test_mask_under_jit_equals_eager():
  key = jax.random.PRNGKey(6)
  eager = keep_mask(key, (8, 16, 10), 0.2)
  jitted = jax.jit(keep_mask, static_argnums=(1, 2))(key, (8, 16, 10), 0.2)
  assert np.array_equal(np.asarray(eager), np.asarray(jitted))
