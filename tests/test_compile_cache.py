"""The persistent compilation cache: a second run loads the train step instead of
compiling it, and computes exactly what a run without the cache computes."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO

ARGS = ('--config.data.max_length=32', '--config.data.max_train_examples=96',
        '--config.data.max_eval_examples=32', '--config.teacher.epochs=1',
        '--config.distill.epochs=1', '--config.student.hidden_size=16',
        '--config.student.num_heads=2', '--config.student.intermediate_size=32',
        '--config.student.num_layers=1', '--config.speed_repeats=1')


def run(workdir, cache, teacher_dir):
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu',
         'KDJAX_COMPILATION_CACHE': cache, 'JAX_LOG_COMPILES': '1',
         # Cache every program, however fast this machine compiles the tiny model.
         'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
  proc = subprocess.run([sys.executable, '-m', 'kdjax.main', '--config',
                         'kdjax/defaults.py:quick', f'--config.teacher.checkpoint={teacher_dir}',
                         *ARGS, '--workdir', str(workdir)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  return proc.stderr, {role: summary[role]['metrics'] for role in ('teacher', 'student')}


def test_second_run_loads_the_compiled_steps(tmp_path, tiny_teacher_dir):
  cache = tmp_path / 'xla'
  first_log, first = run(tmp_path / 'a', str(cache), tiny_teacher_dir)
  entries = [f for f in os.listdir(cache) if f.endswith('-cache')]
  assert entries, 'nothing was written to the cache'
  assert 'Persistent compilation cache hit' not in first_log
  second_log, second = run(tmp_path / 'b', str(cache), tiny_teacher_dir)
  assert "Persistent compilation cache hit for 'jit_classifier_train_step'" in second_log
  assert second == first
  _, uncached = run(tmp_path / 'c', 'off', tiny_teacher_dir)
  assert uncached == first
  assert sorted(f for f in os.listdir(cache) if f.endswith('-cache')) == sorted(entries)
