"""RL-KD: REINFORCE against a hand-computed gradient, selection weights, the
multi-teacher loss, rewards, learning to prefer the right teacher, a checkpoint
round trip of the policy, and a :quick end-to-end run."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kdjax import checkpoint
from kdjax.data.batching import TrainBatches
from kdjax.methods.rl_kd import pieces as rl_select
from kdjax.methods.rl_kd import policy_record
from kdjax.steps import init_state, jit_train_step
from kdjax.models.heads import BertClassifier
from tests.conftest import TINY, export_accuracy, load_config


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_reinforce_gradient_matches_hand_computed_one():
  """∇θ of the REINFORCE loss of a linear policy, written out by hand:
  ∂/∂W [−mean_j A_j Σ_k log π(a_jk|s_jk)] = −mean_j A_j Σ_k (a_jk − σ(W·s_jk + b)) s_jk."""
  rng = np.random.default_rng(0)
  features = rng.normal(size=(3, 2, 4)).astype(np.float32)
  actions = np.array([[1, 0], [1, 1], [0, 0]], np.float32)
  advantages = np.array([0.5, -1.0, 2.0], np.float32)
  weights = np.ones(3, np.float32)
  policy = rl_select.TeacherPolicy()
  params = {'out': {'kernel': rng.normal(size=(4, 1)).astype(np.float32),
                    'bias': np.array([0.3], np.float32)}}
  grads = jax.grad(rl_select.reinforce_loss)(params, policy, features, actions, advantages,
                                             weights)
  z = features @ params['out']['kernel'][:, 0] + 0.3
  residual = actions - sigmoid(z)                       # [B, K]
  expected_w = -np.einsum('j,jk,jkf->f', advantages, residual, features) / 3
  expected_b = -np.einsum('j,jk->', advantages, residual) / 3
  np.testing.assert_allclose(grads['out']['kernel'][:, 0], expected_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grads['out']['bias'][0], expected_b, rtol=1e-5, atol=1e-6)
  # A padded instance (weight 0) contributes nothing.
  padded = jax.grad(rl_select.reinforce_loss)(params, policy, features, actions,
                                              advantages, np.array([1, 1, 0], np.float32))
  expected_pad = -np.einsum('j,jk,jkf->f', advantages[:2], residual[:2], features[:2]) / 2
  np.testing.assert_allclose(padded['out']['kernel'][:, 0], expected_pad, rtol=1e-5, atol=1e-6)


def test_selection_weights_hard_and_soft():
  """Both weigh only the sampled teachers: hard equally, soft by π."""
  probs = jnp.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.8, 0.6, 0.3]])
  actions = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
  hard = rl_select.selection_weights(probs, actions, 'hard')
  np.testing.assert_allclose(hard, [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [1 / 3] * 3],
                             rtol=1e-6)  # none picked: 0
  soft = rl_select.selection_weights(probs, actions, 'soft')
  np.testing.assert_allclose(soft, [[0.9 / 1.4, 0.0, 0.5 / 1.4], [0.0, 0.0, 0.0],
                                    [0.8 / 1.7, 0.6 / 1.7, 0.3 / 1.7]], rtol=1e-6)
  with pytest.raises(Exception, match='selection'):
    rl_select.selection_weights(probs, actions, 'greedy')


def test_multi_teacher_loss_against_hand_computed_values():
  student = np.array([[1.0, -1.0], [0.0, 2.0]], np.float32)
  labels = np.array([0, 1])
  teachers = np.array([[[2.0, 0.0], [0.0, 3.0]], [[1.0, 1.0], [-2.0, 0.0]]], np.float32)
  w = np.array([[0.5, 0.5], [1.0, 0.0]], np.float32)
  alpha, tau = 0.3, 2.0
  got = rl_select.multi_teacher_loss(student, labels, teachers, w, alpha=alpha,
                                     temperature=tau, regression=False)
  hard = -log_softmax(student)[[0, 1], labels]
  kd = np.stack([-(tau ** 2) * (np.exp(log_softmax(teachers[:, k] / tau))
                                * log_softmax(student / tau)).sum(-1) for k in range(2)], 1)
  np.testing.assert_allclose(got, alpha * hard + (1 - alpha) * (w * kd).sum(-1), rtol=1e-5)
  # No teacher selected: the gold loss alone (times alpha).
  none = rl_select.multi_teacher_loss(student, labels, teachers, np.zeros_like(w), alpha=alpha,
                                      temperature=tau, regression=False)
  np.testing.assert_allclose(none, alpha * hard, rtol=1e-5)
  # Regression: squared errors against the gold score and each teacher's score.
  reg = rl_select.multi_teacher_loss(np.array([[1.0]]), np.array([3.0]),
                                     np.array([[[2.0], [0.0]]]), np.array([[0.25, 0.75]]),
                                     alpha=0.5, temperature=1.0, regression=True)
  np.testing.assert_allclose(reg, [0.5 * 4.0 + 0.5 * (0.25 * 1.0 + 0.75 * 1.0)])


def test_reward_variants_and_baseline():
  gold = jnp.array([0.2, 1.0])
  kd = jnp.array([0.5, 0.1])
  kwargs = dict(gold_loss_after=gold, weighted_kd_after=kd,
                heldout_before=jnp.array(0.6), heldout_after=jnp.array(0.75))
  np.testing.assert_allclose(rl_select.instance_rewards('R1', **kwargs), [-0.2, -1.0])
  np.testing.assert_allclose(rl_select.instance_rewards('R2', **kwargs), [-0.7, -1.1])
  np.testing.assert_allclose(rl_select.instance_rewards('R3', **kwargs), [0.15, 0.15], rtol=1e-6)
  used, nxt = rl_select.moving_baseline(jnp.array(0.0), jnp.array(0), jnp.array(-2.0), 0.9)
  assert float(used) == -2.0 and float(nxt) == pytest.approx(-2.0)  # starts at the first mean
  used, nxt = rl_select.moving_baseline(jnp.array(-2.0), jnp.array(5), jnp.array(0.0), 0.9)
  assert float(used) == -2.0 and float(nxt) == pytest.approx(-1.8)
  acc = rl_select.heldout_score(jnp.array([[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]]),
                                jnp.array([0, 0, 1]), jnp.array([1.0, 1.0, 0.0]), False)
  assert float(acc) == pytest.approx(0.5)  # the padded row is ignored
  with pytest.raises(Exception, match='reward'):
    rl_select.RLSettings(reward='R4')
  with pytest.raises(Exception, match='baseline'):
    rl_select.RLSettings(baseline='none')
  # Before-step references: what the student earns before its step, no action involved.
  before = dict(gold_loss_before=jnp.array([0.4, 0.9]), mean_kd_before=jnp.array([0.3, 0.2]))
  np.testing.assert_allclose(rl_select.reference_rewards('R1', **before), [-0.4, -0.9])
  np.testing.assert_allclose(rl_select.reference_rewards('R2', **before), [-0.7, -1.1])
  np.testing.assert_allclose(rl_select.reference_rewards('R3', **before), [0.0, 0.0])


def test_policy_features_shapes_and_values():
  repr_ = jnp.ones((2, 3))
  teacher = jnp.array([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
  labels = jnp.array([0, 1])
  f = rl_select.policy_features(repr_, teacher, labels, regression=False)
  assert f.shape == (2, 2, rl_select.feature_size(3, 2, 2))
  np.testing.assert_allclose(f[0, 0, 3:], [0.5, 0.5, np.log(2.0)], rtol=1e-6)
  # The instance vector at unit length, the same for every teacher of the instance.
  np.testing.assert_allclose(f[:, :, :3], np.full((2, 2, 3), 1 / np.sqrt(3)), rtol=1e-6)
  scaled = rl_select.policy_features(jnp.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]), teacher,
                                     labels, regression=False)
  np.testing.assert_allclose(scaled[:, 0, :3], [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], rtol=1e-6)
  extra = ('student_probs', 'student_loss', 'teacher_student_kl', 'teacher_id')
  g = rl_select.policy_features(repr_, teacher, labels, regression=False,
                                student_out=jnp.zeros((2, 2)), extra_features=extra)
  assert g.shape == (2, 2, rl_select.feature_size(3, 2, 2, extra))
  np.testing.assert_allclose(g[1, :, -2:], np.eye(2))  # teacher identity


def synthetic_task(n=256, length=8, seed=0):
  """Label = whether token 1000 appears; teacher 0 is always right, teacher 1 is noise."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(2000, 3000, size=(n, length)).astype(np.int32)
  labels = rng.integers(0, 2, size=n).astype(np.int32)
  ids[labels == 1, rng.integers(1, length)] = 1000
  right = np.where(np.eye(2)[labels] > 0, 4.0, -4.0)
  noise = rng.normal(scale=4.0, size=(n, 2))
  return {'input_ids': ids, 'token_type_ids': np.zeros_like(ids),
          'attention_mask': np.ones_like(ids), 'labels': labels,
          'teacher_logits': np.stack([right, noise], 1).astype(np.float32)}


