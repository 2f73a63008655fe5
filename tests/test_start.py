"""A phase started ahead (initialised and compiled on another thread) trains
exactly like one started in line, and its first step compiles nothing."""
import jax
import ml_collections
import numpy as np
import pytest
from jax import monitoring

from kdjax import parallel
from kdjax.classifier import classifier_start
from kdjax.loop import overlapped
from kdjax.steps import Start
from kdjax.data.tasks import TaskSpec
from kdjax.models.bert import init_params
from kdjax.models.heads import BertClassifier
from tests.conftest import TINY, classifier_batch

SPEC = TaskSpec(name='tiny', text_columns=('text',), label_names=('a', 'b', 'c'),
                metrics=('accuracy',))
SECTION = ml_collections.ConfigDict({'batch_size': 8, 'epochs': 2, 'learning_rate': 1e-3,
                                     'warmup_fraction': 0.1, 'weight_decay': 0.01})


def _columns(rows: int = 32) -> dict[str, np.ndarray]:
  batch = classifier_batch(rows=rows)
  del batch['weights']
  return batch


def _start(columns, compile_ahead: bool) -> Start:
  mesh = parallel.make_mesh()
  model = BertClassifier(TINY, 3)
  params = jax.device_get(init_params(model, jax.random.PRNGKey(0)))
  return classifier_start(model, params, columns, SPEC, SECTION, mesh, name='student',
                          alpha=0.5, temperature=2.0, compile_ahead=compile_ahead)


def _compilations_during(fn) -> int:
  count = {'n': 0}

  def listener(event, duration_secs, **_):
    if event == '/jax/core/compile/backend_compile_duration':
      count['n'] += 1
  monitoring.register_event_duration_secs_listener(listener)
  try:
    fn()
  finally:
    monitoring.unregister_event_duration_listener(listener)
  return count['n']


def _two_steps(start: Start, columns) -> tuple[dict, float]:
  mesh = parallel.make_mesh()
  state, rng = start.state, jax.random.PRNGKey(3)
  for rows in (slice(0, 8), slice(8, 16)):
    batch = {k: v[rows] for k, v in columns.items()}
    batch['weights'] = np.ones(8, np.float32)
    state, metrics = start.train_step(state, parallel.to_global(batch, mesh), rng)
  return jax.device_get(state['params']), float(metrics['loss'])


def test_started_ahead_on_a_thread_trains_the_same_with_no_compilation_at_its_first_step():
  columns = _columns()
  # The teacher logits are not known yet when a student starts ahead: shapes suffice.
  shapes = {**columns, 'teacher_logits': jax.ShapeDtypeStruct((32, 3), np.float32)}
  ahead, busy = overlapped(lambda: _start(shapes, compile_ahead=True),
                           lambda: sum(range(10 ** 6)))
  assert busy == sum(range(10 ** 6))
  holder = {}
  assert _compilations_during(lambda: holder.update(out=_two_steps(ahead, columns))) == 0
  inline = _start(columns, compile_ahead=False)
  assert _compilations_during(lambda: holder.update(ref=_two_steps(inline, columns))) >= 1
  (ahead_params, ahead_loss), (ref_params, ref_loss) = holder['out'], holder['ref']
  assert ahead_loss == ref_loss
  for a, b in zip(jax.tree_util.tree_leaves(ahead_params), jax.tree_util.tree_leaves(ref_params)):
    np.testing.assert_array_equal(a, b)


def test_an_error_on_the_background_thread_is_raised_here():
  def fail():
    raise ValueError('bad student')
  with pytest.raises(ValueError, match='bad student'):
    overlapped(fail, lambda: None)


def test_a_step_with_frozen_teacher_params_compiles_ahead_too():
  """A student whose frozen teacher runs inside its step (layer-wise losses)."""
  import dataclasses
  from kdjax.methods.kd import pieces
  columns = _columns()
  shapes = {**columns, 'teacher_logits': jax.ShapeDtypeStruct((32, 3), np.float32)}
  teacher, student = BertClassifier(TINY, 3), BertClassifier(
      dataclasses.replace(TINY, num_layers=1), 3)
  t_params = jax.device_get(init_params(teacher, jax.random.PRNGKey(1)))
  s_params = jax.device_get(init_params(student, jax.random.PRNGKey(2)))
  step = pieces.distill_step(student, alpha=0.5, temperature=2.0, regression=False,
                             teacher=teacher, layers=pieces.LayerTargets((1,), 1.0, 1.0))
  start = classifier_start(student, s_params, shapes, SPEC, SECTION, parallel.make_mesh(),
                           name='student', compile_ahead=True, step=step, frozen=t_params)
  holder = {}
  assert _compilations_during(lambda: holder.update(out=_two_steps(start, columns))) == 0
  assert np.isfinite(holder['out'][1])
