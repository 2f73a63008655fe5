"""The CLI's bad-input errors: one `kdjax: error:` line, non-zero exit, workdir intact."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_cli(*args, cwd=REPO):
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-m', 'kdjax.main', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, *fragments):
  assert proc.returncode != 0, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.startswith('kdjax: error:')]
  assert len(lines) == 1, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.fixture
def workdir(tmp_path):
  """A workdir holding a previous run's file, which no failing run may touch."""
  path = tmp_path / 'run'
  path.mkdir()
  (path / 'keep.txt').write_text('precious')
  return path


def untouched(workdir):
  return sorted(os.listdir(workdir)) == ['keep.txt'] and \
      (workdir / 'keep.txt').read_text() == 'precious'


def test_unknown_config_key(workdir):
  proc = run_cli('--workdir', str(workdir), '--config.distill.alpah=0.3')
  assert_one_line_error(proc, 'alpah')
  assert untouched(workdir)


def test_missing_data_file(workdir, tmp_path):
  proc = run_cli('--workdir', str(workdir), '--config.data.source=file',
                 f'--config.data.train_file={tmp_path}/nope.csv')
  assert_one_line_error(proc, 'nope.csv', 'missing')
  assert untouched(workdir)


def test_label_outside_range(workdir, tmp_path):
  data = tmp_path / 'd.csv'
  data.write_text('text,label\n' + 'a,0\nb,1\n' * 10 + 'c,7\n')
  proc = run_cli('--workdir', str(workdir), '--config.data.source=file',
                 f'--config.data.train_file={data}', "--config.data.label_names=('0','1')")
  assert_one_line_error(proc, "label '7'")
  assert untouched(workdir)


def test_missing_and_corrupt_teacher(workdir, tmp_path, tiny_teacher_dir):
  proc = run_cli('--workdir', str(workdir), f'--config.teacher.checkpoint={tmp_path}/none')
  assert_one_line_error(proc, 'does not exist')
  corrupt = tmp_path / 'corrupt'
  corrupt.mkdir()
  for name in os.listdir(tiny_teacher_dir):
    data = open(os.path.join(tiny_teacher_dir, name), 'rb').read()
    (corrupt / name).write_bytes(data[:1000] if name == 'model.safetensors' else data)
  proc = run_cli('--workdir', str(workdir), f'--config.teacher.checkpoint={corrupt}')
  assert_one_line_error(proc, 'cannot read weights')
  assert untouched(workdir)


def test_sequence_longer_than_positions(workdir):
  proc = run_cli('--workdir', str(workdir), '--config.data.max_length=1024')
  assert_one_line_error(proc, 'max_length 1024', '512 positions')
  assert untouched(workdir)


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  proc = run_cli('--workdir', str(blocker / 'sub'))
  assert_one_line_error(proc, 'not writable')
  assert blocker.read_text() == 'x'


def test_workdir_of_another_config(workdir):
  (workdir / 'config.json').write_text(json.dumps({'seed': 123}))
  proc = run_cli('--workdir', str(workdir))
  assert_one_line_error(proc, 'another config')
  assert (workdir / 'config.json').read_text() == json.dumps({'seed': 123})


def test_bad_config_argument_and_extra_args():
  assert_one_line_error(run_cli('--config', 'kdjax/defaults.py:huge'), 'huge')
  assert_one_line_error(run_cli('positional'), 'unexpected arguments')


def test_no_pytorch_notice(workdir, monkeypatch):
  """transformers announces at import that it found no PyTorch; kdjax needs none,
  so the CLI drops that notice (and only it)."""
  monkeypatch.delenv('TRANSFORMERS_VERBOSITY', raising=False)
  notice = 'PyTorch was not found'
  bare = subprocess.run([sys.executable, '-c', 'import transformers'], capture_output=True,
                        text=True, env={k: v for k, v in os.environ.items()})
  assert notice in bare.stderr  # what the CLI would print without the filter
  proc = run_cli('--workdir', str(workdir), '--config.data.max_length=1024')  # loads the tokenizer
  assert_one_line_error(proc, 'max_length 1024')
  assert notice not in proc.stderr


def test_an_experiment_run_without_the_package_installed_says_how_to_install_it():
  # sys.modules['kdjax'] = None makes every `import kdjax` fail as it does in a
  # clone that was never `pip install`ed.
  script = ("import runpy, sys; sys.modules['kdjax'] = None; sys.path.insert(0, 'experiments'); "
            "sys.argv = ['experiments/rl_kd.py', '--quick']; "
            "runpy.run_path('experiments/rl_kd.py', run_name='__main__')")
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  assert_one_line_error(proc, 'not installed', 'pip install -e .')


def test_rewriting_from_a_missing_record_is_one_error_line(tmp_path, monkeypatch):
  from tests.conftest import load_experiment
  common = load_experiment('common')
  monkeypatch.setattr(common, 'RESULTS', str(tmp_path))
  with pytest.raises(SystemExit, match=r'^kdjax: error: --rewrite needs a saved record at '):
    common.load_saved_record('absent', '--rewrite')
  (tmp_path / 'present.json').write_text('{"seeds": [0]}')
  assert common.load_saved_record('present', '--rewrite') == {'seeds': [0]}
