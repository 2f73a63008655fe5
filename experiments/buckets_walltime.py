"""Wall time of one GLUE distillation with and without length buckets: the same
`configs/glue_distill.py` job through the CLI, in fresh processes, alternating
the two settings round by round (the machine's load drifts).

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/buckets_walltime.py \
      [--task sst2] [--rounds 1] [--config.KEY=VALUE ...]
  ... experiments/buckets_walltime.py --rewrite   # the table again from the saved JSON

Writes experiments/results/buckets_walltime.{md,json}: per setting the wall
time of each round, the phases' times from metrics.jsonl and the dev metrics
of teacher and student. The compilation cache is off, so each run pays its
compilations (one program per bucket length and step function).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

from common import REPO, RESULTS, load_config, majority_baseline

SETTINGS = {'buckets': [], 'max_length': ['--config.data.buckets=()']}


def run_once(task: str, extra: list[str], workdir: str) -> dict:
  env = {**os.environ, 'KDJAX_COMPILATION_CACHE': 'off'}
  command = [sys.executable, '-m', 'kdjax.main', '--config', 'configs/glue_distill.py',
             '--workdir', workdir, f'--config.data.task={task}', *extra]
  start = time.time()
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
  wall = time.time() - start
  if proc.returncode:
    sys.exit(f'kdjax: error: {" ".join(command)} failed: {proc.stderr.strip()[-500:]}')
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  return {'wall_seconds': wall, 'teacher': summary['teacher']['metrics'],
          'student': summary['student']['metrics'], 'data_sizes': summary['data_sizes'],
          'hardware': summary['hardware']}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--task', default='sst2')
  parser.add_argument('--rounds', type=int, default=1)
  parser.add_argument('--rewrite', action='store_true')
  args, overrides = parser.parse_known_args()
  path = os.path.join(RESULTS, 'buckets_walltime.json')
  if args.rewrite:
    with open(path) as f:
      record = json.load(f)
  else:
    record = measure(args.task, args.rounds, overrides)
  config = load_config('glue_distill')
  config.data.task = record['task']
  record['majority_baseline'] = majority_baseline(config.data)
  with open(path, 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  write_table(record)


def measure(task: str, rounds: int, overrides: list[str]) -> dict:
  runs = {name: [] for name in SETTINGS}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(rounds):
      for name, extra in (SETTINGS.items() if r % 2 == 0 else reversed(SETTINGS.items())):
        runs[name].append(run_once(task, extra + overrides, os.path.join(tmp, f'{name}-{r}')))
  command = 'python experiments/buckets_walltime.py ' + ' '.join(sys.argv[1:])
  best = {name: min(r['wall_seconds'] for r in rs) for name, rs in runs.items()}
  return {'command': command.strip(), 'date': datetime.date.today().isoformat(),
          'task': task, 'overrides': overrides, 'runs': runs,
          'speedup': best['max_length'] / best['buckets']}


def write_table(record: dict) -> None:
  runs, task, overrides = record['runs'], record['task'], record['overrides']
  hw = runs['buckets'][0]['hardware']
  baseline = record['majority_baseline']
  lines = [f'# Length buckets: wall time of a {task} distillation', '',
           f"Command: `{record['command']}` ({record['date']}); `configs/glue_distill.py` "
           f"with `--config.data.task={task}` {' '.join(overrides)}; data "
           f"{runs['buckets'][0]['data_sizes']}; {hw['cpu_count']} CPU cores, jax {hw['jax']}; "
           'compilation cache off.', '',
           '| setting | wall time per round (s) | teacher dev | student dev |', '|---|---|---|---|']
  for name, rs in runs.items():
    metric = next(iter(rs[0]['student']))
    label = 'data.buckets (default)' if name == 'buckets' else 'data.buckets=()'
    walls = ', '.join(f"{r['wall_seconds']:.0f}" for r in rs)
    lines.append(f"| {label} | {walls} | {rs[0]['teacher'][metric]:.4f} | "
                 f"{rs[0]['student'][metric]:.4f} |")
  lines += [f"| majority class ({baseline['class']}) | | {baseline['accuracy']:.4f} | "
            f"{baseline['accuracy']:.4f} |", '',
            f"Fastest round: {record['speedup']:.2f}x faster with buckets. Accuracies are "
            "the first round's, one seed: a timing, not a comparison of the two settings' "
            'students (that needs >= 3 seeds).']
  with open(os.path.join(RESULTS, 'buckets_walltime.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
