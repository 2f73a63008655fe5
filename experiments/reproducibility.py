"""What a mixed-vocabulary run is reproduced from: the same config run under two
PYTHONHASHSEED values and on one core instead of all, and the student's
initial weights drawn eagerly against as one jitted program (commit 53284f4
switched from the first to the second).

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/reproducibility.py \
      [--workdir runs/reproducibility]

The runs are configs/mixed_vocab.py:quick with a tiny random teacher and a tiny
student (every stage, a few steps), launched through the CLI as separate
processes. Writes experiments/results/reproducibility.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from common import HERE, REPO, RESULTS, guarded

# configs/mixed_vocab.py:quick, smaller still (as tests/test_mixed_vocab.py runs it).
OVERRIDES = ('--config.data.max_train_examples=64', '--config.data.max_eval_examples=32',
             '--config.data.buckets=(16, 32)', '--config.student.hidden_size=16',
             '--config.student.intermediate_size=32', '--config.student.num_layers=2',
             '--config.stage1.steps=3', '--config.stage2.steps=3', '--config.eval_every=100',
             '--config.checkpoint_every=100', '--config.speed_repeats=1')
# name: (PYTHONHASHSEED, one core only)
RUNS = {'hash1': ('1', False), 'hash2': ('2', False), 'hash1_one_core': ('1', True)}
PAIRS = (('hash1', 'hash2'), ('hash1', 'hash1_one_core'))


def tiny_teacher(path: str) -> str:
  """A small random BERT with the real MiniLM tokenizer, saved as a HF checkpoint."""
  import jax
  from kdjax.models.bert import BertConfig, BertEncoder, init_params
  from kdjax.models.hf import export_hf_checkpoint
  from kdjax.teachers import bundled_teacher_dir
  config = BertConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, max_position_embeddings=64)
  params = init_params(BertEncoder(config), jax.random.PRNGKey(0))
  return export_hf_checkpoint(path, config, jax.device_get(params), None, None,
                              bundled_teacher_dir())


def launch(workdir: str, teacher: str, glue_dir: str, hash_seed: str, one_core: bool
           ) -> subprocess.Popen:
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu', 'PYTHONHASHSEED': hash_seed,
         'KDJAX_COMPILATION_CACHE': 'off'}
  first_core = min(os.sched_getaffinity(0))
  return subprocess.Popen(
      [sys.executable, '-m', 'kdjax.main', '--config', 'configs/mixed_vocab.py:quick',
       f'--config.data.glue_dir={glue_dir}', f'--config.teacher.checkpoint={teacher}',
       *OVERRIDES, '--workdir', workdir],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      preexec_fn=(lambda: os.sched_setaffinity(0, {first_core})) if one_core else None)


def outcome(workdir: str) -> dict:
  """What a run produced: vocabulary, exported weights, metrics, its log."""
  from safetensors.numpy import load_file
  vocab_dir = next(d for d in os.listdir(workdir) if d.startswith('student_vocab-'))
  with open(os.path.join(workdir, vocab_dir, 'vocab.txt'), encoding='utf-8') as f:
    vocab = f.read()
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    log = [{k: v for k, v in json.loads(line).items() if k != 'time'} for line in f]
  weights = {role: load_file(os.path.join(workdir, 'export', role, 'model.safetensors'))
             for role in ('teacher', 'student')}
  return {'vocab': vocab, 'weights': weights, 'summary': summary, 'log': log}


def compare(a: dict, b: dict) -> dict:
  metrics = lambda o: (o['summary']['student']['metrics'], o['summary']['teacher']['metrics'])
  result = {'same_vocabulary': a['vocab'] == b['vocab'],
            'same_metrics': metrics(a) == metrics(b),
            'cpus_usable': [a['summary']['hardware']['cpus_usable'],
                            b['summary']['hardware']['cpus_usable']]}
  for role in ('teacher', 'student'):
    wa, wb = a['weights'][role], b['weights'][role]
    differ = [k for k in wa if not np.array_equal(wa[k], wb[k])]
    result[f'{role}_tensors_differing'] = f'{len(differ)} of {len(wa)}'
    result[f'{role}_max_abs_difference'] = max(
        (float(np.max(np.abs(wa[k].astype(np.float64) - wb[k]))) for k in differ), default=0.0)
  first = next((x for x, y in zip(a['log'], b['log']) if x != y), None)
  result['first_differing_log_line'] = (f"{first['phase']} step {first['step']}"
                                        if first else 'none')
  return result


def initialisation_bits() -> dict:
  """Initial student weights from one key, eagerly against as one jitted program."""
  import jax
  import jax.numpy as jnp
  from kdjax.models.bert import BertConfig
  from kdjax.models.heads import BertClassifier
  out = {}
  for label, layers, ff in (('4 x 128, feed-forward 512 (the earlier default)', 4, 512),
                            ('6 x 128, feed-forward 384 (the default)', 6, 384)):
    model = BertClassifier(BertConfig(vocab_size=5000, hidden_size=128, num_layers=layers,
                                      num_heads=2, intermediate_size=ff,
                                      max_position_embeddings=128), 2)
    ids = jnp.zeros((1, 8), jnp.int32)
    args = (jax.random.PRNGKey(0), ids, ids, jnp.ones_like(ids))
    eager, jitted = model.init(*args), jax.jit(model.init)(*args)
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted))]
    out[label] = {'tensors_differing': f'{sum(d > 0 for d in diffs)} of {len(diffs)}',
                  'max_abs_difference': max(diffs)}
  return out


def write_results(record: dict) -> None:
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, 'reproducibility.json'), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  code, hw = record['code_version'], record['hardware']
  lines = ['# What a mixed-vocabulary run is reproduced from', '',
           f"Command: `{record['command']}`  ",
           f"Code: {code['commit']}{' (with local changes)' if code['dirty'] else ''}; "
           f"hardware: {hw['cpu_count']} CPU cores ({hw['cpus_usable']} usable), jax "
           f"{hw['jax']}; date {record['date']}.  ",
           'Runs: `configs/mixed_vocab.py:quick` with a tiny random teacher (2 x 32) and a '
           f"tiny student, through the CLI, one process each; overrides {' '.join(OVERRIDES)}. "
           "Seed 0 throughout; 'one core' pins the process to one core (its affinity), "
           'which sizes XLA\'s CPU thread pool.', '',
           '| runs compared | same vocabulary | teacher tensors differing (max abs) | '
           'student tensors differing (max abs) | same metrics | first differing log line |',
           '|---|---|---|---|---|---|']
  for pair, c in record['comparisons'].items():
    lines.append(f"| {pair} | {c['same_vocabulary']} | {c['teacher_tensors_differing']} "
                 f"({c['teacher_max_abs_difference']:.2g}) | {c['student_tensors_differing']} "
                 f"({c['student_max_abs_difference']:.2g}) | {c['same_metrics']} | "
                 f"{c['first_differing_log_line']} |")
  lines += ['', 'Initial weights of a student from `jax.random.PRNGKey(0)`, eager '
            '`model.init` against `jax.jit(model.init)`:', '',
            '| student | tensors differing | max abs difference |', '|---|---|---|']
  for label, d in record['initialisation'].items():
    lines.append(f"| {label} | {d['tensors_differing']} | {d['max_abs_difference']:.2g} |")
  with open(os.path.join(RESULTS, 'reproducibility.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/reproducibility')
  parser.add_argument('--glue_dir', default=os.environ.get('KDJAX_GLUE_DIR', ''))
  args = parser.parse_args()
  if not args.glue_dir:
    sys.exit('kdjax: error: set KDJAX_GLUE_DIR or --glue_dir')
  from kdjax.summary import code_version, hardware
  version = code_version()  # of the code that runs, before anything can change it
  root = os.path.abspath(args.workdir)
  shutil.rmtree(root, ignore_errors=True)  # fresh runs: nothing resumed
  teacher = os.path.join(root, 'teacher')
  # Built in a child process: this one starts no JAX threads before it forks
  # the runs (a fork of a multithreaded process can deadlock).
  subprocess.run([sys.executable, '-c', f'from reproducibility import tiny_teacher; '
                  f'tiny_teacher({teacher!r})'], cwd=HERE, check=True,
                 env={**os.environ, 'PYTHONPATH': os.pathsep.join([REPO, HERE]),
                      'JAX_PLATFORMS': 'cpu'})
  glue_dir = os.path.abspath(args.glue_dir)
  procs = {name: launch(os.path.join(root, name), teacher, glue_dir, *how)
           for name, how in RUNS.items()}
  for name, proc in procs.items():
    _, err = proc.communicate()
    if proc.returncode:
      sys.exit(f'kdjax: error: run {name} failed: {err.strip().splitlines()[-1]}')
  outcomes = {name: outcome(os.path.join(root, name)) for name in RUNS}
  record = {'command': 'python experiments/reproducibility.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(), 'code_version': version,
            'hardware': hardware(), 'overrides': list(OVERRIDES),
            'comparisons': {f'{a} vs {b}': compare(outcomes[a], outcomes[b]) for a, b in PAIRS},
            'vocabulary_sha256': {n: hashlib.sha256(o['vocab'].encode()).hexdigest()
                                  for n, o in outcomes.items()},
            'initialisation': initialisation_bits()}
  write_results(record)


if __name__ == '__main__':
  guarded(main)
