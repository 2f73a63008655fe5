"""Every method's train step, run for a few steps on meshes of 1, 2, 4 and 8
devices; prints as JSON how far each run lands from the 1-device run.

`tests/test_devices.py` starts it in a subprocess with 8 fake CPU devices (the
pytest process has 4). By hand: `python -m tests.device_worker [method ...]`.

Output (the last stdout line): {method: {n_devices: {name: value}}} with, for
each tracked quantity q (loss, params, and the policy's params for RL-KD),
`q_diff` the max abs difference from 1 device and `q_err` the max of
|x - x_1| / (1 + |x_1|) (<= 1e-5 is assert_allclose with rtol = atol = 1e-5);
`state_err` and `metrics_err` cover the whole state and every metric, and
`moved` / `policy_moved` the max abs change of the params from their init.
"""
from __future__ import annotations

import os

# Before jax is imported: this process needs 8 devices, whatever the caller set.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any, Callable  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from kdjax import parallel, steps  # noqa: E402
from kdjax.methods.kd import pieces as kd  # noqa: E402
from kdjax.methods.mixed_vocab import pieces as mixed_vocab  # noqa: E402
from kdjax.methods.mtdnn_kd import pieces as ensemble  # noqa: E402
from kdjax.methods.rl_kd import pieces as rl_select  # noqa: E402
from kdjax.models.bert import BertConfig  # noqa: E402
from kdjax.models.heads import BertClassifier  # noqa: E402
from kdjax.models.mixed import DualVocabBert, MlmStudent  # noqa: E402
from kdjax.models.multitask import MultiTaskModel  # noqa: E402

STEPS = 3
BATCH = 8                      # divides every device count below
DEVICE_COUNTS = (1, 2, 4, 8)
LENGTH = 16
# tests.conftest.TINY with a small vocabulary (fast Adam over the embeddings);
# dropout stays at 0.1, so every step draws from its rng.
CFG = BertConfig(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=4,
                 intermediate_size=64, max_position_embeddings=64)
