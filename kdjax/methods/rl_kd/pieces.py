"""RL-KD: a learned policy decides, per training instance, which teachers the
student learns from.

Pure pieces, usable on their own: the policy module, its state features, the
teacher weights it implies, the three rewards, the baselines (the instance's
reward before the step, a moving average), the REINFORCE loss and the
separation statistics logged each step; and the two train steps built from
them: `fixed_weight_step` (equal weights, one teacher, or the warm-up) and
`rl_step` (sample a selection, step the student with it, reward, update the
policy).

Shapes: B instances, K teachers, C outputs (classes, or 1 for a regression
score), H the student's width, F state features.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from kdjax.errors import KdjaxError
# multi_teacher_loss is one of this method's pieces; it lives with the other KD losses.
from kdjax.losses import multi_teacher_loss, teacher_kd_losses, weighted_mean  # noqa: F401
from kdjax.methods.kd.pieces import multi_teacher_classifier_loss
from kdjax.steps import (State, apply_gradients, encoder_inputs, make_step, training_forward,
                         weighted_loss_fn)

SELECTIONS = ('hard', 'soft')
REWARDS = ('R1', 'R2', 'R3')
BASELINES = ('moving_average', 'before_step')
EXTRA_FEATURES = ('student_probs', 'student_loss', 'teacher_student_kl', 'teacher_id')


@dataclasses.dataclass(frozen=True)
class RLSettings:
  """The policy's switches (config section `rl`)."""
  selection: str = 'hard'              # 'hard': sampled actions; 'soft': normalised π
  reward: str = 'R1'                   # 'R1' | 'R2' | 'R3'
  extra_features: tuple[str, ...] = ()  # any of EXTRA_FEATURES
  baseline_decay: float = 0.9          # moving-average baseline b ← d·b + (1−d)·mean R
  baseline: str = 'before_step'        # see `advantages`

  def __post_init__(self):
    if self.selection not in SELECTIONS:
      raise KdjaxError(f'rl.selection {self.selection!r}: use one of {SELECTIONS}')
    if self.reward not in REWARDS:
      raise KdjaxError(f'rl.reward {self.reward!r}: use one of {REWARDS}')
    unknown = set(self.extra_features) - set(EXTRA_FEATURES)
    if unknown:
      raise KdjaxError(f'rl.extra_features {sorted(unknown)}: choose from {EXTRA_FEATURES}')
    if not 0.0 <= self.baseline_decay < 1.0:
      raise KdjaxError('rl.baseline_decay must be in [0, 1)')
    if self.baseline not in BASELINES:
      raise KdjaxError(f'rl.baseline {self.baseline!r}: use one of {BASELINES}')


class TeacherPolicy(nn.Module):
  """π(a_jk = 1 | s_jk) = sigmoid(f(s_jk)); f is linear (the paper) or an MLP.

  The same f scores every teacher, so what it learns (for example "trust a
  teacher that is confident and right") transfers across instances.
  Returns logits [B, K] for features [B, K, F].
  """
  hidden_sizes: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    x = features
    for i, width in enumerate(self.hidden_sizes):
      x = nn.tanh(nn.Dense(width, name=f'hidden_{i}')(x))
    return nn.Dense(1, name='out')(x)[..., 0]


def feature_size(hidden: int, num_outputs: int, num_teachers: int,
                 extra_features: tuple[str, ...] = ()) -> int:
  """F for `policy_features` with these sizes."""
  sizes = {'student_probs': num_outputs, 'student_loss': 1, 'teacher_student_kl': 1,
           'teacher_id': num_teachers}
  return hidden + num_outputs + 1 + sum(sizes[f] for f in extra_features)


def _targets(outputs: jax.Array, regression: bool) -> jax.Array:
  """Class probabilities [.., C], or the raw score [.., 1] for regression."""
  return outputs if regression else jax.nn.softmax(outputs, axis=-1)