def make_rl_state(model, settings, tx, policy_tx, seed=0):
  policy = rl_select.TeacherPolicy()
  ids = np.zeros((1, 8), np.int32)
  params = model.init(jax.random.PRNGKey(seed), ids, ids, np.ones_like(ids))['params']
  state = init_state(params, tx)
  state['policy'] = rl_select.init_policy_state(
      policy, rl_select.feature_size(TINY.hidden_size, 2, 2, settings.extra_features), 2,
      policy_tx, seed)
  return policy, state


def test_policy_learns_to_prefer_the_right_teacher(reward='R1'):
  """The student is frozen (policy pre-training): the policy is rewarded for the
  selections whose trial step lowers the gold loss, and should learn that the
  noisy teacher hurts."""
  from kdjax import parallel
  arrays = synthetic_task()
  model = BertClassifier(TINY, 2)
  tx, policy_tx = optax.sgd(0.5), optax.adam(0.05)
  settings = rl_select.RLSettings(reward=reward)
  policy, state = make_rl_state(model, settings, tx, policy_tx)
  mesh = parallel.make_mesh()
  step = jit_train_step(rl_select.rl_step, mesh, model=model, tx=tx, policy=policy,
                        policy_tx=policy_tx, rl=settings, alpha=0.0, temperature=1.0,
                        regression=False, update_student=False)
  batches = TrainBatches(arrays, 32, seed=0)
  state = parallel.replicate(state, mesh)
  first_params = jax.device_get(state['params'])
  rng = jax.random.PRNGKey(0)
  for i in range(150):
    state, metrics = step(state, parallel.to_global(batches.batch_at(i), mesh), rng)
    jax.block_until_ready(metrics)  # as run_phase does: few steps in flight on fake devices
  host = jax.device_get(state)
  probs = rl_select.policy_probs(host['params'], host['policy']['params'], arrays, model=model,
                                 policy=policy, extra_features=(), regression=False)
  probs = np.asarray(probs)
  noise_wrong = arrays['teacher_logits'][:, 1].argmax(-1) != arrays['labels']
  preferred, noise_when_wrong = probs[:, 0].mean(), probs[noise_wrong, 1].mean()
  # Random logits are right half the time by chance; where they are wrong the
  # policy must have learned to leave that teacher out.
  assert preferred > 0.65 and preferred - noise_when_wrong > 0.3, (preferred, noise_when_wrong)
  assert probs[:, 0].mean() > probs[:, 1].mean() + 0.15
  # The student was frozen throughout.
  jax.tree.map(np.testing.assert_array_equal, first_params, host['params'])


