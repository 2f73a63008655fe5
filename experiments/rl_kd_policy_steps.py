"""RL-KD: how many policy steps, at which learning rate, before the policy
separates its teachers? The evidence for rl.pretrain_steps, rl.learning_rate
and rl.baseline in configs/rl_kd.py.

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/rl_kd_policy_steps.py \
      --workdir runs/rl_kd_policy_steps [--tasks sst2,mrpc] [--steps 800] \
      [--learning-rates 0.003,0.01,0.03] [--config.KEY=VALUE ...]
  python experiments/rl_kd_policy_steps.py --quick   # SST-2, 400 rows, 300 steps
  python experiments/rl_kd_policy_steps.py --rewrite # redo table and plot from the JSON

For each task, RL-KD (configs/rl_kd.py, reward rl.reward, seed 0) runs with a
long policy pre-training stage of --steps steps (the student frozen after its
equal-weight warm-up), once per policy learning rate with the before-step
baseline and once with the moving-average baseline at the config's learning
rate. Every run logs the policy's batch statistics; from them come, per
setting, how far the policy separates the teachers (π when a teacher is right
minus π when it is wrong; per-instance spread; gap between the teachers' mean
π), the level it settles at and the step it reaches 90% of that level
(`kdjax.methods.rl_kd.policy_record.settling_step`). The teachers are read from
--teacher-store, by default the store experiments/rl_kd.py trains, so they are
trained once for both. Writes experiments/results/rl_kd_policy_steps{,_quick}
.md and .json and a plot of the separation curves.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time

import numpy as np

from common import (RESULTS, apply_overrides, guarded, load_config, load_saved_record,
                    prepare_runtime, run_method, write_markdown, write_record)

MEASURES = ('right_minus_wrong', 'spread', 'teacher_gap')
QUICK = {'data.max_train_examples': 400, 'data.max_eval_examples': 200, 'data.max_length': 32,
         'teacher.batch_size': 16, 'teacher.member_epochs': (2.0, 2.0, 2.0),
         'distill.batch_size': 16, 'distill.epochs': 4.0, 'rl.heldout_batch_size': 16,
         'eval_every': 1000, 'checkpoint_every': 1000, 'log_every': 5}


def settings(learning_rates: list[float], default_lr: float) -> list[tuple[str, float]]:
  """(baseline, policy learning rate) of every measured run."""
  return ([('before_step', lr) for lr in learning_rates]
          + [('moving_average', default_lr)])


def setting_key(baseline: str, lr: float) -> str:
  return f'{baseline}-lr{lr:g}'


def summarise(result: dict, steps: int) -> dict:
  """One run's pre-training record: its separation curves, the mean π over
  teachers at each point, the student's final metrics and the teachers'."""
  from kdjax.methods.rl_kd.policy_record import separation_curve
  points = [p for p in result['policy']['over_training'] if p['phase'] == 'policy_pretrain']
  curve = separation_curve(points)
  curve['mean_prob'] = [float(np.mean(p['prob'])) for p in points]
  return {'curve': curve, 'points': points, 'steps': steps,
          'student': result['student']['metrics'], 'teachers': result['teachers'],
          'majority': result['majority']}


def separation(summary: dict) -> dict:
  """Per measure: start, plateau and settling step (`settling_step`); and when
  π collapsed to all or none of the teachers (`collapse_step`). Recomputed from
  the curves, so --rewrite follows any change of those rules."""
  from kdjax.methods.rl_kd.policy_record import collapse_step, settling_step
  curve = summary['curve']
  out = {m: settling_step(curve['step'], curve[m]) for m in MEASURES if m in curve}
  out['collapse_step'] = collapse_step(summary['points'])
  out['mean_prob_end'] = curve['mean_prob'][-1] if curve['mean_prob'] else float('nan')
  return out


def recommend(by_setting: dict[str, dict]) -> dict:
  """The setting whose right-minus-wrong separation settles highest (the
  earliest among those within 0.02 of it), and the pre-training steps it needs:
  its settling step rounded up to a multiple of 50. When none separates: the
  largest learning rate whose π never collapsed to all or none of the teachers
  (the fastest policy that still explores), for all the measured steps."""
  seps = {k: separation(v) for k, v in by_setting.items()}
  scored = {k: v['right_minus_wrong'] for k, v in seps.items()
            if v.get('right_minus_wrong') and v['right_minus_wrong']['step'] is not None}
  if scored:
    top = max(v['plateau'] for v in scored.values())
    near = {k: v for k, v in scored.items() if v['plateau'] >= top - 0.02}
    best = min(near, key=lambda k: near[k]['step'])
    return {'setting': best, 'pretrain_steps': int(math.ceil(near[best]['step'] / 50) * 50),
            'why': 'highest right-minus-wrong plateau (within 0.02), earliest to settle'}
  exploring = [k for k, v in seps.items() if v['collapse_step'] is None]
  if not exploring:
    return {'setting': None, 'pretrain_steps': None,
            'why': 'no setting separates right from wrong teachers, and every one collapses '
                   'to all or none of them'}
  best = max(exploring, key=lambda k: by_setting[k]['lr'])
  return {'setting': best, 'pretrain_steps': by_setting[best]['steps'],
          'why': 'no setting separates right from wrong teachers within the measured steps; '
                 'this is the largest learning rate whose policy never collapsed to all or '
                 'none of the teachers'}


def draw(record: dict, name: str) -> str:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  from rl_kd import smoothed
  tasks = list(record['table'])
  fig, axes = plt.subplots(len(tasks), len(MEASURES), figsize=(4.2 * len(MEASURES),
                                                               3.0 * len(tasks)), squeeze=False)
  for row, task in enumerate(tasks):
    for col, measure in enumerate(MEASURES):
      ax = axes[row][col]
      for i, (key, s) in enumerate(record['table'][task]['settings'].items()):
        if measure in s['curve']:
          ax.plot(s['curve']['step'], smoothed(s['curve'][measure]), label=key, color=f'C{i}')
          settled = separation(s).get(measure, {}).get('step')
          if settled is not None:
            ax.axvline(settled, color=f'C{i}', linestyle=':', linewidth=1)
      ax.set_title(f'{task}: {measure}', fontsize=9)
      ax.set_xlabel('policy pre-training step')
  axes[0][0].legend(fontsize=7)
  path = os.path.join(RESULTS, f'{name}.png')
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
  return path


def write_results(name: str, record: dict) -> None:
  write_record(name, record)
  c, hw = record['config'], record['hardware']
  lines = [f"# RL-KD: policy steps until the teachers separate ({record['variant']})", '',
           f"Command: `{record['command']}`  ",
           f"Seed {c['seed']}; wall clock {record['wall_minutes']:.1f} min; hardware: "
           f"{hw['cpu_count']} CPU cores, {hw['device_count']} {hw['platform']} device(s), "
           f"jax {hw['jax']}; date {record['date']}.  ",
           f"Reward {c['rl']['reward']}, {c['rl']['selection']} selection; policy "
           f"pre-training {record['steps']} steps with the student frozen after "
           f"{c['rl']['warmup_fraction']:g} of its {c['distill']['epochs']:g} epochs (equal "
           f"weights); student {c['student']['num_layers']} x {c['student']['hidden_size']} "
           f"({c['student']['init']}, {c['student']['layer_choice']}); training rows "
           f"{c['data']['max_train_examples']}, max length {c['data']['max_length']}, batch "
           f"{c['distill']['batch_size']}, a policy point logged every {c['log_every']} steps. "
           'Start and plateau: the mean of the first 5 and of the last fifth of the points; '
           'settles: the first step whose 5-point mean reaches 90% of the way from start to '
           'plateau (no growth: it rose by less than 0.02). All or none chosen: the first '
           'point at which every teacher\'s mean π is above 0.95 (or every one below 0.05), '
           'i.e. the policy became equal weights (or no KD).', '']
  for task, t in record['table'].items():
    first = next(iter(t['settings'].values()))
    m = next(iter(first['student']))
    lines += [f'## {task}', '',
              f"Teachers ({m}): " + ', '.join(f"{x['name']} {x['metrics'][m]:.4f}"
                                              for x in first['teachers'])
              + f"; majority class {first['majority'][m]:.4f}.", '',
              '| setting | ' + ' | '.join(MEASURES)
              + f' | mean π at the end | all or none chosen from step | student {m} |',
              '|---|' + '---|' * (len(MEASURES) + 3)]
    for key, s in t['settings'].items():
      sep, cells = separation(s), []
      for measure in MEASURES:
        v = sep.get(measure)
        cells.append('' if v is None else f"{v['start']:.3f} -> {v['plateau']:.3f}"
                     + (f" @ {v['step']}" if v['step'] is not None else ' (no growth)'))
      collapse = sep['collapse_step']
      lines.append(f'| {key} | ' + ' | '.join(cells) + f" | {sep['mean_prob_end']:.3f} | "
                   + ('never' if collapse is None else str(collapse))
                   + f" | {s['student'][m]:.4f} |")
    r = recommend(t['settings'])
    lines += ['', f"Recommendation: {r['setting']} with rl.pretrain_steps = "
              f"{r['pretrain_steps']} ({r['why']})." if r['setting'] else
              f"Recommendation: none ({r['why']}).", '']
  lines += [f'![separation curves]({name}.png)', '']
  write_markdown(name, lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/rl_kd_policy_steps')
  parser.add_argument('--teacher-store', default='runs/rl_kd_exp/teachers',
                      help='teacher store shared with experiments/rl_kd.py')
  parser.add_argument('--tasks', default=None, help='default sst2,mrpc (--quick: sst2)')
  parser.add_argument('--steps', type=int, default=None,
                      help='policy pre-training steps (default 800, --quick 300)')
  parser.add_argument('--learning-rates', default='0.003,0.01,0.03')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--rewrite', action='store_true')
  args, overrides = parser.parse_known_args()
  name = 'rl_kd_policy_steps' + ('_quick' if args.quick else '')
  if args.rewrite:
    record = load_saved_record(name, '--rewrite')
    for t in record['table'].values():
      t['recommendation'] = recommend(t['settings'])
    draw(record, name)
    write_results(name, record)
    return
  prepare_runtime()
  from kdjax.summary import hardware

  started = time.time()
  config = load_config('rl_kd')
  if args.quick:
    apply_overrides(config, [f'--config.{k}={v!r}' for k, v in QUICK.items()])
  apply_overrides(config, overrides)
  tasks = (args.tasks or ('sst2' if args.quick else 'sst2,mrpc')).split(',')
  steps = args.steps or (300 if args.quick else 800)
  if not config.data.glue_dir:
    sys.exit('kdjax: error: set KDJAX_GLUE_DIR or --config.data.glue_dir')
  store = args.teacher_store if not args.quick else os.path.join(args.workdir, 'teachers')
  config.teacher.store_dir = os.path.abspath(store)
  config.rl.pretrain_steps = steps
  table = {}
  for task in tasks:
    by_setting = {}
    for baseline, lr in settings([float(x) for x in args.learning_rates.split(',')],
                                 config.rl.learning_rate):
      c = config.copy_and_resolve_references()
      c.data.task, c.distill.weighting = task, 'policy'
      c.rl.baseline, c.rl.learning_rate = baseline, lr
      key = setting_key(baseline, lr)
      result = run_method(c, os.path.join(args.workdir, task, key))  # resumes when done
      by_setting[key] = {**summarise(result, steps), 'baseline': baseline, 'lr': lr}
    table[task] = {'settings': by_setting, 'recommendation': recommend(by_setting)}
  record = {'name': name, 'variant': 'quick' if args.quick else 'full',
            'command': 'python experiments/rl_kd_policy_steps.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(), 'steps': steps, 'tasks': tasks,
            'config': config.to_dict(), 'hardware': hardware(),
            'wall_minutes': (time.time() - started) / 60, 'table': table}
  draw(record, name)
  write_results(name, record)


if __name__ == '__main__':
  guarded(main)