def _gold_loss(outputs: jax.Array, labels: jax.Array, regression: bool) -> jax.Array:
  """Per-row loss on the gold label; outputs [..., C], labels broadcastable [...]."""
  if regression:
    return jnp.square(outputs[..., 0] - labels)
  log_probs = jax.nn.log_softmax(outputs, axis=-1)
  onehot = jax.nn.one_hot(labels.astype(jnp.int32), outputs.shape[-1])
  return -jnp.sum(onehot * log_probs, axis=-1)


def policy_features(instance_repr: jax.Array, teacher_out: jax.Array, labels: jax.Array, *,
                    regression: bool, student_out: jax.Array | None = None,
                    extra_features: tuple[str, ...] = ()) -> jax.Array:
  """s_jk = [e_j ; p_Tk(x_j) ; loss(y_j, T_k)] (+ extras), gradient stopped.

  instance_repr [B, H] (the student's pooled [CLS] vector, scaled here to unit
  length), teacher_out [B, K, C] teacher logits (scores for regression),
  labels [B]; student_out [B, C] is needed by the student_* and KL extras.
  -> [B, K, F].

  Why unit length: Adam moves every policy weight by about its learning rate
  per step, so H raw [CLS] components (|e| ~ 0.5 each after the pooler's tanh)
  moving together shift every logit by ~ 0.5 H lr per step, and the same for
  all teachers of an instance. At H = 384 that swamped the few teacher
  features and drove π to 1 for every teacher within tens of steps; at unit
  length the shift is at most ~ sqrt(H) lr.
  """
  batch, num_teachers = teacher_out.shape[:2]
  labels_bk = jnp.broadcast_to(labels[:, None], (batch, num_teachers))
  instance_repr = instance_repr / jnp.maximum(
      jnp.linalg.norm(instance_repr.astype(jnp.float32), axis=-1, keepdims=True), 1e-6)
  parts = [jnp.broadcast_to(instance_repr[:, None, :], (batch, num_teachers,
                                                        instance_repr.shape[-1])),
           _targets(teacher_out, regression),
           _gold_loss(teacher_out, labels_bk, regression)[..., None]]
  if extra_features and student_out is None:
    raise KdjaxError(f'rl.extra_features {extra_features} need the student outputs')
  student_bk = None if student_out is None else jnp.broadcast_to(
      student_out[:, None, :], teacher_out.shape)
  for name in extra_features:
    if name == 'student_probs':
      parts.append(_targets(student_bk, regression))
    elif name == 'student_loss':
      parts.append(_gold_loss(student_bk, labels_bk, regression)[..., None])
    elif name == 'teacher_student_kl':
      if regression:
        kl = jnp.square(teacher_out[..., 0] - student_bk[..., 0])
      else:
        t_log = jax.nn.log_softmax(teacher_out, axis=-1)
        kl = jnp.sum(jnp.exp(t_log) * (t_log - jax.nn.log_softmax(student_bk, axis=-1)), -1)
      parts.append(kl[..., None])
    elif name == 'teacher_id':
      parts.append(jnp.broadcast_to(jnp.eye(num_teachers), (batch, num_teachers,
                                                            num_teachers)))
  return jax.lax.stop_gradient(jnp.concatenate(parts, axis=-1).astype(jnp.float32))


def selection_weights(probs: jax.Array, actions: jax.Array, selection: str) -> jax.Array:
  """Teacher weights w [B, K] of the sampled selection a [B, K] under π [B, K].

  hard: the selected teachers weigh the same, w_jk = a_jk / max(1, Σ_k a_jk);
  soft: they weigh by the policy's confidence, w_jk = a_jk π_jk / Σ_k a_jk π_jk.
  An instance with no teacher selected gets w = 0 (the gold loss only). Both
  depend on the sampled actions, so the student step taken with them is the
  one whose reward REINFORCE credits to those actions (a step with
  π / Σ π over all teachers would involve no sampled choice to credit).
  """
  if selection == 'hard':
    return actions / jnp.maximum(1.0, jnp.sum(actions, axis=-1, keepdims=True))
  if selection == 'soft':
    chosen = actions * probs
    total = jnp.sum(chosen, axis=-1, keepdims=True)
    return jnp.where(total > 0, chosen / jnp.where(total > 0, total, 1.0), 0.0)
  raise KdjaxError(f'selection {selection!r}: use one of {SELECTIONS}')


