"""End to end: an interrupted run resumes to the same result; the real :quick CLI run."""
import json
import os

import pytest

from kdjax import steps
from kdjax.defaults import get_config
from kdjax.methods.kd import pipeline as kd
from tests.conftest import export_accuracy
from tests.test_cli import run_cli


def tiny_config(teacher_dir):
  c = get_config('quick')
  c.teacher.checkpoint = teacher_dir
  c.data.max_length = 32
  c.data.max_train_examples = 160
  c.data.max_eval_examples = 32
  c.teacher.epochs = 1.0
  c.distill.epochs = 2.0
  c.student.hidden_size = 16
  c.student.num_heads = 2
  c.student.intermediate_size = 32
  c.student.num_layers = 1
  c.checkpoint_every = 2
  c.eval_every = 4
  c.speed_repeats = 1
  return c


class Interrupt(Exception):
  pass


def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, tiny_teacher_dir, monkeypatch):
  config = tiny_config(tiny_teacher_dir)
  reference = kd.run(config, str(tmp_path / 'uninterrupted'))

  # Interrupt the student phase after its 5th step (checkpoint at step 4).
  original = steps.jit_train_step
  calls = {'n': 0, 'jits': 0}

  def jit_then_interrupt(step_fn, mesh, **static):
    jitted = original(step_fn, mesh, **static)
    calls['jits'] += 1
    if calls['jits'] == 1:  # the first phase, the teacher's, runs untouched
      return jitted

    def step(state, batch, rng):
      calls['n'] += 1
      if calls['n'] == 6:
        raise Interrupt
      return jitted(state, batch, rng)
    step.lower = jitted.lower  # the student's step is compiled ahead
    return step

  monkeypatch.setattr(steps, 'jit_train_step', jit_then_interrupt)
  workdir = str(tmp_path / 'interrupted')
  with pytest.raises(Interrupt):
    kd.run(config, workdir)
  saved = sorted(os.listdir(os.path.join(workdir, 'checkpoints', 'student')))
  assert '4' in saved and '6' not in saved
  monkeypatch.setattr(steps, 'jit_train_step', original)
  resumed = kd.run(config, workdir)

  for role in ('teacher', 'student'):
    assert resumed[role]['metrics'] == reference[role]['metrics'], role
  # The resumed student went on from its step-4 checkpoint, not from scratch:
  # steps 1-4 were logged once (before the interruption), 5-10 after it.
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  student_steps = [l['step'] for l in lines if l['phase'] == 'student' and 'loss' in l]
  assert student_steps == list(range(1, 11))


def test_quick_cli_run_writes_everything(tmp_path):
  """The real all-MiniLM-L6-v2 on BBC News with `:quick`, through the CLI."""
  workdir = tmp_path / 'quick'
  proc = run_cli('--config', 'kdjax/defaults.py:quick', '--workdir', str(workdir))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'compression' in proc.stdout and 'teacher' in proc.stdout
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['teacher']['params'] == 22_713_216 + 384 * 5 + 5  # encoder + 5-way head
  assert summary['student']['params'] < summary['teacher']['params'] / 1.9
  for role in ('teacher', 'student'):  # 5 classes: the most predicted one has >= 1/5
    assert 1 / 5 <= summary[role]['top_class_share'] <= 1
  # The reported accuracy is the exported student's on the evaluation split.
  assert summary['student']['metrics']['accuracy'] == pytest.approx(
      export_accuracy(str(workdir / 'export' / 'student'), get_config('quick')), abs=1e-9)
  for role in ('teacher', 'student'):
    export = workdir / 'export' / role
    assert {'config.json', 'model.safetensors', 'vocab.txt'} <= set(os.listdir(export))
  assert os.listdir(workdir / 'tensorboard' / 'student')
  phases = {json.loads(l)['phase'] for l in open(workdir / 'metrics.jsonl')}
  assert {'teacher', 'student', 'teacher_final', 'student_final'} <= phases
  # Where the run's time went; the parts on the main thread fit in the run's time.
  parts = summary['part_seconds']
  assert {'teachers', 'student_start', 'teacher_outputs', 'student', 'teacher_report',
          'student_report'} <= set(parts) and min(parts.values()) >= 0
  assert sum(v for k, v in parts.items() if k != 'student_start') < summary['wall_seconds']
  # Rerunning the finished command returns its summary at once and trains nothing more.
  again = run_cli('--config', 'kdjax/defaults.py:quick', '--workdir', str(workdir))
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads((workdir / 'summary.json').read_text())['student']['metrics'] == \
      summary['student']['metrics']
