"""Crash safety through the real CLI: SIGKILL at random moments, SIGTERM and
Ctrl-C, half-written checkpoints, a full disk. Every interrupted run, started
again with the same command, ends with exactly the metrics of a run never
interrupted (CPU, float32, same seed)."""
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from kdjax import checkpoint
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error

# ~60 steps in three phases with a checkpoint every 2 steps, so a random kill
# lands inside a step, a checkpoint write or the teacher-output pass alike.
OVERRIDES = ('--config.data.max_length=32', '--config.data.max_train_examples=320',
             '--config.data.max_eval_examples=32', '--config.teacher.epochs=1',
             '--config.distill.epochs=2', '--config.student.hidden_size=16',
             '--config.student.num_heads=2', '--config.student.intermediate_size=32',
             '--config.student.num_layers=1', '--config.checkpoint_every=2',
             '--config.eval_every=4', '--config.log_every=1', '--config.speed_repeats=1')


def command(teacher_dir, workdir, *more_overrides):
  return [sys.executable, '-m', 'kdjax.main', '--config', 'kdjax/defaults.py:quick',
          f'--config.teacher.checkpoint={teacher_dir}', *OVERRIDES, *more_overrides,
          '--workdir', str(workdir)]


def start(teacher_dir, workdir, **kwargs):
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  return subprocess.Popen(command(teacher_dir, workdir), cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def finish(proc, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def results(workdir):
  """What must not change under interruption: every metric (not timings)."""
  summary = json.loads((workdir / 'summary.json').read_text())
  return {role: summary[role]['metrics'] for role in ('teacher', 'student')}


@pytest.fixture(scope='module')
def reference(tmp_path_factory, tiny_teacher_dir):
  """An uninterrupted run: its metrics, its wall time and its start-up time."""
  workdir = tmp_path_factory.mktemp('crash') / 'uninterrupted'
  began = time.time()
  code, _, err = finish(start(tiny_teacher_dir, workdir))
  assert code == 0, err[-3000:]
  first_log = json.loads(open(workdir / 'metrics.jsonl').readline())['time']
  return {'metrics': results(workdir), 'wall': time.time() - began,
          'startup': first_log - began}


def wait_for_phase(workdir, phase, proc, timeout=240):
  """Blocks until `phase` has logged a step (the run is then inside that phase)."""
  deadline = time.time() + timeout
  log = workdir / 'metrics.jsonl'
  while time.time() < deadline:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    if log.exists() and any(json.loads(l).get('phase') == phase
                            for l in log.read_text().splitlines() if l.strip()):
      return
    time.sleep(0.05)
  raise AssertionError(f'phase {phase} never started')


def test_sigkill_at_three_random_moments_then_resume(tmp_path, tiny_teacher_dir, reference):
  seed = int(os.environ.get('KDJAX_KILL_SEED', random.randrange(10**6)))
  rng = random.Random(seed)
  workdir = tmp_path / 'killed'
  # Each kill lands at most a third of the way through the remaining work, so
  # three kills all happen before the run could finish.
  work = reference['wall'] - reference['startup']
  moments = [rng.uniform(0.7 * reference['startup'], reference['startup'] + work / 3)
             for _ in range(3)]
  for moment in moments:
    proc = start(tiny_teacher_dir, workdir)
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    code, _, err = finish(proc)
    assert code == -signal.SIGKILL, (f'seed {seed}: the run ended ({code}) before the '
                                     f'kill at {moment:.1f}s: {err[-2000:]}')
  code, _, err = finish(start(tiny_teacher_dir, workdir))
  assert code == 0, f'seed {seed}: {err[-3000:]}'
  assert results(workdir) == reference['metrics'], f'seed {seed}, kills at {moments}'
  # metrics.jsonl holds each logged step once, however often it was redone.
  lines = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  steps = [(l['phase'], l['step']) for l in lines if 'loss' in l]
  assert len(steps) == len(set(steps)), f'seed {seed}'


@pytest.mark.parametrize('sig,phase', [(signal.SIGTERM, 'student'), (signal.SIGINT, 'teacher')])
def test_sigterm_and_ctrl_c_save_then_exit(tmp_path, tiny_teacher_dir, reference, sig, phase):
  workdir = tmp_path / 'stopped'
  proc = start(tiny_teacher_dir, workdir)
  wait_for_phase(workdir, phase, proc)
  proc.send_signal(sig)
  code, _, err = finish(proc)
  assert code == 128 + sig, err[-3000:]
  assert_one_line_error(subprocess.CompletedProcess([], code, '', err),
                        f'stopped by {signal.Signals(sig).name}', f'{phase} saved at step',
                        'rerun the same command')
  saved_at = int(err.split(f'{phase} saved at step ')[1].split()[0])
  assert str(saved_at) in os.listdir(workdir / 'checkpoints' / phase)
  code, _, err = finish(start(tiny_teacher_dir, workdir))
  assert code == 0, err[-3000:]
  assert results(workdir) == reference['metrics']


def test_half_written_checkpoint_is_never_loaded(tmp_path):
  import jax.numpy as jnp
  manager = checkpoint.open_manager(str(tmp_path / 'ckpt'))
  template = {'step': jnp.int32(0), 'w': jnp.zeros(3)}
  checkpoint.save(manager, 4, {'step': jnp.int32(4), 'w': jnp.ones(3)})
  manager.close()
  # What a kill during the save of step 6 leaves: orbax's temporary directory,
  # with part of the files (here: all of step 4's, then one cut in half).
  tmp = tmp_path / 'ckpt' / '6.orbax-checkpoint-tmp-1234'
  shutil.copytree(tmp_path / 'ckpt' / '4', tmp)
  biggest = max((os.path.join(r, f) for r, _, fs in os.walk(tmp) for f in fs),
                key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(os.path.getsize(biggest) // 2)
  manager = checkpoint.open_manager(str(tmp_path / 'ckpt'))
  restored = checkpoint.restore_latest(manager, template)
  assert int(restored['step']) == 4 and float(restored['w'].sum()) == 3.0


def test_full_disk_is_reported_with_the_checkpoint_kept(tmp_path, tiny_teacher_dir):
  workdir = tmp_path / 'full'
  proc = start(tiny_teacher_dir, workdir)
  # A 2 MiB cap on file size, set long before the first write (imports take
  # seconds). Python ignores SIGXFSZ, so the oversized checkpoint write fails
  # with EFBIG, as on a full disk.
  resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
  code, _, err = finish(proc)
  assert_one_line_error(subprocess.CompletedProcess([], code, '', err),
                        'cannot write the checkpoint of step 2', 'File too large',
                        'no earlier checkpoint exists', 'rerun the same command to resume')


def test_too_little_space_fails_before_the_phase(tmp_path, monkeypatch):
  import jax.numpy as jnp
  state = {'w': jnp.zeros((1024, 256))}  # 1 MiB
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(shutil, 'disk_usage',
                      lambda _: usage._replace(free=2 << 20))
  with pytest.raises(checkpoint.KdjaxError, match='2 MiB free but 3 checkpoints'):
    checkpoint.check_space(str(tmp_path / 'ckpt'), state, keep=2)
  checkpoint.check_space(str(tmp_path / 'ckpt'), state, keep=1)  # 2 MiB fits


def test_closed_loop_tracebacks_from_many_threads_are_dropped():
  import io
  import threading
  import traceback
  sink = io.StringIO()
  stream = checkpoint._DropClosedLoopTracebacks(sink)

  def print_closed_loop_traceback():
    try:
      raise RuntimeError('Event loop is closed')
    except RuntimeError as e:
      for line in traceback.format_exception(e):  # one write per line, as threads interleave
        stream.write(line)
        time.sleep(0.001)

  threads = [threading.Thread(target=print_closed_loop_traceback) for _ in range(8)]
  for thread in threads:
    thread.start()
  stream.write('kdjax: error: one line\n')
  for thread in threads:
    thread.join()
  try:
    raise ValueError('a real failure')
  except ValueError as e:
    stream.write(''.join(traceback.format_exception(e)))
  stream.flush()
  assert sink.getvalue().count('Traceback') == 1
  assert 'kdjax: error: one line\n' in sink.getvalue()
  assert 'ValueError: a real failure' in sink.getvalue()
  assert 'Event loop is closed' not in sink.getvalue()


def test_steps_logged_before_the_first_checkpoint_are_dropped_on_resume(tmp_path):
  # A kill after a step was logged but before the phase's first checkpoint
  # completed: the restarted phase begins at step 0 and logs those steps again.
  import types
  import jax.numpy as jnp
  from kdjax import loop
  from kdjax.observe import MetricsLog
  log = MetricsLog(str(tmp_path))
  log.write('teacher', 4, {'loss': 0.5})  # an earlier, finished phase stays
  log.write('student', 1, {'loss': 1.0})
  log.write('student', 2, {'loss': 0.9})
  phase = types.SimpleNamespace(name='student', total_steps=8,
                                checkpoint_dir=str(tmp_path / 'ckpt'))
  state = {'step': jnp.zeros((), jnp.int32), 'w': jnp.ones(3)}
  manager = checkpoint.open_manager(phase.checkpoint_dir)
  restored, start = loop._resume(phase, state, manager, log)
  manager.close()
  assert start is None and restored is state
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [(l['phase'], l['step']) for l in lines] == [('teacher', 4)]


def _relabel(checkpoint_dir, commit):
  """Rewrites a phase's journal as if another commit had trained its steps."""
  from kdjax import atomic, trained_by
  entries = trained_by.read(str(checkpoint_dir))
  assert entries, f'no journal beside {checkpoint_dir}'
  for entry in entries:
    entry['code_version'] = {'commit': commit, 'dirty': False}
  atomic.write_json(trained_by.journal_path(str(checkpoint_dir)), entries)


def test_a_run_resumed_under_other_code_records_every_version_that_trained_it(
    tmp_path, tiny_teacher_dir):
  """The code that trained a run, not the process that last wrote its summary:
  a phase stopped under one commit and finished under another names both, and
  a finished run started again returns its summary untouched."""
  from kdjax import trained_by
  workdir = tmp_path / 'two_versions'
  proc = start(tiny_teacher_dir, workdir)
  wait_for_phase(workdir, 'student', proc)
  proc.send_signal(signal.SIGTERM)
  code, _, err = finish(proc)
  assert code == 128 + signal.SIGTERM, err[-3000:]
  saved_at = int(err.split('student saved at step ')[1].split()[0])
  _relabel(workdir / 'checkpoints' / 'student', 'a' * 40)
  code, _, err = finish(start(tiny_teacher_dir, workdir))
  assert code == 0, err[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  now = summary['code_version']
  assert now['commit'] != 'a' * 40
  student = summary['trained_by']['student']
  assert [e['from_step'] for e in student] == [0, saved_at]
  assert [e['code_version']['commit'] for e in student] == ['a' * 40, now['commit']]
  assert trained_by.versions_of(summary)[0]['commit'] == 'a' * 40
  assert now in trained_by.versions_of(summary)

  # Finished: rerunning returns the summary as it is (no relabelling, no new log lines).
  summary_bytes = (workdir / 'summary.json').read_bytes()
  log_bytes = (workdir / 'metrics.jsonl').read_bytes()
  rerun = subprocess.run(command(tiny_teacher_dir, workdir), cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'})
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert (workdir / 'summary.json').read_bytes() == summary_bytes
  assert (workdir / 'metrics.jsonl').read_bytes() == log_bytes
  assert 'summary:' in rerun.stdout  # the table is printed from the saved summary