def changed(a, b):
  return not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('selection', ['hard', 'soft'])
def test_the_rewarded_student_step_is_the_one_kept(selection):
  """R1 is read from the student the step leaves behind, for soft selection
  too; the before-step baseline takes each instance's loss before the step off
  that reward."""
  arrays = synthetic_task(n=64)
  model = BertClassifier(TINY, 2)
  tx, policy_tx = optax.adam(1e-3), optax.adam(1e-2)
  settings = rl_select.RLSettings(selection=selection, reward='R1', baseline='before_step',
                                  extra_features=('teacher_id',))
  policy, state = make_rl_state(model, settings, tx, policy_tx)
  before = jax.device_get(state)
  batch = TrainBatches(arrays, 16, seed=0).batch_at(0)
  new, metrics = jax.jit(lambda s, b, r: rl_select.rl_step(
      s, b, r, model=model, tx=tx, policy=policy, policy_tx=policy_tx, rl=settings, alpha=0.5,
      temperature=2.0, regression=False, update_student=True))(state, batch,
                                                               jax.random.PRNGKey(1))

  def mean_gold_loss(params):
    logits = np.asarray(model.apply({'params': params}, batch['input_ids'],
                                    batch['token_type_ids'], batch['attention_mask'])['logits'])
    ce = -log_softmax(logits)[np.arange(len(logits)), batch['labels']]
    return float((ce * batch['weights']).sum() / batch['weights'].sum())

  kept = jax.device_get(new['params'])
  assert changed(before['params'], kept)
  assert changed(before['policy']['params'], jax.device_get(new['policy']['params']))
  np.testing.assert_allclose(float(metrics['reward']), -mean_gold_loss(kept), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['gain']),
                             mean_gold_loss(before['params']) - mean_gold_loss(kept),
                             rtol=1e-4, atol=1e-6)


