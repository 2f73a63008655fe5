"""Length buckets: every example once per epoch, batches a pure function of
(seed, step), the same losses and outputs as full-length padding, and one
compiled program per bucket length."""
import dataclasses

import jax
import numpy as np
import pytest
from jax import monitoring

from kdjax import loop, parallel
from kdjax.data.batching import (BucketedBatches, batch_shapes, bucket_lengths, bucket_of,
                                 eval_batches, used_lengths)
from kdjax.methods.kd.pieces import classifier_step
from kdjax.models.bert import init_params
from kdjax.models.heads import BertClassifier
from kdjax.steps import Schedule, init_state, jit_predict, jit_train_step, make_optimizer
from tests.conftest import TINY

MAX_LENGTH = 32
LENGTHS = bucket_lengths((8, 16, 64), MAX_LENGTH)  # 64 is capped: (8, 16, 32)


def arrays_with_lengths(tokens: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
  """Encoded rows with `tokens[i]` real tokens each, padded to MAX_LENGTH."""
  rng = np.random.default_rng(seed)
  n = len(tokens)
  mask = (np.arange(MAX_LENGTH)[None] < tokens[:, None]).astype(np.int32)
  ids = rng.integers(5, TINY.vocab_size, (n, MAX_LENGTH)).astype(np.int32) * mask
  return {'input_ids': ids, 'token_type_ids': np.zeros_like(ids), 'attention_mask': mask,
          'labels': rng.integers(0, 3, n).astype(np.int32), 'row': np.arange(n)}


TOKENS = np.random.default_rng(1).integers(2, MAX_LENGTH + 1, 83)


def test_bucket_lengths_and_assignment():
  assert LENGTHS == (8, 16, 32)
  assert bucket_lengths((), 64) == ()
  assert bucket_lengths((128,), 64) == (64,)
  mask = (np.arange(32)[None] < np.array([[1], [8], [9], [16], [17], [32]])).astype(int)
  np.testing.assert_array_equal(bucket_of(mask, LENGTHS), [0, 0, 1, 1, 2, 2])


def test_every_example_exactly_once_per_epoch_in_its_bucket_or_a_longer_one():
  arrays = arrays_with_lengths(TOKENS)
  batches = BucketedBatches(arrays, 8, seed=3, lengths=LENGTHS)
  assert batches.steps_per_epoch == int(np.ceil(83 / 8))
  for epoch in range(2):
    seen = []
    for step in range(epoch * batches.steps_per_epoch, (epoch + 1) * batches.steps_per_epoch):
      batch = batches.batch_at(step)
      length = batch['input_ids'].shape[1]
      assert length in LENGTHS and batch['input_ids'].shape[0] == 8
      real = batch['weights'] > 0
      assert (TOKENS[batch['row'][real]] <= length).all()  # nothing is cut off
      seen += list(batch['row'][real])
    assert sorted(seen) == list(range(83))
  # Padding: 83 = 10 full batches + 3 rows, so exactly one batch has 5 padded rows.
  weights = [batches.batch_at(s)['weights'].sum() for s in range(batches.steps_per_epoch)]
  assert sorted(weights)[0] == 3 and sorted(weights)[1:] == [8] * 10


def test_batches_are_a_pure_function_of_seed_and_step_and_sharded():
  arrays = arrays_with_lengths(TOKENS)
  one = BucketedBatches(arrays, 8, seed=3, lengths=LENGTHS)
  other = BucketedBatches(arrays, 8, seed=3, lengths=LENGTHS)
  for step in (17, 2, 17, 30):  # in any order, as a resumed run asks
    np.testing.assert_array_equal(one.batch_at(step)['row'], other.batch_at(step)['row'])
  reseeded = BucketedBatches(arrays, 8, seed=4, lengths=LENGTHS)
  assert any(not np.array_equal(one.batch_at(s)['row'], reseeded.batch_at(s)['row'])
             for s in range(5))
  assert not all(np.array_equal(one.batch_at(s)['row'], one.batch_at(s + 11)['row'])
                 for s in range(5))  # each epoch reshuffled
  parts = [BucketedBatches(arrays, 8, seed=3, lengths=LENGTHS, process_index=p,
                           process_count=2).batch_at(5)['row'] for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts), one.batch_at(5)['row'])


def _model_and_params(dropout: float = 0.1):
  config = dataclasses.replace(TINY, hidden_dropout=dropout, attention_dropout=dropout)
  model = BertClassifier(config, 3)
  return model, jax.device_get(init_params(model, jax.random.PRNGKey(0)))


