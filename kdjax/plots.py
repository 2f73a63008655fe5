"""PNG plots of a run's records (matplotlib, no display needed)."""
from __future__ import annotations


import matplotlib

matplotlib.use('Agg')  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402

from kdjax import atomic  # noqa: E402


def _save(fig, path: str) -> None:
  with atomic.replacing(path, suffix='.png') as tmp:
    fig.savefig(tmp, dpi=110, bbox_inches='tight')
  plt.close(fig)


def policy_over_training(record: dict, path: str) -> None:
  """Mean policy weight π per teacher against the step, one panel per stage;
  for classification a second row: π when the teacher is right minus π when
  it is wrong (how far the policy tells a teacher's good advice from bad)."""
  stages = [s for s in ('policy_pretrain', 'joint')
            if any(p['phase'] == s for p in record['over_training'])]
  with_right = any('right' in p for p in record['over_training'])
  rows, cols = 1 + with_right, max(len(stages), 1)
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
  style = lambda k: dict(linestyle=('-', '--', ':', '-.')[k % 4], linewidth=2.2 - 0.4 * (k % 4))
  for col, stage in enumerate(stages):
    points = [p for p in record['over_training'] if p['phase'] == stage]
    steps = [p['step'] for p in points]
    for k, name in enumerate(record['teachers']):  # styles differ: lines may overlap
      axes[0][col].plot(steps, [p['prob'][k] for p in points], label=name, **style(k))
      if with_right:
        axes[1][col].plot(steps, [p['right'][k] - p['wrong'][k] for p in points],
                          label=name, **style(k))
    axes[0][col].set_title({'policy_pretrain': 'policy pre-training (student frozen)',
                            'joint': 'joint training'}[stage])
    axes[0][col].set_ylim(0, 1)
    axes[-1][col].set_xlabel('step')
    if with_right:
      axes[1][col].axhline(0.0, color='gray', linewidth=0.8)
      axes[1][col].set_ylim(-1, 1)
  axes[0][0].set_ylabel('mean π(select teacher)')
  if with_right:
    axes[1][0].set_ylabel('π right − π wrong')
  axes[0][0].legend(fontsize=8)
  _save(fig, path)


def policy_by_difficulty(record: dict, path: str) -> None:
  """Mean final π per teacher in bins of instance difficulty (grouped bars)."""
  info = record['by_difficulty']
  teachers = record['teachers']
  bins = range(len(info['prob_by_bin']))
  width = 0.8 / len(teachers)
  fig, ax = plt.subplots(figsize=(6, 3.4))
  for k, name in enumerate(teachers):
    ax.bar([b + k * width for b in bins], [row[k] for row in info['prob_by_bin']],
           width, label=name)
  ax.set_xticks([b + 0.4 - width / 2 for b in bins])
  ax.set_xticklabels([f'q{b + 1}' for b in bins])
  ax.set_xlabel(f"instance difficulty quintile ({info['difficulty']}; q1 easiest)")
  ax.set_ylabel('mean π(select teacher)')
  ax.set_ylim(0, 1)
  ax.legend(fontsize=8)
  _save(fig, path)


def curves(title: str, series: dict[str, dict[str, list[tuple[int, float]]]],
           path: str) -> None:
  """One panel per metric (`series[metric][run] = [(step, value)]`), a line per run."""
  fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
  for ax, (metric, by_run) in zip(axes[0], series.items()):
    for run, points in by_run.items():
      steps, values = zip(*points) if points else ((), ())
      ax.plot(steps, values, label=run, marker='.' if len(points) < 20 else None)
    ax.set_title(metric, fontsize=9)
    ax.set_xlabel('step')
  axes[0][0].legend(fontsize=7)
  fig.suptitle(title)
  _save(fig, path)