def test_r3_reward_is_the_held_out_gain_of_the_kept_step():
  arrays = synthetic_task(n=64)
  model = BertClassifier(TINY, 2)
  tx, policy_tx = optax.adam(1e-3), optax.adam(1e-2)
  settings = rl_select.RLSettings(selection='soft', reward='R3')
  policy, state = make_rl_state(model, settings, tx, policy_tx)
  before = jax.device_get(state)
  batch = TrainBatches(arrays, 16, seed=0).batch_at(0)
  held = TrainBatches(arrays, 16, seed=1).batch_at(0)
  batch.update({f'heldout_{k}': v for k, v in held.items()})
  step = jax.jit(lambda s, b, r: rl_select.rl_step(
      s, b, r, model=model, tx=tx, policy=policy, policy_tx=policy_tx, rl=settings, alpha=0.5,
      temperature=2.0, regression=False, update_student=True))
  first, _ = step(state, batch, jax.random.PRNGKey(1))
  # R3 gives one reward per episode: the first is its own baseline, so no policy change yet.
  jax.tree.map(np.testing.assert_array_equal, before['policy']['params'],
               jax.device_get(first['policy']['params']))
  new, metrics = step(first, batch, jax.random.PRNGKey(2))
  assert int(new['step']) == 2 and int(new['policy']['updates']) == 2

  def heldout_accuracy(params):
    logits = model.apply({'params': params}, held['input_ids'], held['token_type_ids'],
                         held['attention_mask'])['logits']
    correct = np.argmax(np.asarray(logits), -1) == held['labels']
    return (correct * held['weights']).sum() / held['weights'].sum()

  gain = heldout_accuracy(new['params']) - heldout_accuracy(first['params'])
  np.testing.assert_allclose(float(metrics['reward']), gain, atol=1e-6)
  np.testing.assert_allclose(float(metrics['heldout_gain']), gain, atol=1e-6)