def test_bucketed_outputs_and_losses_equal_full_length_padding():
  # Without dropout: its masks are drawn per position, so a cut batch draws others.
  model, params = _model_and_params(dropout=0.0)
  arrays = arrays_with_lengths(TOKENS)
  inputs = {k: arrays[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')}
  mesh = parallel.make_mesh(jax.devices()[:1])
  predict = jit_predict(model, mesh)
  full = loop.predict_all(predict, params, inputs, 16, mesh)
  bucketed = loop.predict_all(predict, params, inputs, 16, mesh, lengths=LENGTHS)
  np.testing.assert_allclose(bucketed, full, rtol=1e-5, atol=1e-5)
  assert np.abs(full).max() > 1e-3  # real outputs, in the same row order

  # One train step on a bucketed batch equals the step on the same rows at full length.
  tx = make_optimizer(Schedule(1e-3, 10, 0, 0.01))
  step = jit_train_step(classifier_step(model, alpha=1.0, temperature=1.0, regression=False),
                        mesh, tx=tx)
  batch = BucketedBatches(arrays, 8, seed=0, lengths=LENGTHS).batch_at(0)
  assert batch['input_ids'].shape[1] < MAX_LENGTH or batch['weights'].min() == 0
  rows = batch['row']
  padded = {k: v[rows] for k, v in arrays.items()}
  padded['weights'] = batch['weights']
  outs = []
  for b in (batch, padded):
    state = parallel.replicate(init_state(params, tx), mesh)
    _, metrics = step(state, parallel.to_global({k: v for k, v in b.items() if k != 'row'},
                                                mesh), jax.random.PRNGKey(1))
    outs.append(float(metrics['loss']))
  assert outs[0] == pytest.approx(outs[1], rel=1e-5)


def test_one_compiled_program_per_bucket_length():
  model, params = _model_and_params()
  arrays = arrays_with_lengths(TOKENS)
  del arrays['row']
  mesh = parallel.make_mesh(jax.devices()[:1])
  tx = make_optimizer(Schedule(1e-3, 30, 0, 0.01))
  step = jit_train_step(classifier_step(model, alpha=1.0, temperature=1.0, regression=False),
                        mesh, tx=tx)
  batches = BucketedBatches(arrays, 8, seed=0, lengths=LENGTHS)
  used = {batches.batch_at(s)['input_ids'].shape[1] for s in range(batches.steps_per_epoch)}
  assert len(used) > 1
  state = parallel.replicate(init_state(params, tx), mesh)
  compiled = []

  def listener(event, duration_secs, **_):
    if event == '/jax/core/compile/backend_compile_duration':
      compiled.append(event)
  monitoring.register_event_duration_secs_listener(listener)
  try:
    for s in range(2 * batches.steps_per_epoch):
      state, metrics = step(state, parallel.to_global(batches.batch_at(s), mesh),
                            jax.random.PRNGKey(0))
    jax.block_until_ready(metrics)
  finally:
    monitoring.unregister_event_duration_listener(listener)
  assert step._cache_size() == len(used)
  assert len(compiled) >= len(used)  # (other small programs may compile too)
  # batch_shapes lists the same shapes, for compiling ahead.
  assert {s['input_ids'].shape[1] for s in batch_shapes(arrays, 8, LENGTHS)} == used


@pytest.mark.parametrize('tokens, batch_size', [
    (TOKENS, 8), (TOKENS, 32), (np.full(40, MAX_LENGTH), 8),  # long rows only: one length
    (np.array([3] * 5 + [12] * 5 + [30] * 6), 8), (np.array([3] * 8), 8)])
def test_lengths_compiled_ahead_are_the_lengths_batches_use(tokens, batch_size):
  arrays = arrays_with_lengths(tokens)
  batches = BucketedBatches(arrays, batch_size, seed=0, lengths=LENGTHS)
  for epoch in range(3):
    used = {length for length, _ in batches.epoch_plan(epoch)}
    assert set(used_lengths(arrays['attention_mask'], batch_size, LENGTHS)) == used
  assert {s['input_ids'].shape[1] for s in batch_shapes(arrays, batch_size, LENGTHS)} == used


def test_eval_batches_cover_rows_once_bucket_by_bucket():
  arrays = arrays_with_lengths(TOKENS)
  seen = []
  for rows, batch in eval_batches(arrays, 16, lengths=LENGTHS):
    real = rows >= 0
    np.testing.assert_array_equal(batch['row'][real], rows[real])
    assert (TOKENS[rows[real]] <= batch['input_ids'].shape[1]).all()
    seen += list(rows[real])
  assert sorted(seen) == list(range(83))
