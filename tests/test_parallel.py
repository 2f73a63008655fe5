"""One train step on 4 fake CPU devices equals the same step on 1 device."""
import jax
import jax.numpy as jnp
import numpy as np

from kdjax import parallel
from kdjax.methods.kd.pieces import classifier_step
from kdjax.steps import Schedule, init_state, jit_train_step, make_optimizer
from kdjax.models.bert import init_params
from kdjax.models.heads import BertClassifier
from tests.conftest import TINY, classifier_batch


def _step_on(devices, params, batch):
  mesh = parallel.make_mesh(devices)
  model = BertClassifier(TINY, 3)
  tx = make_optimizer(Schedule(1e-3, 10, 2, 0.01))
  state = parallel.replicate(init_state(params, tx), mesh)
  step = jit_train_step(classifier_step(model, alpha=0.5, temperature=2.0, regression=False),
                        mesh, tx=tx)
  rng = jax.random.PRNGKey(7)
  for _ in range(2):
    state, metrics = step(state, parallel.to_global(batch, mesh), rng)
  return jax.device_get(state), jax.device_get(metrics)


def test_four_devices_equal_one():
  assert jax.device_count() >= 4, 'conftest sets 4 fake CPU devices'
  batch = classifier_batch()
  params = jax.device_get(init_params(BertClassifier(TINY, 3), jax.random.PRNGKey(0)))
  one_state, one_metrics = _step_on(jax.devices()[:1], params, batch)
  four_state, four_metrics = _step_on(jax.devices()[:4], params, batch)
  np.testing.assert_allclose(four_metrics['loss'], one_metrics['loss'], rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(one_state['params']),
                  jax.tree_util.tree_leaves(four_state['params'])):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
  assert int(four_state['step']) == 2
  # The step really changed the parameters (dropout was on, so the rng mattered).
  moved = jax.tree_util.tree_leaves(jax.tree.map(lambda x, y: jnp.abs(x - y).max(),
                                                 params, one_state['params']))
  assert max(float(m) for m in moved) > 0