def test_separation_metrics_hand_values():
  probs = jnp.array([[0.9, 0.2], [0.6, 0.6], [0.1, 0.5], [0.3, 0.3]])
  actions = jnp.ones_like(probs)
  labels = jnp.array([0, 1, 1, 0])
  # teacher 0 right on rows 0, 1; teacher 1 right on rows 1, 2, 3 (row 3 is padding).
  teacher = jnp.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]],
                       [[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
  weights = jnp.array([1.0, 1.0, 1.0, 0.0])
  m = rl_select.separation_metrics(probs, actions, teacher, labels, weights, False)
  assert float(m['policy_spread']) == pytest.approx((0.7 + 0.0 + 0.4) / 3)
  assert float(m['policy_prob_0']) == pytest.approx(1.6 / 3)
  got = {k: float(v) for k, v in m.items()}
  assert (got['right_prob_sum_0'], got['right_count_0']) == pytest.approx((1.5, 2))
  assert (got['wrong_prob_sum_0'], got['wrong_count_0']) == pytest.approx((0.1, 1))
  assert (got['right_prob_sum_1'], got['right_count_1']) == pytest.approx((1.1, 2))
  assert (got['wrong_prob_sum_1'], got['wrong_count_1']) == pytest.approx((0.2, 1))
  assert 'right_count_0' not in rl_select.separation_metrics(
      probs, actions, teacher[..., :1], labels.astype(jnp.float32), weights, True)


def test_over_training_reads_the_policy_points(tmp_path):
  """Mean π when right / wrong from the logged sums and counts (NaN without
  rows); a step logged twice keeps its last line; other phases are skipped."""
  from kdjax.methods.rl_kd import pipeline as rlkd
  def row(phase, step, right_count, reward):
    r = {'phase': phase, 'step': step, 'reward': reward, 'policy_spread': 0.2}
    for k in range(2):
      r.update({f'policy_prob_{k}': 0.5, f'selected_{k}': 0.4, f'right_count_{k}': right_count,
                f'right_prob_sum_{k}': 0.6 * right_count, f'wrong_count_{k}': 2.0,
                f'wrong_prob_sum_{k}': 0.6})
    return json.dumps(r)
  path = tmp_path / 'metrics.jsonl'
  path.write_text('\n'.join([row('joint', 10, 0.0, -1.0), row('student', 10, 3.0, 0.0),
                             row('joint', 10, 4.0, -0.5), row('policy_pretrain', 5, 0.0, -2.0)])
                  + '\n')
  points = policy_record.over_training(str(path), 2)
  assert [(p['phase'], p['step'], p['reward']) for p in points] == [
      ('policy_pretrain', 5, -2.0), ('joint', 10, -0.5)]
  assert np.isnan(points[0]['right']).all() and points[0]['wrong'] == pytest.approx([0.3, 0.3])
  assert points[1]['right'] == pytest.approx([0.6, 0.6])
  assert points[1]['wrong'] == pytest.approx([0.3, 0.3])
  empty = policy_record.over_training(str(path).replace('metrics', 'none'), 2)
  assert empty == []


def test_checkpoint_round_trip_restores_policy(tmp_path):
  """A train state with the policy saved mid-training and restored continues
  exactly as the uninterrupted one."""
  arrays = synthetic_task(n=64)
  model = BertClassifier(TINY, 2)
  tx, policy_tx = optax.adam(1e-3), optax.adam(1e-2)
  settings = rl_select.RLSettings()
  policy, state = make_rl_state(model, settings, tx, policy_tx)
  step = jax.jit(lambda s, b, r: rl_select.rl_step(
      s, b, r, model=model, tx=tx, policy=policy, policy_tx=policy_tx, rl=settings,
      alpha=0.5, temperature=2.0, regression=False, update_student=True))
  batches = TrainBatches(arrays, 16, seed=0)
  rng = jax.random.PRNGKey(3)
  for i in range(3):
    state, _ = step(state, batches.batch_at(i), rng)
  manager = checkpoint.open_manager(str(tmp_path / 'ckpt'))
  checkpoint.save(manager, 3, state)
  _, template = make_rl_state(model, settings, tx, policy_tx, seed=7)
  restored = checkpoint.restore_latest(manager, template)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), jax.device_get(restored))
  a, _ = step(state, batches.batch_at(3), rng)
  b, _ = step(restored, batches.batch_at(3), rng)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a['policy']),
               jax.device_get(b['policy']))


