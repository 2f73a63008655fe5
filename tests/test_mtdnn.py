"""MT-DNN-KD: ensemble soft targets, the mixed loss, the task sampler, GLUE scores,
the multi-task model, and a :quick end-to-end run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.methods.mtdnn_kd import pieces as ensemble
from kdjax.metrics import glue_average, glue_task_score


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_ensemble_soft_targets_average_probabilities_and_scores():
  a = np.array([[2.0, 0.0], [0.0, 1.0]])
  b = np.array([[0.0, 0.0], [3.0, 0.0]])
  c = np.array([[1.0, -1.0], [0.0, 0.0]])
  soft = ensemble.ensemble_soft_targets([a, b, c], regression=False)
  np.testing.assert_allclose(soft, (softmax(a) + softmax(b) + softmax(c)) / 3, rtol=1e-6)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  # Averaging probabilities is not averaging logits.
  assert not np.allclose(soft, softmax((a + b + c) / 3))
  scores = ensemble.ensemble_soft_targets([np.array([[1.0], [4.0]]), np.array([[3.0], [2.0]])],
                                          regression=True)
  np.testing.assert_allclose(scores, [[2.0], [3.0]])


def test_a_temperature_softens_every_member_before_averaging():
  a = np.array([[2.0, 0.0, -1.0]])
  b = np.array([[-1.0, 3.0, 0.0]])
  soft = ensemble.ensemble_soft_targets([a, b], regression=False, temperature=2.0)
  # By hand: softmax(a / 2) = e^(1, 0, -0.5) / sum, and likewise for b.
  pa = np.exp([1.0, 0.0, -0.5]) / np.exp([1.0, 0.0, -0.5]).sum()
  pb = np.exp([-0.5, 1.5, 0.0]) / np.exp([-0.5, 1.5, 0.0]).sum()
  np.testing.assert_allclose(soft, [(pa + pb) / 2], rtol=1e-6)
  assert not np.allclose(soft, ensemble.ensemble_soft_targets([a, b], regression=False))
  scores = [np.array([[1.0]]), np.array([[3.0]])]  # a score is not softened
  np.testing.assert_allclose(ensemble.ensemble_soft_targets(scores, True, temperature=2.0),
                             [[2.0]])


TABLE = ensemble.TaskTable(num_classes=(3, 2, 1), regression=(False, False, True))


def test_multitask_loss_softens_the_student_by_the_same_temperature():
  logits = jnp.array([[1.0, 0.0, -1.0]])
  soft = jnp.array([[0.2, 0.3, 0.5]])
  got = ensemble.multitask_loss(logits, jnp.array([2.0]), soft, jnp.ones(1), jnp.array([0]),
                                TABLE, alpha=0.25, temperature=2.0)
  hard = -np.log(softmax(np.array([1.0, 0.0, -1.0])))[2]
  soft_lp = np.log(softmax(np.array([0.5, 0.0, -0.5])))  # student logits / 2
  expected = 0.25 * hard + 0.75 * 4.0 * -(0.2 * soft_lp[0] + 0.3 * soft_lp[1] + 0.5 * soft_lp[2])
  np.testing.assert_allclose(got, [expected], rtol=1e-5)


def test_soft_targets_reach_the_student_where_a_task_has_teachers():
  """The student's arrays carry the ensemble's softened targets and has_soft = 1
  for tasks with teachers, zeros for the others; and the loss then moves with
  the targets (and does not where has_soft is 0)."""
  from kdjax.methods.mtdnn_kd import pipeline
  from kdjax.data.tasks import get_task
  rng = np.random.default_rng(0)
  tasks = {name: pipeline.TaskData(get_task(name), {'labels': np.zeros(4, np.float32),
                                                    'input_ids': np.zeros((4, 8), np.int32)},
                                   {}, '') for name in ('rte', 'stsb', 'qnli')}
  members = {'rte': rng.normal(size=(3, 4, 2)), 'stsb': rng.normal(size=(3, 4, 1))}
  arrays = pipeline.student_arrays(
      tasks, {k: {'member_train': v} for k, v in members.items()}, 3, temperature=2.0)
  np.testing.assert_array_equal([a['has_soft'].min() for a in arrays], [1, 1, 0])
  np.testing.assert_allclose(arrays[0]['soft_targets'][:, :2],
                             ensemble.ensemble_soft_targets(members['rte'], False, 2.0),
                             rtol=1e-6)
  np.testing.assert_allclose(arrays[1]['soft_targets'][:, 0], members['stsb'].mean(0)[:, 0],
                             rtol=1e-6)
  assert (arrays[2]['soft_targets'] == 0).all()
  logits, labels, tasks_ids = jnp.array([[0.3, -0.2, 0.0]]), jnp.array([1.0]), jnp.array([1])
  loss = lambda q, has: ensemble.multitask_loss(logits, labels, jnp.array([q]), jnp.array([has]),
                                                tasks_ids, TABLE, alpha=0.5, temperature=1.0)
  assert loss([0.9, 0.1, 0.0], 1.0) != loss([0.1, 0.9, 0.0], 1.0)
  assert loss([0.9, 0.1, 0.0], 0.0) == loss([0.1, 0.9, 0.0], 0.0)


def test_multitask_loss_against_hand_computed_values():
  logits = jnp.array([[1.0, 0.0, -1.0],    # task 0, 3 classes
                      [2.0, 0.5, 99.0],    # task 1, 2 classes: the third column is padding
                      [0.7, 5.0, 5.0],     # task 2, regression: column 0 is the score
                      [0.3, -0.2, 99.0]])  # task 1 without a teacher
  labels = jnp.array([2.0, 0.0, 1.5, 1.0])
  soft = jnp.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0], [1.1, 0.0, 0.0], [0.0, 0.0, 0.0]])
  has_soft = jnp.array([1.0, 1.0, 1.0, 0.0])
  tasks = jnp.array([0, 1, 2, 1])
  got = ensemble.multitask_loss(logits, labels, soft, has_soft, tasks, TABLE,
                                alpha=0.5, temperature=1.0)
  lp0 = np.log(softmax(np.array([1.0, 0.0, -1.0])))
  lp1 = np.log(softmax(np.array([2.0, 0.5])))
  lp3 = np.log(softmax(np.array([0.3, -0.2])))
  expected = [
      0.5 * -lp0[2] + 0.5 * -(0.2 * lp0[0] + 0.3 * lp0[1] + 0.5 * lp0[2]),
      0.5 * -lp1[0] + 0.5 * -(0.6 * lp1[0] + 0.4 * lp1[1]),
      0.5 * (0.7 - 1.5) ** 2 + 0.5 * (0.7 - 1.1) ** 2,
      -lp3[1],                                      # hard loss only
  ]
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_multitask_loss_gradients_ignore_padding_and_teacher():
  logits = jnp.array([[2.0, 0.5, 7.0], [0.1, 0.0, 0.0]])
  soft = jnp.array([[0.6, 0.4, 0.0], [2.0, 0.0, 0.0]])
  fn = lambda z, q: ensemble.multitask_loss(
      z, jnp.array([1.0, 0.5]), q, jnp.ones(2), jnp.array([1, 2]), TABLE,
      alpha=0.3, temperature=1.0).sum()
  grad_z, grad_q = jax.grad(fn, argnums=(0, 1))(logits, soft)
  assert grad_z[0, 2] == 0 and np.all(grad_z[1, 1:] == 0)   # padded / unused columns
  np.testing.assert_array_equal(grad_q, 0.0)                  # soft targets are constants
  p = softmax(np.array([2.0, 0.5]))
  np.testing.assert_allclose(grad_z[0, :2], 0.3 * (p - [0, 1]) + 0.7 * (p - [0.6, 0.4]),
                             rtol=1e-5)
  np.testing.assert_allclose(grad_z[1, 0], 0.3 * 2 * (0.1 - 0.5) + 0.7 * 2 * (0.1 - 2.0),
                             rtol=1e-5)


def test_task_sampler_proportional_to_size_and_deterministic():
  sizes = [1000, 3000, 6000]
  schedule = ensemble.task_schedule(sizes, 8, 20000, seed=0)
  shares = np.bincount(schedule, minlength=3) / len(schedule)
  np.testing.assert_allclose(shares, [0.1, 0.3, 0.6], atol=0.01)
  np.testing.assert_array_equal(schedule, ensemble.task_schedule(sizes, 8, 20000, seed=0))
  with pytest.raises(ValueError, match='fewer than a batch'):
    ensemble.task_schedule([4, 100], 8, 10, seed=0)


def test_multitask_batches_one_task_each_and_cover_every_task_epoch():
  arrays = tuple({'input_ids': np.arange(n)[:, None] + 100 * t, 'labels': np.zeros(n)}
                 for t, n in enumerate([16, 32]))
  schedule = ensemble.task_schedule([16, 32], 4, 60, seed=1)
  batches = ensemble.MultiTaskBatches(arrays, schedule, 4, seed=1)
  seen = {0: [], 1: []}
  for step in range(60):
    b = batches.batch_at(step)
    task = int(b['task_ids'][0])
    assert (b['task_ids'] == task).all() and task == schedule[step]
    seen[task].extend(b['input_ids'][:, 0] - 100 * task)
  # Within each task epoch every row appears once before any repeats.
  assert sorted(seen[0][:16]) == list(range(16))
  assert sorted(seen[1][:32]) == list(range(32))


def test_bucketed_multitask_batches_cover_each_task_once_per_pass():
  rng = np.random.default_rng(0)
  arrays = []
  for t, n in enumerate([13, 30]):
    tokens = rng.integers(2, 17, n)
    mask = (np.arange(16)[None] < tokens[:, None]).astype(np.int32)
    arrays.append({'input_ids': mask * 0 + np.arange(n)[:, None] + 100 * t,
                   'token_type_ids': 0 * mask, 'attention_mask': mask,
                   'labels': np.zeros(n, np.float32)})
  schedule = ensemble.task_schedule([13, 30], 4, 40, seed=1)
  batches = ensemble.MultiTaskBatches(tuple(arrays), schedule, 4, seed=1, lengths=(4, 8, 16))
  seen = {0: [], 1: []}
  for step in range(40):
    b = batches.batch_at(step)
    task = int(b['task_ids'][0])
    assert task == schedule[step] and b['input_ids'].shape[1] in (4, 8, 16)
    real = b['weights'] > 0
    assert (arrays[task]['attention_mask'][b['input_ids'][real, 0] - 100 * task].sum(1)
            <= b['input_ids'].shape[1]).all()  # no row is cut
    seen[task].extend(b['input_ids'][real, 0] - 100 * task)
  # A pass is ceil(n / 4) batches and holds every row once (the last batch padded).
  assert batches.steps_per_epoch(0) == 4 and sorted(seen[0][:13]) == list(range(13))
  assert batches.steps_per_epoch(1) == 8 and sorted(seen[1][:30]) == list(range(30))


def test_glue_scores_follow_the_leaderboard():
  per_task = {'cola': {'mcc': 0.5, 'accuracy': 0.9}, 'mrpc': {'accuracy': 0.8, 'f1': 0.9},
              'stsb': {'pearson': 0.7, 'spearman': 0.9}, 'rte': {'accuracy': 0.6}}
  assert glue_task_score('cola', per_task['cola']) == pytest.approx(50.0)
  assert glue_task_score('mrpc', per_task['mrpc']) == pytest.approx(85.0)
  assert glue_average(per_task) == pytest.approx((50 + 85 + 80 + 60) / 4)


def test_multitask_model_routes_examples_to_their_heads():
  from kdjax.models.multitask import MultiTaskModel
  from tests.conftest import TINY
  model = MultiTaskModel(TINY, (3, 1))
  ids = jnp.ones((2, 8), jnp.int32)
  params = model.init(jax.random.PRNGKey(0), ids, 0 * ids, ids, jnp.array([0, 1]))['params']
  out = model.apply({'params': params}, ids, 0 * ids, ids, jnp.array([0, 1]))['logits']
  pooled = model.apply({'params': params}, ids, 0 * ids, ids, jnp.array([0, 1]))['pooled']
  head1 = params['head_1']['dense']
  np.testing.assert_allclose(out[1, 0], (pooled[1] @ head1['kernel'] + head1['bias'])[0], rtol=1e-5)
  assert out.shape == (2, 3) and float(out[1, 1]) == 0.0 and float(out[1, 2]) == 0.0


def test_quick_mtdnn_run(tmp_path, glue_dir, tiny_teacher_dir):
  """configs/glue_mtdnn_kd.py:quick end to end with a tiny teacher: teachers, soft
  targets stored once and reused, student with and without KD."""
  import importlib.util
  import os
  from kdjax.methods.mtdnn_kd import pipeline as mtdnn
  from tests.conftest import REPO, TINY
  spec = importlib.util.spec_from_file_location('c', os.path.join(REPO, 'configs',
                                                                  'glue_mtdnn_kd.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('quick')
  config.data.glue_dir = glue_dir
  config.teacher.checkpoint = tiny_teacher_dir
  config.teacher.store_dir = str(tmp_path / 'teachers')
  # The default student: the teacher's architecture from its layers (here one of two).
  config.student.hidden_size, config.student.num_heads = TINY.hidden_size, TINY.num_heads
  config.student.intermediate_size, config.student.num_layers = TINY.intermediate_size, 1
  has_soft = []  # what the student's arrays carry, per run
  original = mtdnn.student_arrays

  def recording(*args, **kwargs):
    arrays = original(*args, **kwargs)
    has_soft.append([float(a['has_soft'].sum()) for a in arrays])
    return arrays
  mtdnn.student_arrays = recording
  try:
    kd = mtdnn.run(config, str(tmp_path / 'kd'))
    config.distill.alpha = 1.0  # gold labels only
    no_kd = mtdnn.run(config, str(tmp_path / 'nokd'))
  finally:
    mtdnn.student_arrays = original
  assert all(n > 0 for n in has_soft[0]) and has_soft[1] == [0.0, 0.0, 0.0]
  assert set(kd['tasks']) == {'rte', 'stsb', 'qnli'}
  for task in kd['tasks'].values():
    assert len(task['teachers']) == 3 and 'ensemble' in task
  stored = sorted(os.listdir(tmp_path / 'teachers' / 'rte'))
  assert [f for f in stored if f.endswith('.npz')], stored
  assert 'teachers' not in no_kd['tasks']['rte']
  # The baseline beside the students: RTE's training majority answered on dev.
  from kdjax.data import sources
  rte = sources.load_glue_dir('rte', glue_dir)
  train = sources.subsample(rte['train'], config.data.max_train_examples, config.data.split_seed)
  dev = sources.subsample(rte['dev'], config.data.max_eval_examples, config.data.split_seed)
  majority = np.bincount(np.asarray(train.labels, int)).argmax()
  assert kd['tasks']['rte']['majority']['accuracy'] == pytest.approx(
      np.mean(np.asarray(dev.labels) == majority))
  assert kd['tasks']['stsb']['majority'] == {'pearson': 0.0, 'spearman': 0.0}
  assert np.isfinite(no_kd['student_glue_average'])
  # A second KD run reuses the stored soft targets: no teacher is trained again.
  config.distill.alpha = 0.5
  before = os.path.getmtime(tmp_path / 'teachers' / 'rte' / [f for f in stored if f.endswith('.npz')][0])
  again = mtdnn.run(config, str(tmp_path / 'kd2'))
  assert again['tasks']['rte']['student'] == kd['tasks']['rte']['student']
  assert os.path.getmtime(tmp_path / 'teachers' / 'rte' / [f for f in stored if f.endswith('.npz')][0]) == before


def test_full_train_tasks_keep_every_row_others_are_subsampled(glue_dir, minilm_dir):
  import ml_collections
  from kdjax.data import sources
  from kdjax.errors import KdjaxError
  from kdjax.methods.mtdnn_kd.pipeline import load_tasks
  from kdjax.data.tokenize import load_tokenizer
  data = ml_collections.ConfigDict(dict(
      source='glue_dir', glue_dir=glue_dir, tasks=('rte', 'wnli'), max_length=32,
      max_train_examples=50, max_eval_examples=20, split_seed=0,
      dev_only_train_fraction=0.5, full_train_tasks=('wnli',)))
  tasks = load_tasks(data, load_tokenizer(minilm_dir))
  assert len(tasks['rte'].train['labels']) == 50
  assert len(tasks['wnli'].train['labels']) == len(sources.load_glue_dir('wnli', glue_dir)['train'].labels)
  assert len(tasks['wnli'].dev['labels']) == 20  # the dev subsample still applies
  data.full_train_tasks = ('cola', 'WNLI')  # a task not run is allowed; names are normalised
  assert len(load_tasks(data, load_tokenizer(minilm_dir))['wnli'].train['labels']) > 50
  data.full_train_tasks = ('wlni',)
  with pytest.raises(KdjaxError, match='full_train_tasks'):
    load_tasks(data, load_tokenizer(minilm_dir))
