"""What an RL-KD policy learned, read from a run: its teacher weights over
training (from the metrics log), how far they separate the teachers and when
that settles, its weights by instance difficulty, and how often the teachers
agree; written as policy_weights.json and two PNG plots."""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from kdjax import atomic, loop, plots
from kdjax.methods.rl_kd import pieces
from kdjax.steps import jit_predict

POLICY_PHASES = ('policy_pretrain', 'joint')  # the stages in which the policy learns


def over_training(metrics_path: str, num_teachers: int) -> list[dict]:
  """The policy's batch statistics at each logged step of its stages: mean π,
  selection share, per-instance spread, reward and (classification) mean π per
  teacher when it is right and when it is wrong (`pieces.separation_metrics`).

  Steps logged twice (a run resumed after an interruption) keep the last entry.
  """
  points = {}
  if os.path.exists(metrics_path):
    with open(metrics_path, encoding='utf-8') as f:
      for line in f:
        row = json.loads(line)
        if row['phase'] in POLICY_PHASES and 'policy_prob_0' in row:
          point = {'phase': row['phase'], 'step': row['step'],
                   'prob': [row[f'policy_prob_{k}'] for k in range(num_teachers)],
                   'selected': [row[f'selected_{k}'] for k in range(num_teachers)],
                   'spread': row.get('policy_spread', float('nan')),
                   'reward': row['reward']}
          if 'right_count_0' in row:
            for side in ('right', 'wrong'):
              point[side] = [row[f'{side}_prob_sum_{k}'] / row[f'{side}_count_{k}']
                             if row[f'{side}_count_{k}'] > 0 else float('nan')
                             for k in range(num_teachers)]
          points[(row['phase'], row['step'])] = point
  return sorted(points.values(), key=lambda p: (POLICY_PHASES.index(p['phase']), p['step']))


def separation_curve(points: list[dict]) -> dict[str, list[float]]:
  """Per logged point, how far the policy tells the teachers apart:
  'teacher_gap' (largest difference between two teachers' mean π), 'spread'
  (mean per-instance max_k π − min_k π) and, for classification,
  'right_minus_wrong' (mean over teachers of π when right − π when wrong)."""
  curve = {'step': [p['step'] for p in points],
           'teacher_gap': [max(p['prob']) - min(p['prob']) for p in points],
           'spread': [p['spread'] for p in points]}
  if points and 'right' in points[0]:
    with np.errstate(invalid='ignore'):
      curve['right_minus_wrong'] = [
          float(np.nanmean(np.subtract(p['right'], p['wrong'])))
          if np.isfinite(np.subtract(p['right'], p['wrong'])).any() else float('nan')
          for p in points]
  return curve