def teacher_section(**change):
  import ml_collections
  section = ml_collections.ConfigDict(dict(
      seed=3, member_names=('a', 'b'), member_layers=(0, 2), member_epochs=(3.0, 1.0),
      member_dropouts=(0.1, 0.3), member_train_fractions=(1.0, 0.5)))
  section.update(change)
  return section


def test_teacher_specs_and_their_rows():
  from kdjax.methods.rl_kd import pipeline as rlkd
  specs = rlkd.teacher_specs(teacher_section())
  assert [(t['name'], t['layers'], t['epochs'], t['dropout'], t['train_fraction'], t['seed'])
          for t in specs] == [('a', 0, 3.0, 0.1, 1.0, 3), ('b', 2, 1.0, 0.3, 0.5, 103)]
  for bad, match in ((dict(member_dropouts=(0.1,)), 'one entry per teacher'),
                     (dict(member_dropouts=(0.1, 1.0)), 'member_dropouts'),
                     (dict(member_train_fractions=(1.0, 0.0)), 'member_train_fractions'),
                     (dict(member_names=('a', 'a')), 'distinct')):
    with pytest.raises(Exception, match=match):
      rlkd.teacher_specs(teacher_section(**bad))
  np.testing.assert_array_equal(rlkd.member_rows(7, 1.0, 0), np.arange(7))
  half = rlkd.member_rows(100, 0.5, 9)
  assert len(half) == 50 and len(set(half)) == 50 and list(half) == sorted(half)
  np.testing.assert_array_equal(half, rlkd.member_rows(100, 0.5, 9))  # seeded
  assert set(half) != set(rlkd.member_rows(100, 0.5, 10))


def test_member_checkpoint_keeps_its_layers_and_sets_its_dropout():
  from kdjax.methods.rl_kd import pipeline as rlkd
  from kdjax.models.hf import HFCheckpoint
  encoder = {'embeddings': {}, 'pooler': {}, 'layer_0': {'a': 0}, 'layer_1': {'a': 1}}
  ckpt = HFCheckpoint(TINY, encoder, None, None, 'tiny')
  t = {'layers': 1, 'dropout': 0.3}
  got = rlkd.member_checkpoint(ckpt, t)
  assert got.config.num_layers == 1 and set(got.encoder_params) == {'embeddings', 'pooler',
                                                                    'layer_0'}
  assert got.config.hidden_dropout == got.config.attention_dropout == 0.3
  assert rlkd.member_checkpoint(ckpt, {'layers': 0, 'dropout': 0.1}).config.num_layers == 2


def test_settling_step_hand_values():
  from kdjax.methods.rl_kd import pipeline as rlkd
  steps = list(range(0, 200, 10))
  # Rises linearly from 0.5 to 1 over steps 0..90, then stays at 1.
  values = [0.5 + 0.5 * min(s / 90, 1.0) for s in steps]
  got = policy_record.settling_step(steps, values, fraction=0.9, window=2)
  assert got['plateau'] == pytest.approx(1.0)
  assert got['start'] == pytest.approx(0.5 + 0.5 / 18)  # mean of the first window
  # 90% of the way from start to plateau is 0.953: the two-point mean ending at
  # step 80 is 0.917, at step 90 0.972 (90% of the plateau alone would be step 80).
  assert got['step'] == 90
  flat = policy_record.settling_step(steps, [0.5] * len(steps), window=2)
  assert flat['step'] is None
  barely = policy_record.settling_step(steps, [0.5 + 0.01 * min(s / 90, 1.0) for s in steps],
                                       window=2)
  assert barely['step'] is None and barely['plateau'] > barely['start']  # below min_rise
  nan_tail = policy_record.settling_step(steps[:3], [0.1, float('nan'), 0.2], window=2)
  assert nan_tail['step'] is None and np.isnan(nan_tail['plateau'])


