"""A run on a training file and a test file, and its exported student in use:
the test file is evaluated only at the end, a second run on the locked workdir
is refused, and `kdjax.predict` / `kdjax.evaluate` reproduce the run's outputs."""
import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

from kdjax import loop, workdir_lock
from kdjax.inference import probabilities
from kdjax.methods.kd import pipeline as kd
from kdjax.metrics import compute_metrics
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_e2e import tiny_config

NOTICE = 'PyTorch was not found'


def reviews(n: int, offset: int) -> str:
  words = {'pos': 'good great fine', 'neg': 'bad awful poor'}
  return 'text\tlabel\n' + ''.join(
      f"{words[l]} film number {offset + i}\t{l}\n"
      for i, l in enumerate(['pos', 'neg'] * (n // 2)))


@pytest.fixture(scope='module')
def file_run(tmp_path_factory, tiny_teacher_dir):
  """A tiny run on train.tsv (160 rows) + test.tsv (24 rows), holding the
  workdir lock as the CLI does; at its first evaluation a second run is started
  on the same workdir. Records every evaluation's labels and outputs."""
  root = tmp_path_factory.mktemp('file_run')
  (root / 'train.tsv').write_text(reviews(160, 0))
  (root / 'test.tsv').write_text(reviews(24, 1000))
  config = tiny_config(tiny_teacher_dir)
  config.data.source, config.data.task = 'file', 'reviews'
  config.data.train_file, config.data.test_file = str(root / 'train.tsv'), str(root / 'test.tsv')
  workdir = str(root / 'run')
  evaluations, second = [], {}

  original = loop.predict_all

  def predict_all(predict, params, arrays, *args, **kwargs):
    outputs = original(predict, params, arrays, *args, **kwargs)
    evaluations.append((arrays['input_ids'], outputs))
    if not second:
      second['proc'] = run_cli('--workdir', workdir)
    return outputs

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, 'predict_all', predict_all)
    with workdir_lock.hold(workdir):
      summary = kd.run(config, workdir)
  return types.SimpleNamespace(root=root, workdir=workdir, summary=summary,
                               evaluations=evaluations, second=second['proc'])


def test_the_test_file_is_evaluated_only_at_the_end(file_run):
  sizes = [len(inputs) for inputs, _ in file_run.evaluations]
  # Dev (10% of each class of train.tsv) during both phases, the teacher's
  # outputs on the 144 training rows; the test file twice at the end: the
  # teacher's and the student's final figures.
  assert sizes[-2:] == [24, 24] and set(sizes[:-2]) == {16, 144}, sizes
  s = json.load(open(os.path.join(file_run.workdir, 'summary.json')))
  assert (s['dev_split'], s['eval_split']) == ('dev', 'test')
  assert s['data_sizes'] == {'train': 144, 'dev': 16, 'test': 24}
  assert s['split_origins']['test'] == str(file_run.root / 'test.tsv')
  assert 'train.tsv, stratified split seed 0: 10%' in s['split_origins']['dev']
  lines = [json.loads(l) for l in open(os.path.join(file_run.workdir, 'metrics.jsonl'))]
  for line in lines:
    tested = any(k.startswith('test_') for k in line)
    assert tested == line['phase'].endswith('_final'), line


def test_a_second_run_on_a_locked_workdir_is_refused(file_run):
  proc = file_run.second
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert_one_line_error(proc, f'{file_run.workdir} is in use by pid {os.getpid()} on '
                        f'{socket.gethostname()} (started ',
                        'wait for it or use another --workdir')
  # The first run went on undisturbed: every step logged once, then released the lock.
  lines = [json.loads(l) for l in open(os.path.join(file_run.workdir, 'metrics.jsonl'))]
  keys = [(l['phase'], l['step'], tuple(sorted(l))) for l in lines]
  assert len(keys) == len(set(keys))
  steps = lambda phase: [l['step'] for l in lines if l['phase'] == phase and 'loss' in l]
  # 144 training rows: 9 batches of 16 for 1 teacher epoch; ceil(144 / 32) = 5
  # student batches (length buckets: every row once per epoch) for 2 epochs.
  assert steps('teacher') == list(range(1, 10)) and steps('student') == list(range(1, 11))
  assert not os.path.exists(os.path.join(file_run.workdir, '.lock'))


def run_module(module, *args):
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  env.pop('TRANSFORMERS_VERBOSITY', None)  # the notice must be absent by kdjax's doing
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_predict_gives_the_runs_own_probabilities(file_run):
  student = os.path.join(file_run.workdir, 'export', 'student')
  proc = run_module('kdjax.predict', student, '--input', str(file_run.root / 'test.tsv'),
                    '--max-length', '32', '--batch-size', '16')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert NOTICE not in proc.stderr and 'predict' in proc.stderr  # the progress bar
  rows = [json.loads(l) for l in proc.stdout.splitlines()]
  _, logits = file_run.evaluations[-1]  # the student's final evaluation, on test.tsv
  expected = probabilities(logits)
  assert len(rows) == 24
  for row, p in zip(rows, expected):
    assert list(row['probs']) == ['neg', 'pos']
    np.testing.assert_allclose([row['probs']['neg'], row['probs']['pos']], p, atol=1e-5)
    assert row['label'] == ['neg', 'pos'][int(p.argmax())]


def test_evaluate_gives_the_runs_own_metrics(file_run, tmp_path):
  student = os.path.join(file_run.workdir, 'export', 'student')
  out = tmp_path / 'metrics.json'
  proc = run_module('kdjax.evaluate', student, '--data', str(file_run.root / 'test.tsv'),
                    '--max-length', '32', '--mcc', '--output', str(out))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert NOTICE not in proc.stderr
  metrics = json.loads(out.read_text())['metrics']
  assert metrics.keys() == {'accuracy', 'f1', 'mcc'}
  _, logits = file_run.evaluations[-1]
  labels = np.array([1, 0] * 12)  # test.tsv: pos, neg, ... (label ids in sorted order)
  ours = compute_metrics(('accuracy', 'f1', 'mcc'), logits, labels, False)
  printed = dict(line.split() for line in proc.stdout.splitlines())
  for name, value in metrics.items():
    assert value == pytest.approx(ours[name], abs=1e-9)
    assert printed[name] == f'{value:.4f}'
  for name, value in file_run.summary['student']['metrics'].items():
    assert metrics[name] == pytest.approx(value, abs=1e-9)


def test_predict_reads_stdin_and_headerless_files(file_run, tmp_path, monkeypatch, capsys):
  import io
  from kdjax import predict
  student = os.path.join(file_run.workdir, 'export', 'student')
  text = 'good great fine film number 1000\nbad awful poor film number 1001\n'
  monkeypatch.setattr(sys, 'stdin', io.StringIO(text))
  predict.main([student, '--input', '-', '--max-length', '32'])
  from_stdin = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  headerless = tmp_path / 'rows.tsv'
  headerless.write_text(''.join(l + '\tx\n' for l in text.splitlines()))
  predict.main([student, '--input', str(headerless), '--no-header', '--max-length', '32'])
  from_file = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  assert len(from_stdin) == 2 and from_file == from_stdin
  # Read as having a header (the default), its first row names no text column.
  with pytest.raises(SystemExit) as e:
    predict.main([student, '--input', str(headerless)])
  assert e.value.code == 2
  assert '--no-header --text-columns 0' in capsys.readouterr().err


@pytest.mark.parametrize('args,fragment', [
    (['/nonexistent/model', '--input', '-'], 'is not a directory'),
    (['/nonexistent/model'], 'the following arguments are required: --input'),
    (['/nonexistent/model', '--input', 'rows.parquet'], 'is missing'),
])
def test_predict_bad_input_is_one_line(args, fragment, capsys, monkeypatch):
  import io
  from kdjax import predict
  monkeypatch.setattr(sys, 'stdin', io.StringIO('a text\n'))
  with pytest.raises(SystemExit) as e:
    predict.main(args)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('kdjax: error:') and fragment in err[0], err


def test_a_regression_model_gives_scores(tmp_path, tiny_teacher_dir, minilm_dir, capsys):
  import jax
  from kdjax import evaluate, predict
  from kdjax.models.bert import init_params
  from kdjax.models.heads import BertClassifier
  from kdjax.models.hf import export_hf_checkpoint, load_hf_checkpoint
  ckpt = load_hf_checkpoint(tiny_teacher_dir)
  params = jax.device_get(init_params(BertClassifier(ckpt.config, 1), jax.random.PRNGKey(0)))
  model_dir = export_hf_checkpoint(str(tmp_path / 'scorer'), ckpt.config, params['bert'],
                                   params['classifier'], None, minilm_dir)
  data = tmp_path / 'pairs.jsonl'
  data.write_text(''.join(json.dumps({'sentence1': f'a cat sat {i}', 'sentence2': 'a dog',
                                      'score': i / 2}) + '\n' for i in range(6)))
  predict.main([model_dir, '--input', str(data), '--max-length', '16'])
  rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  assert len(rows) == 6 and all(set(r) == {'score'} for r in rows)
  evaluate.main([model_dir, '--data', str(data), '--label-column', 'score', '--max-length', '16',
                 '--output', str(tmp_path / 'm.json')])
  metrics = json.loads((tmp_path / 'm.json').read_text())['metrics']
  expected = compute_metrics(('pearson', 'spearman'), np.array([[r['score']] for r in rows]),
                             np.arange(6) / 2, True)
  assert metrics == pytest.approx(expected, abs=1e-6)