def settling_step(steps: list[int], values: list[float], fraction: float = 0.9,
                  window: int = 5, min_rise: float = 0.02) -> dict:
  """When a noisy measure of the policy stops growing: its plateau is the mean
  of the last fifth of the points; it settles at the first step whose trailing
  mean over `window` points reaches `fraction` of the way from the first
  window's level to the plateau (None when it rose by less than `min_rise`:
  it did not grow)."""
  values = np.asarray(values, np.float64)
  keep = np.isfinite(values)
  steps, values = np.asarray(steps)[keep], values[keep]
  if len(values) < 2 * window:
    return {'plateau': float('nan'), 'start': float('nan'), 'step': None}
  plateau = float(values[-max(window, len(values) // 5):].mean())
  trailing = np.convolve(values, np.ones(window) / window, mode='valid')
  start = float(trailing[0])
  if not plateau - start >= min_rise:
    return {'plateau': plateau, 'start': start, 'step': None}
  target = start + fraction * (plateau - start)
  reached = int(np.argmax(trailing >= target))
  return {'plateau': plateau, 'start': start, 'step': int(steps[reached + window - 1])}


def collapse_step(points: list[dict], level: float = 0.95) -> int | None:
  """The first logged step at which the policy selects every teacher almost
  always (each one's batch mean π above `level`) or almost never (below
  1 − `level`): from there on it is equal weights or no KD, and a sigmoid
  that saturated learns little more."""
  for p in points:
    if min(p['prob']) > level or max(p['prob']) < 1.0 - level:
      return p['step']
  return None


def separation_summary(points: list[dict]) -> dict:
  """Per policy stage and separation measure (`separation_curve`): the start
  and plateau levels and the step at which it settles (`settling_step`); and
  the mean π over teachers at the stage's start and end, with the step it
  collapsed to all or none of the teachers (`collapse_step`)."""
  summary = {}
  for phase in POLICY_PHASES:
    stage = [p for p in points if p['phase'] == phase]
    curve = separation_curve(stage)
    if curve['step']:
      summary[phase] = {measure: settling_step(curve['step'], values)
                        for measure, values in curve.items() if measure != 'step'}
      summary[phase]['mean_prob'] = {'start': float(np.mean(stage[0]['prob'])),
                                     'end': float(np.mean(stage[-1]['prob'])),
                                     'collapse_step': collapse_step(stage)}
  return summary


def by_difficulty(probs: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                  regression: bool, num_bins: int = 5) -> dict:
  """Mean π per teacher in quantile bins of instance difficulty, and, for
  classification, when each teacher is right vs wrong.

  Difficulty of an instance: the teachers' mean loss on its gold label.
  probs [N, K], teacher_logits [N, K, C], labels [N].
  """
  losses = np.asarray(pieces._gold_loss(jnp.asarray(teacher_logits),
                                           jnp.asarray(labels)[:, None], regression))
  difficulty = losses.mean(axis=1)
  edges = np.quantile(difficulty, np.linspace(0, 1, num_bins + 1))
  bins = np.clip(np.searchsorted(edges, difficulty, side='right') - 1, 0, num_bins - 1)
  record = {'difficulty': 'mean teacher loss on the gold label',
            'bin_edges': edges.tolist(),
            'bin_sizes': [int((bins == b).sum()) for b in range(num_bins)],
            'prob_by_bin': [probs[bins == b].mean(axis=0).tolist() if (bins == b).any()
                            else [float('nan')] * probs.shape[1] for b in range(num_bins)]}
  if not regression:
    right = teacher_logits.argmax(-1) == labels[:, None].astype(np.int64)
    record['prob_when_right'] = [float(probs[right[:, k], k].mean()) if right[:, k].any()
                                 else float('nan') for k in range(probs.shape[1])]
    record['prob_when_wrong'] = [float(probs[~right[:, k], k].mean()) if (~right[:, k]).any()
                                 else float('nan') for k in range(probs.shape[1])]
  return record


def teacher_overlap(teacher_logits: np.ndarray, labels: np.ndarray) -> dict:
  """How much room the teachers leave a per-instance choice, on the training
  rows (classification): each one's accuracy, the share of rows on which they
  all give the same class, and on which at least one / every one is right.
  teacher_logits [N, K, C], labels [N]."""
  predicted = teacher_logits.argmax(-1)
  right = predicted == labels[:, None].astype(np.int64)
  return {'accuracy': right.mean(axis=0).tolist(),
          'all_agree': float((predicted == predicted[:, :1]).all(axis=1).mean()),
          'any_right': float(right.any(axis=1).mean()),
          'all_right': float(right.all(axis=1).mean())}


def _policy_probs(params, batch, *, model, policy, extra_features, regression):
  """`pieces.policy_probs` for (student params, policy params) in one argument."""
  student_params, policy_params = params
  return pieces.policy_probs(student_params, policy_params, batch, model=model,
                                policy=policy, extra_features=extra_features,
                                regression=regression)


def write_policy_record(workdir: str, names: list[str], state, model, config, spec,
                        arrays: dict, mesh) -> dict:
  """policy_weights.json and the two PNG plots of what the policy learned."""
  predict = jit_predict(model, mesh, functools.partial(
      _policy_probs, policy=pieces.TeacherPolicy(tuple(config.rl.hidden_sizes)),
      extra_features=tuple(config.rl.extra_features), regression=spec.regression))
  probs = loop.predict_all(predict, (state['params'], state['policy']['params']), arrays,
                            config.eval_batch_size, mesh)
  points = over_training(os.path.join(workdir, 'metrics.jsonl'), len(names))
  record = {'teachers': names, 'over_training': points,
            'separation': separation_summary(points),
            'final_mean_prob': probs.mean(axis=0).tolist(),
            'by_difficulty': by_difficulty(probs, arrays['teacher_logits'], arrays['labels'],
                                           spec.regression)}
  if jax.process_index() == 0:
    atomic.write_json(os.path.join(workdir, 'policy_weights.json'), record)
    plots.policy_over_training(record, os.path.join(workdir, 'policy_weights.png'))
    plots.policy_by_difficulty(record, os.path.join(workdir, 'policy_by_difficulty.png'))
  return record