def heldout_score(student_out: jax.Array, labels: jax.Array, weights: jax.Array,
                  regression: bool) -> jax.Array:
  """Accuracy on a held-out batch (negative mean squared error for regression) -> []."""
  if regression:
    return -weighted_mean(jnp.square(student_out[:, 0] - labels), weights)
  correct = (jnp.argmax(student_out, axis=-1) == labels.astype(jnp.int32))
  return weighted_mean(correct.astype(jnp.float32), weights)


def instance_rewards(reward: str, *, gold_loss_after: jax.Array,
                     weighted_kd_after: jax.Array, heldout_before: jax.Array,
                     heldout_after: jax.Array) -> jax.Array:
  """Reward per instance [B], measured on the student after its update.

  R1: −CE(y_j, S'(x_j)); R2: R1 − Σ_k w_jk KD(p_Tk, S'(x_j)) (`rl_step` passes
  w = 1/K for an instance that picked no teacher); R3: the change
  in held-out accuracy, the same for every instance of the batch (episode).
  """
  if reward == 'R1':
    return -gold_loss_after
  if reward == 'R2':
    return -gold_loss_after - weighted_kd_after
  if reward == 'R3':
    return jnp.broadcast_to(heldout_after - heldout_before, gold_loss_after.shape)
  raise KdjaxError(f'reward {reward!r}: use one of {REWARDS}')


def reference_rewards(reward: str, *, gold_loss_before: jax.Array,
                      mean_kd_before: jax.Array) -> jax.Array:
  """Per instance [B], what the student before its step earns, with no action
  involved: R1: −CE(y_j, S(x_j)); R2: R1 − the teachers' mean KD loss; R3: 0
  (its reward is already a change).

  `rl.baseline = 'before_step'` subtracts it from the reward, so the advantage
  is the instance's gain from the step rather than how easy the instance is.
  Without it, instance difficulty dominates R1 and R2 and drowns the effect of
  the selection; it does not depend on the sampled actions, so the REINFORCE
  gradient stays unbiased.
  """
  if reward == 'R1':
    return -gold_loss_before
  if reward == 'R2':
    return -gold_loss_before - mean_kd_before
  if reward == 'R3':
    return jnp.zeros_like(gold_loss_before)
  raise KdjaxError(f'reward {reward!r}: use one of {REWARDS}')


def moving_baseline(baseline: jax.Array, num_updates: jax.Array, mean_reward: jax.Array,
                    decay: float) -> tuple[jax.Array, jax.Array]:
  """(baseline used now, baseline after this update).

  The first update starts the average at the batch's own mean reward, so the
  first advantages are not the raw rewards.
  """
  used = jnp.where(num_updates == 0, mean_reward, baseline)
  return used, decay * used + (1.0 - decay) * mean_reward


def action_log_prob(policy_logits: jax.Array, actions: jax.Array) -> jax.Array:
  """Σ_k log π(a_jk | s_jk) for Bernoulli actions: [B, K], [B, K] -> [B]."""
  return jnp.sum(actions * jax.nn.log_sigmoid(policy_logits)
                 + (1.0 - actions) * jax.nn.log_sigmoid(-policy_logits), axis=-1)


def reinforce_loss(policy_params, policy: nn.Module, features: jax.Array,
                   actions: jax.Array, advantages: jax.Array, weights: jax.Array
                   ) -> jax.Array:
  """−mean_j (R_j − b) Σ_k log π_θ(a_jk | s_jk); its gradient is −∇θ J (REINFORCE)."""
  logits = policy.apply({'params': policy_params}, features)
  per_instance = jax.lax.stop_gradient(advantages) * action_log_prob(logits, actions)
  return -weighted_mean(per_instance, weights)


# ------------------------------------------------------------------ train steps