def test_collapse_step_when_every_teacher_is_always_or_never_chosen():
  from kdjax.methods.rl_kd import pipeline as rlkd
  point = lambda step, prob: {'phase': 'joint', 'step': step, 'prob': prob}
  assert policy_record.collapse_step([point(10, [0.9, 0.99]), point(20, [0.96, 0.99]),
                             point(30, [0.5, 0.5])]) == 20
  assert policy_record.collapse_step([point(10, [0.04, 0.2]), point(20, [0.04, 0.01])]) == 20
  assert policy_record.collapse_step([point(10, [0.99, 0.01])]) is None  # a choice, not a collapse


def test_separation_curve_from_logged_points():
  from kdjax.methods.rl_kd import pipeline as rlkd
  points = [{'phase': 'joint', 'step': 10, 'prob': [0.2, 0.7], 'spread': 0.5,
             'right': [0.6, 0.9], 'wrong': [0.2, float('nan')]}]
  curve = policy_record.separation_curve(points)
  assert curve['step'] == [10]
  assert curve['teacher_gap'] == [pytest.approx(0.5)]
  assert curve['right_minus_wrong'] == [pytest.approx(0.4)]  # the NaN teacher is skipped


def test_teacher_overlap_hand_values():
  from kdjax.methods.rl_kd import pipeline as rlkd
  # Two teachers, four rows: predictions (0, 0), (1, 0), (1, 1), (0, 1); labels 0, 1, 0, 1.
  logits = np.array([[[1, 0], [1, 0]], [[0, 1], [1, 0]], [[0, 1], [0, 1]], [[1, 0], [0, 1]]],
                    np.float32)
  got = policy_record.teacher_overlap(logits, np.array([0, 1, 0, 1]))
  assert got == {'accuracy': [0.5, 0.5], 'all_agree': 0.5, 'any_right': 0.75,
                 'all_right': 0.25}


