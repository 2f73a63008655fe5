"""bfloat16 compute (one switch, `compute_dtype`): float32 master weights and
loss, activations and matmuls in bf16, results close to float32."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import parallel, students
from kdjax.methods.kd.pieces import classifier_step
from kdjax.steps import Schedule, init_state, jit_train_step, make_optimizer
from kdjax.errors import KdjaxError
from kdjax.models.bert import init_params
from kdjax.models.heads import BertClassifier
from kdjax.teachers import open_teacher
from tests.conftest import TINY, classifier_batch


def _train(dtype, params, batch, steps=3):
  model = BertClassifier(dataclasses.replace(TINY, dtype=dtype), 3)
  mesh = parallel.make_mesh(jax.devices()[:1])
  tx = make_optimizer(Schedule(1e-3, 10, 0, 0.01))
  step = jit_train_step(classifier_step(model, alpha=0.5, temperature=2.0, regression=False),
                        mesh, tx=tx)
  state = parallel.replicate(init_state(params, tx), mesh)
  losses = []
  for _ in range(steps):
    state, metrics = step(state, parallel.to_global(batch, mesh), jax.random.PRNGKey(3))
    losses.append(float(jax.device_get(metrics['loss'])))
  logits = model.apply({'params': state['params']}, batch['input_ids'], batch['token_type_ids'],
                       batch['attention_mask'])
  return jax.device_get(state['params']), np.array(losses), jax.device_get(logits)


def test_bfloat16_compute_keeps_float32_weights_and_stays_close():
  params = jax.device_get(init_params(BertClassifier(TINY, 3), jax.random.PRNGKey(0)))
  batch = classifier_batch()
  p32, loss32, out32 = _train('float32', params, batch)
  p16, loss16, out16 = _train('bfloat16', params, batch)
  # The switch changes the compute, not the weights or the loss dtype.
  assert out16['last_hidden_state'].dtype == jnp.bfloat16
  assert out16['logits'].dtype == jnp.float32
  assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(p16))
  # It does change the numbers (so this test can fail), but only a little.
  assert np.abs(loss16 - loss32).max() > 0
  np.testing.assert_allclose(loss16, loss32, rtol=2e-2)
  np.testing.assert_allclose(out16['logits'], out32['logits'], atol=5e-2)
  # The bf16 run's updates point where the float32 run's do.
  for a, b, p0 in zip(jax.tree_util.tree_leaves(p32), jax.tree_util.tree_leaves(p16),
                      jax.tree_util.tree_leaves(params)):
    u32, u16 = (a - p0).ravel(), (b - p0).ravel()
    if np.linalg.norm(u32) > 1e-6:
      cosine = u32 @ u16 / (np.linalg.norm(u32) * np.linalg.norm(u16))
      assert cosine > 0.9, cosine


def test_the_switch_reaches_teacher_and_student(tiny_teacher_dir):
  _, ckpt, _ = open_teacher(tiny_teacher_dir, 32, 0, 'bfloat16')
  assert ckpt.config.dtype == 'bfloat16'

  class Student:
    hidden_size, num_layers, num_heads, intermediate_size = 16, 1, 2, 32
  assert students.student_config(ckpt.config, Student).dtype == 'bfloat16'
  assert 'dtype' not in ckpt.config.to_hf_dict()  # exports hold float32 weights
  with pytest.raises(KdjaxError, match='compute_dtype'):
    open_teacher(tiny_teacher_dir, 32, 0, 'float16')


def test_bfloat16_layer_losses_stay_close_to_float32():
  """Hidden-state and attention losses to a teacher run inside the step, in
  bf16 compute: float32 weights (projections included), losses close to float32."""
  import functools
  from kdjax.methods.kd import pieces
  narrow = dict(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=1)
  t_params = jax.device_get(init_params(BertClassifier(TINY, 3), jax.random.PRNGKey(0)))
  s_params = {**jax.device_get(init_params(
      BertClassifier(dataclasses.replace(TINY, **narrow), 3), jax.random.PRNGKey(1))),
      'projection': jax.device_get(pieces.init_projections(2, 1, 16, TINY.hidden_size))}
  batch = classifier_batch()
  tx = make_optimizer(Schedule(1e-3, 10, 0, 0.01))
  results = {}
  for dtype in ('float32', 'bfloat16'):
    step = pieces.distill_step(
        BertClassifier(dataclasses.replace(TINY, dtype=dtype, **narrow), 3), alpha=0.5,
        temperature=2.0, regression=False,
        teacher=BertClassifier(dataclasses.replace(TINY, dtype=dtype), 3),
        layers=pieces.LayerTargets((1,), hidden_weight=1.0, attention_weight=1.0))
    state, metrics = jax.jit(functools.partial(step, tx=tx))(
        init_state(s_params, tx), t_params, batch, jax.random.PRNGKey(3))
    results[dtype] = jax.device_get((state['params'], metrics))
  (p32, m32), (p16, m16) = results['float32'], results['bfloat16']
  assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(p16))
  for name in ('hidden_loss', 'attention_loss', 'loss'):
    assert np.isfinite(m16[name]) and m16[name] != m32[name], name
    np.testing.assert_allclose(m16[name], m32[name], rtol=3e-2, err_msg=name)