def init_policy_state(policy: nn.Module, num_features: int, num_teachers: int,
                      tx: optax.GradientTransformation, seed: int) -> dict[str, Any]:
  """The policy's part of the train state: params, optimiser state, baseline."""
  params = policy.init(jax.random.PRNGKey(seed),
                       jnp.zeros((1, num_teachers, num_features), jnp.float32))['params']
  return {'params': params, 'opt_state': tx.init(params),
          'baseline': jnp.zeros((), jnp.float32), 'updates': jnp.zeros((), jnp.int32)}


def _student_update(state: State, batch, rng, teacher_weights, *, model, tx, alpha,
                    temperature, regression):
  """One optimiser step of the student on `multi_teacher_loss`.

  Returns (student part of the state: params, opt_state; loss; gradient norm).
  """
  loss_fn = weighted_loss_fn(training_forward(model), multi_teacher_classifier_loss(
      teacher_weights, alpha=alpha, temperature=temperature, regression=regression),
                             batch, rng)
  stepped, metrics = apply_gradients(state, loss_fn, tx, has_aux=True)
  student = {'params': stepped['params'], 'opt_state': stepped['opt_state']}
  return student, metrics['loss'], metrics['grad_norm']


def fixed_weight_step(model, *, teacher_weights: tuple, alpha: float, temperature: float,
                      regression: bool):
  """The student step `(state, batch, rng, *, tx)` with the same teacher weights
  for every instance.

  (1/K,..) is equal-weight KD and the RL-KD warm-up; a one-hot is one
  teacher's KD.
  """
  return make_step('fixed_weight_step', training_forward(model), multi_teacher_classifier_loss(
      tuple(teacher_weights), alpha=alpha, temperature=temperature, regression=regression))


def rl_step(state: State, batch, rng, *, model, tx, policy: nn.Module,
            policy_tx: optax.GradientTransformation, rl: RLSettings, alpha: float,
            temperature: float, regression: bool, update_student: bool):
  """One policy step, and (`update_student`) one student step, on one batch.

  The policy samples a selection a ~ π(s) from the current student's view of
  each instance; the student takes a step with the teachers it implies
  (`selection_weights`); the reward is read from the stepped student, and
  REINFORCE with the baseline (`rl.baseline`) updates the policy. With
  `update_student` the student keeps that very step, so the step rewarded is
  the step taken; without it (policy pre-training) the student stays as it was.
  """
  rng = jax.random.fold_in(rng, state['step'])
  act_rng, dropout_rng = jax.random.split(rng)
  labels, weights, teacher_out = batch['labels'], batch['weights'], batch['teacher_logits']
  pol = state['policy']
  num_teachers = teacher_out.shape[1]

  before = model.apply({'params': state['params']}, *encoder_inputs(batch))
  features = policy_features(before['pooled'], teacher_out, labels, regression=regression,
                             student_out=before['logits'],
                             extra_features=rl.extra_features)
  probs = jax.nn.sigmoid(policy.apply({'params': pol['params']}, features))
  actions = jax.random.bernoulli(act_rng, probs).astype(jnp.float32)
  teacher_weights = selection_weights(probs, actions, rl.selection)
  stepped, loss, grad_norm = _student_update(
      state, batch, dropout_rng, teacher_weights, model=model, tx=tx, alpha=alpha,
      temperature=temperature, regression=regression)

  kd_losses = lambda out: teacher_kd_losses(out, labels, teacher_out, temperature=temperature,
                                            regression=regression)
  after = model.apply({'params': stepped['params']}, *encoder_inputs(batch))['logits']
  # R2 charges an instance that picked no teacher the mean KD loss: otherwise
  # abstaining would always be rewarded (its weighted KD loss is 0).
  picked_none = jnp.sum(actions, axis=-1, keepdims=True) == 0
  kd_weights = jnp.where(picked_none, 1.0 / num_teachers, teacher_weights)
  heldout_before = heldout_after = jnp.zeros((), jnp.float32)
  if rl.reward == 'R3':
    h_in, h_labels, h_weights = (encoder_inputs(batch, 'heldout_'), batch['heldout_labels'],
                                 batch['heldout_weights'])
    score = lambda p: heldout_score(model.apply({'params': p}, *h_in)['logits'], h_labels,
                                    h_weights, regression)
    heldout_before, heldout_after = score(state['params']), score(stepped['params'])
  rewards = instance_rewards(
      rl.reward, gold_loss_after=_gold_loss(after, labels, regression),
      weighted_kd_after=jnp.sum(kd_weights * kd_losses(after), -1),
      heldout_before=heldout_before, heldout_after=heldout_after)
  reference = jnp.zeros_like(rewards)
  if rl.baseline == 'before_step' and rl.reward != 'R3':
    reference = reference_rewards(rl.reward,
                                  gold_loss_before=_gold_loss(before['logits'], labels,
                                                              regression),
                                  mean_kd_before=jnp.mean(kd_losses(before['logits']), -1))
  gains = rewards - reference
  mean_gain = weighted_mean(gains, weights)
  baseline, next_baseline = moving_baseline(pol['baseline'], pol['updates'], mean_gain,
                                            rl.baseline_decay)
  policy_loss, policy_grads = jax.value_and_grad(reinforce_loss)(
      pol['params'], policy, features, actions, gains - baseline, weights)
  updates, policy_opt = policy_tx.update(policy_grads, pol['opt_state'], pol['params'])
  new_policy = {'params': optax.apply_updates(pol['params'], updates),
                'opt_state': policy_opt, 'baseline': next_baseline,
                'updates': pol['updates'] + 1}

  student = {'params': state['params'], 'opt_state': state['opt_state']}
  if update_student:
    student = stepped
  metrics = {'loss': loss, 'grad_norm': grad_norm, 'reward': weighted_mean(rewards, weights),
             'gain': mean_gain, 'baseline': baseline, 'policy_loss': policy_loss,
             'heldout_gain': heldout_after - heldout_before,
             **separation_metrics(probs, actions, teacher_out, labels, weights, regression)}
  return {**state, **student, 'policy': new_policy, 'step': state['step'] + 1}, metrics