def test_quick_rl_kd_run(tmp_path, glue_dir, tiny_teacher_dir):
  """configs/rl_kd.py:quick with a tiny teacher: all four stages, the record and
  plots; a baseline run reuses the stored teacher outputs."""
  from kdjax.methods.rl_kd import pipeline as rlkd
  config = load_config('rl_kd', 'quick')
  config.data.glue_dir = glue_dir
  config.teacher.checkpoint = tiny_teacher_dir
  config.teacher.member_layers = (0, 0, 1)
  config.teacher.store_dir = str(tmp_path / 'teachers')
  config.rl.reward = 'R3'
  # The tiny teacher's own first layer, at its width (the real config keeps 3 of 6).
  config.student.hidden_size, config.student.num_heads = TINY.hidden_size, TINY.num_heads
  config.student.intermediate_size, config.student.num_layers = TINY.intermediate_size, 1
  result = rlkd.run(config, str(tmp_path / 'rl'))
  assert [t['layers'] for t in result['teachers']] == [0, 0, 1]
  assert [t['train_fraction'] for t in result['teachers']] == [1.0, 0.5, 1.0]
  # The teacher on half the rows trains half the steps of the one on all rows.
  with open(tmp_path / 'rl' / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  last = lambda phase: max(r['step'] for r in rows if r['phase'] == phase)
  assert last('teacher_minilm_l6_half') == pytest.approx(last('teacher_minilm_l6') / 2, abs=1)
  assert set(result['policy']['separation']) == {'policy_pretrain', 'joint'}
  # The reported accuracy is the exported student's on the evaluation split.
  assert result['student']['metrics']['accuracy'] == pytest.approx(
      export_accuracy(result['student']['export_dir'], config), abs=1e-9)
  for name in ('policy_weights.json', 'policy_weights.png', 'policy_by_difficulty.png',
               'summary.json'):
    assert os.path.getsize(tmp_path / 'rl' / name) > 0, name
  with open(tmp_path / 'rl' / 'policy_weights.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  points = policy_record.over_training(str(tmp_path / 'rl' / 'metrics.jsonl'), 3)
  phases = {p['phase'] for p in points}
  assert phases == {'policy_pretrain', 'joint'}
  store = [f for f in os.listdir(tmp_path / 'teachers' / 'rte') if f.endswith('.npz')]
  assert len(store) == 1
  mtime = os.path.getmtime(tmp_path / 'teachers' / 'rte' / store[0])
  config.distill.weighting = 'single'
  config.distill.single_teacher = 2
  single = rlkd.run(config, str(tmp_path / 'single'))
  assert single['variant'] == 'single teacher minilm_l4' and 'policy' not in single
  assert single['teachers'] == result['teachers']
  assert os.path.getmtime(tmp_path / 'teachers' / 'rte' / store[0]) == mtime
  assert 'student, single teacher' in rlkd.format_table(single)


def test_experiment_keeps_the_saved_tasks():
  """experiments/rl_kd.py --keep-saved: tasks not run now come from the saved
  record, a task run now replaces its saved runs, and a record of other seeds
  or config values is refused."""
  from tests.conftest import load_config, load_experiment
  experiment = load_experiment('rl_kd')
  config = load_config('rl_kd').to_dict()
  saved = {'seeds': [0, 1, 2], 'config': config,
           'runs': {'sst2': {'equal': ['saved sst2']}, 'mrpc': {'equal': ['saved mrpc']}}}
  merged = experiment.with_saved_tasks({'mrpc': {'equal': ['new mrpc']},
                                        'qnli': {'equal': ['new qnli']}}, saved, [0, 1, 2], config)
  assert list(merged) == ['sst2', 'mrpc', 'qnli']
  assert merged['sst2'] == {'equal': ['saved sst2']} and merged['mrpc'] == {'equal': ['new mrpc']}
  with pytest.raises(SystemExit, match='seeds'):
    experiment.with_saved_tasks({}, saved, [0, 1], config)
  changed = load_config('rl_kd')
  changed.rl.pretrain_steps += 1
  with pytest.raises(SystemExit, match='rl.pretrain_steps'):
    experiment.with_saved_tasks({}, saved, [0, 1, 2], changed.to_dict())
  moved = {**config, 'teacher': {**config['teacher'], 'store_dir': '/elsewhere'}}
  assert list(experiment.with_saved_tasks({}, saved, [0, 1, 2], moved)) == ['sst2', 'mrpc']


def test_every_task_lists_its_students_in_one_order():
  # A task run now lists its variants singles first (the run order), a saved
  # one equal weights first: the table must not follow either.
  from tests.conftest import load_experiment
  experiment = load_experiment('rl_kd')
  run_order = ['single0', 'single1', 'equal', 'rl_R1', 'rl_R3', 'rl_R2']
  assert experiment.in_table_order(run_order) == ['equal', 'rl_R1', 'rl_R2', 'rl_R3',
                                                  'single0', 'single1']


def test_stage_end_dev_is_each_stages_last_evaluation(tmp_path):
  from tests.conftest import load_experiment
  experiment = load_experiment('rl_kd')
  lines = [{'phase': 'student_warmup', 'step': 10, 'loss': 1.7},
           {'phase': 'student_warmup', 'step': 51, 'dev_accuracy': 0.49, 'dev_f1': 0.0},
           {'phase': 'policy_pretrain', 'step': 300, 'dev_accuracy': 0.49},
           {'phase': 'joint', 'step': 60, 'dev_accuracy': 0.55},
           {'phase': 'joint', 'step': 120, 'dev_accuracy': 0.58},  # logged again on resume
           {'phase': 'joint', 'step': 120, 'dev_accuracy': 0.59}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  assert experiment.stage_end_dev(str(tmp_path)) == {
      'student_warmup': {'accuracy': 0.49, 'f1': 0.0}, 'policy_pretrain': {'accuracy': 0.49},
      'joint': {'accuracy': 0.59}}