# A plain-KD student of CFG: its vocabulary, half its width, other head counts.
NARROW_CFG = BertConfig(vocab_size=1000, hidden_size=16, num_layers=2, num_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
STUDENT_CFG = BertConfig(vocab_size=300, hidden_size=16, num_layers=2, num_heads=2,
                         intermediate_size=32, max_position_embeddings=64)
TEACHER_IDS = mixed_vocab.VocabIds(size=1000, cls=101, sep=102, pad=0, mask=103,
                                   first_regular=200)
STUDENT_IDS = mixed_vocab.VocabIds(size=300, cls=2, sep=3, pad=0, mask=4, first_regular=5)


@dataclasses.dataclass
class Case:
  """A method's initial host state, one fixed batch, and its jitted step for a mesh."""
  state: dict[str, Any]
  batch: dict[str, np.ndarray]
  jit: Callable               # mesh -> step(state, batch, rng)
  tracked: dict[str, tuple]   # name -> path of a params subtree in the state


def _optimizer():
  # The pipelines' AdamW schedule: its step-0 learning rate is 0, so 3 steps move twice.
  return steps.make_optimizer(steps.Schedule(1e-3, 10, 1, 0.01))


def _text_batch(rng: np.random.Generator, vocab: int) -> dict[str, np.ndarray]:
  lengths = rng.integers(4, LENGTH + 1, (BATCH, 1))
  return {'input_ids': rng.integers(1, vocab, (BATCH, LENGTH)).astype(np.int32),
          'token_type_ids': (np.arange(LENGTH)[None] >= lengths // 2).astype(np.int32),
          'attention_mask': (np.arange(LENGTH)[None] < lengths).astype(np.int32),
          'weights': np.ones(BATCH, np.float32)}


def _classifier_params(model, seed: int):
  ids = np.zeros((1, 8), np.int32)
  return jax.device_get(model.init(jax.random.PRNGKey(seed), ids, ids,
                                   np.ones_like(ids))['params'])


def plain_kd(rng: np.random.Generator) -> Case:
  model = BertClassifier(CFG, 3)
  tx = _optimizer()
  batch = {**_text_batch(rng, CFG.vocab_size),
           'labels': rng.integers(0, 3, BATCH).astype(np.int32),
           'teacher_logits': rng.normal(size=(BATCH, 3)).astype(np.float32)}
  step = kd.classifier_step(model, alpha=0.5, temperature=2.0, regression=False)
  jit = lambda mesh: steps.jit_train_step(step, mesh, tx=tx)
  return Case(steps.init_state(_classifier_params(model, 0), tx), batch, jit,
              {'params': ('params',)})


def mtdnn_kd(rng: np.random.Generator) -> Case:
  table = ensemble.TaskTable((3, 2, 1), (False, False, True))
  model = MultiTaskModel(CFG, table.num_classes)
  tx = _optimizer()
  ids = np.zeros((1, 8), np.int32)
  params = jax.device_get(model.init(jax.random.PRNGKey(1), ids, ids, np.ones_like(ids),
                                     np.zeros(1, np.int32))['params'])
  # Tasks mixed within the batch: every head, the padded classes and the regression
  # column go through the sharded step at once.
  task_ids = rng.integers(0, 3, BATCH).astype(np.int32)
  classes = np.asarray(table.num_classes)[task_ids]
  regression = np.asarray(table.regression)[task_ids]
  labels = np.where(regression, rng.uniform(0, 5, BATCH),
                    rng.integers(0, 1 << 20, BATCH) % classes).astype(np.float32)
  logits = np.where(np.arange(table.width)[None] < classes[:, None],
                    rng.normal(size=(BATCH, table.width)), -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  soft = np.where(regression[:, None], np.eye(table.width)[0] * rng.uniform(0, 5, (BATCH, 1)),
                  probs).astype(np.float32)
  batch = {**_text_batch(rng, CFG.vocab_size), 'task_ids': task_ids, 'labels': labels,
           'soft_targets': soft, 'has_soft': (rng.uniform(size=BATCH) < 0.7).astype(np.float32)}
  step = ensemble.multitask_step(model, table, alpha=0.5, temperature=2.0)
  jit = lambda mesh: steps.jit_train_step(step, mesh, tx=tx)
  return Case(steps.init_state(params, tx), batch, jit, {'params': ('params',)})


def rl_kd(rng: np.random.Generator) -> Case:
  """Hard selection: actions are Bernoulli samples, so the sampling rng path is covered.

  The policy learns with plain SGD here: REINFORCE gives some policy weights
  near-zero gradients whose last bits depend on the order a mesh sums in, and
  Adam scales each to a full step (a 1e-9 gradient moved as far as a 1e-2 one),
  so with Adam the policies differed by up to 3e-5 while every gradient agreed
  to float precision; SGD compares the gradients themselves.
  """
  num_teachers = 3
  model = BertClassifier(CFG, 2)
  tx, policy_tx = _optimizer(), optax.sgd(1.0)
  settings = rl_select.RLSettings(selection='hard', reward='R1',
                                  extra_features=('student_probs', 'teacher_id'))
  policy = rl_select.TeacherPolicy((8,))
  state = steps.init_state(_classifier_params(model, 2), tx)
  num_features = rl_select.feature_size(CFG.hidden_size, 2, num_teachers,
                                        settings.extra_features)
  state['policy'] = jax.device_get(rl_select.init_policy_state(
      policy, num_features, num_teachers, policy_tx, 3))
  batch = {**_text_batch(rng, CFG.vocab_size),
           'labels': rng.integers(0, 2, BATCH).astype(np.int32),
           'teacher_logits': (2 * rng.normal(size=(BATCH, num_teachers, 2))).astype(np.float32)}
  jit = lambda mesh: steps.jit_train_step(
      rl_select.rl_step, mesh, model=model, tx=tx, policy=policy, policy_tx=policy_tx,
      rl=settings, alpha=0.5, temperature=2.0, regression=False, update_student=True)
  return Case(state, batch, jit, {'params': ('params',), 'policy': ('policy', 'params')})


def _segments(rng: np.random.Generator, max_words: int = 10, max_pieces: int = 32
              ) -> dict[str, np.ndarray]:
  """What `vocab.segment_words` returns, for random words: 1-2 teacher pieces and
  1-3 student pieces each, laid out word after word."""
  out = {}
  num_words = rng.integers(3, max_words + 1, BATCH)
  for prefix, ids, longest in (('teacher_', TEACHER_IDS, 2), ('student_', STUDENT_IDS, 3)):
    length = np.zeros((BATCH, max_words), np.int32)
    word = np.full((BATCH, max_pieces), -1, np.int32)
    rank = np.zeros((BATCH, max_pieces), np.int32)
    for i, n in enumerate(num_words):
      length[i, :n] = rng.integers(1, longest + 1, n)
      word[i, :length[i].sum()] = np.repeat(np.arange(n), length[i, :n])
      starts = np.repeat(np.cumsum(length[i, :n]) - length[i, :n], length[i, :n])
      rank[i, :length[i].sum()] = np.arange(length[i].sum()) - starts
    out.update({prefix + 'ids': rng.integers(ids.first_regular, ids.size,
                                             (BATCH, max_pieces)).astype(np.int32),
                prefix + 'word': word, prefix + 'rank': rank, prefix + 'length': length})
  out['num_words'] = num_words.astype(np.int32)
  return out


# Shorter than the longest mixed text, so words that do not fit are dropped too.
SEGMENTATION = mixed_vocab.Segmentation(24, 6, 0.3, TEACHER_IDS, STUDENT_IDS)


def _dual_params():
  ids = np.zeros((1, 8), np.int32)
  dual = DualVocabBert(CFG, STUDENT_CFG.vocab_size, STUDENT_CFG.hidden_size)
  return dual, jax.device_get(dual.init(jax.random.PRNGKey(4), ids, ids, ids,
                                        np.ones_like(ids), ids[:, :2])['params'])


def mixed_stage1(rng: np.random.Generator) -> Case:
  dual, params = _dual_params()
  tx = _optimizer()
  batch = {**_segments(rng), 'weights': np.ones(BATCH, np.float32)}
  # p_SV ramps over the steps, so both vocabularies and the mixing rng are used.
  step = mixed_vocab.dual_mlm_step(dual, segmentation=SEGMENTATION, p_final=0.5,
                                   ramp_fraction=0.5, ramp_over=STEPS)
  jit = lambda mesh: steps.jit_train_step(step, mesh, tx=tx)
  return Case(steps.init_state(params, tx), batch, jit, {'params': ('params',)})


def mixed_stage2(rng: np.random.Generator) -> Case:
  dual, teacher_params = _dual_params()
  student = MlmStudent(STUDENT_CFG, CFG.hidden_size, 'down')
  ids = np.zeros((1, 8), np.int32)
  params = jax.device_get(student.init(jax.random.PRNGKey(5), ids, ids, np.ones_like(ids),
                                       ids[:, :2])['params'])
  tx = _optimizer()
  batch = {**_segments(rng), 'weights': np.ones(BATCH, np.float32)}
  step = mixed_vocab.student_distill_step(student, teacher=dual, segmentation=SEGMENTATION,
                                         layer_map=(1, 2), hidden_weight=1.0,
                                         projection='down')
  jit = lambda mesh: steps.jit_train_step_frozen(step, mesh, teacher_params, tx=tx)
  return Case(steps.init_state(params, tx), batch, jit, {'params': ('params',)})


def plain_kd_layers(rng: np.random.Generator) -> Case:
  """Two teachers' logits with fixed weights, and hidden-state and attention
  losses to the first, which runs inside the step; the student is narrower
  (projections in its tree) and has other head counts (attentions averaged)."""
  teacher, student = BertClassifier(CFG, 3), BertClassifier(NARROW_CFG, 3)
  tx = _optimizer()
  params = {**_classifier_params(student, 6),
            'projection': jax.device_get(kd.init_projections(7, NARROW_CFG.num_layers,
                                                             NARROW_CFG.hidden_size,
                                                             CFG.hidden_size))}
  batch = {**_text_batch(rng, CFG.vocab_size),
           'labels': rng.integers(0, 3, BATCH).astype(np.int32),
           'teacher_logits': rng.normal(size=(BATCH, 2, 3)).astype(np.float32)}
  step = kd.distill_step(student, alpha=0.5, temperature=2.0, regression=False,
                         teacher_weights=(0.3, 0.7), teacher=teacher,
                         layers=kd.LayerTargets((0, 1), hidden_weight=1.0,
                                                attention_weight=1.0))
  teacher_params = _classifier_params(teacher, 8)
  jit = lambda mesh: steps.jit_train_step_frozen(step, mesh, teacher_params, tx=tx)
  return Case(steps.init_state(params, tx), batch, jit, {'params': ('params',)})


METHODS = {'plain_kd': plain_kd, 'plain_kd_layers': plain_kd_layers, 'mtdnn_kd': mtdnn_kd,
           'rl_kd': rl_kd, 'mixed_stage1': mixed_stage1, 'mixed_stage2': mixed_stage2}


def run_steps(case: Case, num_devices: int) -> tuple[dict, list[dict]]:
  """`STEPS` steps on the first `num_devices` devices -> (host state, host metrics)."""
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  step = case.jit(mesh)
  # A fresh copy each run: the step donates its state.
  state = parallel.replicate(jax.tree.map(np.array, case.state), mesh)
  batch = parallel.to_global(case.batch, mesh)
  rng = jax.random.PRNGKey(7)
  metrics = []
  for _ in range(STEPS):
    state, m = step(state, batch, rng)
    # Few steps in flight: fake CPU devices can time out in a collective otherwise.
    metrics.append(jax.device_get(jax.block_until_ready(m)))
  assert all(len(x.sharding.device_set) == num_devices for x in jax.tree.leaves(state))
  return jax.device_get(state), metrics


def _subtree(tree, path: tuple):
  for key in path:
    tree = tree[key]
  return tree


def _leaves(tree) -> list[np.ndarray]:
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


def max_diff(a, b) -> float:
  return max((float(np.max(np.abs(x - y), initial=0.0))
              for x, y in zip(_leaves(a), _leaves(b), strict=True)), default=0.0)


def max_err(a, b) -> float:
  """max |a - b| / (1 + |b|): at most t exactly when allclose(a, b, rtol=t, atol=t)."""
  return max((float(np.max(np.abs(x - y) / (1.0 + np.abs(y)), initial=0.0))
              for x, y in zip(_leaves(a), _leaves(b), strict=True)), default=0.0)


def compare(method: str, seed: int = 0) -> dict[int, dict[str, float]]:
  case = METHODS[method](np.random.default_rng(seed))
  runs = {n: run_steps(case, n) for n in DEVICE_COUNTS}
  ref_state, ref_metrics = runs[1]
  result = {}
  for n, (state, metrics) in runs.items():
    assert int(state['step']) == STEPS, (method, n, state['step'])
    losses, ref_losses = [m['loss'] for m in metrics], [m['loss'] for m in ref_metrics]
    row = {'loss_diff': max_diff(losses, ref_losses), 'loss_err': max_err(losses, ref_losses),
           'metrics_err': max_err(metrics, ref_metrics), 'state_err': max_err(state, ref_state)}
    for name, path in case.tracked.items():
      prefix = 'param' if name == 'params' else name
      got, ref = _subtree(state, path), _subtree(ref_state, path)
      row[f'{prefix}_diff'], row[f'{prefix}_err'] = max_diff(got, ref), max_err(got, ref)
      moved_key = 'moved' if name == 'params' else f'{name}_moved'
      row[moved_key] = max_diff(got, _subtree(case.state, path))
    result[n] = row
  return result


def main(argv: list[str]) -> None:
  if jax.device_count() < max(DEVICE_COUNTS):
    sys.exit(f'{jax.device_count()} devices; set XLA_FLAGS='
             f'--xla_force_host_platform_device_count={max(DEVICE_COUNTS)}')
  methods = argv or list(METHODS)
  print(json.dumps({m: compare(m) for m in methods}))


if __name__ == '__main__':
  main(sys.argv[1:])