def separation_metrics(probs: jax.Array, actions: jax.Array, teacher_out: jax.Array,
                       labels: jax.Array, weights: jax.Array, regression: bool
                       ) -> dict[str, jax.Array]:
  """How far the policy tells teachers apart on this batch (logged every step).

  policy_prob_k / selected_k: mean π and selection share of teacher k;
  policy_spread: mean over instances of max_k π − min_k π (0 when every
  teacher of an instance gets the same weight); for classification,
  right_prob_sum_k / right_count_k (and wrong_*): the sum of teacher k's π
  over the instances it classifies right (wrong) and their number, so that
  the mean π when right is their ratio over any span of steps (a batch may
  have none, and sums stay finite).
  """
  metrics = {'policy_spread': weighted_mean(jnp.max(probs, -1) - jnp.min(probs, -1), weights)}
  if not regression:
    right = (jnp.argmax(teacher_out, -1) == labels[:, None].astype(jnp.int32))
  for k in range(probs.shape[1]):
    metrics[f'policy_prob_{k}'] = weighted_mean(probs[:, k], weights)
    metrics[f'selected_{k}'] = weighted_mean(actions[:, k], weights)
    if not regression:
      for side, rows in (('right', right[:, k]), ('wrong', ~right[:, k])):
        metrics[f'{side}_count_{k}'] = jnp.sum(weights * rows)
        metrics[f'{side}_prob_sum_{k}'] = jnp.sum(weights * rows * probs[:, k])
  return metrics


def policy_probs(params, policy_params, batch, *, model, policy: nn.Module,
                 extra_features: tuple[str, ...], regression: bool) -> jax.Array:
  """π [B, K] of the current student and policy (for records and plots)."""
  out = model.apply({'params': params}, *encoder_inputs(batch))
  features = policy_features(out['pooled'], batch['teacher_logits'], batch['labels'],
                             regression=regression, student_out=out['logits'],
                             extra_features=extra_features)
  return jax.nn.sigmoid(policy.apply({'params': policy_params}, features))
