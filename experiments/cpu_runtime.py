"""XLA's two CPU runtimes on kdjax's own steps: the default 4 x 256 student's
train step and the all-MiniLM-L6-v2 teacher's forward pass, each timed in a
fresh process per runtime (the default "thunk" runtime, or the legacy one with
`XLA_FLAGS=--xla_cpu_use_thunk_runtime=false`), rounds alternating the two.
kdjax keeps XLA's default: the legacy runtime was slower on the student step.

  python experiments/cpu_runtime.py [--rounds 2] [--length 128]

Writes experiments/results/cpu_runtime.{md,json}: compile time and median step
time per runtime, and the ratio legacy / thunk measured in this invocation.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from common import RESULTS, default_student_step

RUNTIMES = {'thunk': '', 'legacy': '--xla_cpu_use_thunk_runtime=false'}  # XLA_FLAGS


def worker(length: int) -> dict:
  """Compile and step times of the student train step and the teacher forward."""
  import jax
  from kdjax import parallel
  from kdjax.models.bert import init_params
  from kdjax.models.hf import load_hf_checkpoint
  from kdjax.models.heads import BertClassifier
  from kdjax.steps import jit_predict
  from kdjax.teachers import bundled_teacher_dir
  step, state, batch = default_student_step(length)
  started = time.perf_counter()
  compiled = step.lower(state, batch, jax.random.PRNGKey(0)).compile()
  out = {'student_compile_s': time.perf_counter() - started}
  times = []
  for k in range(9):  # the first call warms up
    started = time.perf_counter()
    state, metrics = compiled(state, batch, jax.random.PRNGKey(k))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - started)
  out['student_step_s'] = float(np.median(times[1:]))
  teacher = load_hf_checkpoint(bundled_teacher_dir())
  mesh = parallel.make_mesh()
  t_model = BertClassifier(teacher.config, 5)
  t_params = parallel.replicate({'bert': teacher.encoder_params, 'classifier': jax.tree.map(
      np.asarray, init_params(t_model, jax.random.PRNGKey(0))['classifier'])}, mesh)
  predict = jit_predict(t_model, mesh)
  global_inputs = {k: batch[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')}
  times = []
  for _ in range(6):
    started = time.perf_counter()
    jax.block_until_ready(predict(t_params, global_inputs))
    times.append(time.perf_counter() - started)
  out['teacher_forward_s'] = float(np.median(times[1:]))
  out['xla_flags'] = os.environ.get('XLA_FLAGS', '')
  return out


def run_worker(runtime: str, length: int) -> dict:
  env = {**os.environ, 'XLA_FLAGS': RUNTIMES[runtime], 'KDJAX_COMPILATION_CACHE': 'off',
         'TRANSFORMERS_VERBOSITY': 'error'}
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker',
                         '--length', str(length)], capture_output=True, text=True, env=env)
  if proc.returncode:
    sys.exit(f'cpu_runtime: the {runtime} worker failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--length', type=int, default=128)
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(args.length)))
    return
  rounds = {r: [] for r in RUNTIMES}
  for _ in range(args.rounds):
    for runtime in RUNTIMES:
      rounds[runtime].append(run_worker(runtime, args.length))
  keys = ('student_compile_s', 'student_step_s', 'teacher_forward_s')
  best = {r: {k: min(x[k] for x in rs) for k in keys} for r, rs in rounds.items()}
  import jax
  record = {'command': 'python experiments/cpu_runtime.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(),
            'hardware': f'{platform.machine()}, {os.cpu_count()} CPU cores',
            'jax': jax.__version__, 'length': args.length, 'batch': 32,
            'rounds': rounds, 'best': best,
            'legacy_speedup': {k: best['thunk'][k] / best['legacy'][k] for k in keys}}
  lines = ['# XLA CPU runtimes on kdjax\'s steps', '',
           f"Command: `{record['command']}` ({record['date']}); {record['hardware']}; "
           f"jax {record['jax']}. Batch 32 x {args.length} tokens: the default 4 x 256 student's "
           'train step (KD loss, AdamW) and the all-MiniLM-L6-v2 teacher\'s forward pass, '
           'each runtime in a fresh process per round, rounds alternated; the fastest '
           'round of each (all rounds in the JSON).', '',
           '| measure | thunk (XLA\'s default, kdjax\'s) | legacy | thunk / legacy |',
           '|---|---|---|---|']
  for key, label in zip(keys, ('student step compile (s)', 'student step (ms)',
                               'teacher forward (ms)')):
    scale = 1 if key.endswith('compile_s') else 1e3
    lines.append(f"| {label} | {best['thunk'][key] * scale:.2f} | "
                 f"{best['legacy'][key] * scale:.2f} | {record['legacy_speedup'][key]:.2f}x |")
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, 'cpu_runtime.json'), 'w') as f:
    json.dump(record, f, indent=2)
  with open(os.path.join(RESULTS, 'cpu_runtime.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
