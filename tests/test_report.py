"""The HTML report: rendered from real (tiny) runs, side by side; bad input."""
import json
import os

from kdjax import report
from kdjax.methods.kd import pipeline as kd
from tests.test_e2e import tiny_config


def test_report_of_two_runs_side_by_side(tmp_path, tiny_teacher_dir):
  runs = []
  for seed in (0, 1):
    config = tiny_config(tiny_teacher_dir)
    config.seed = seed
    workdir = str(tmp_path / f'run{seed}')
    kd.run(config, workdir)
    runs.append(workdir)
  with open(os.path.join(runs[1], 'metrics.jsonl'), 'a') as f:
    f.write('{"phase": "student", "ste')  # a line cut short by a crash is skipped
  out = tmp_path / 'report'
  assert report.main([*runs, '--out', str(out)]) == 0
  page = (out / 'report.html').read_text()
  assert page.count('data:image/png;base64,') >= 2  # self-contained: plots embedded
  for text in ('run0', 'run1', 'teacher', 'student', 'accuracy', 'MiB'):
    assert text in page, text
  assert (out / 'curves_student.png').read_bytes()[:4] == b'\x89PNG'
  summary = json.load(open(os.path.join(runs[0], 'summary.json')))
  assert f"{summary['student']['metrics']['accuracy']:.4f}" in page
  curves = report.read_metrics(os.path.join(runs[1], 'metrics.jsonl'))
  assert curves['student']['loss'][-1][0] == max(s for s, _ in curves['student']['loss'])


def test_report_bad_input(tmp_path, capsys):
  assert report.main([str(tmp_path / 'missing')]) == 2
  assert 'kdjax: error:' in capsys.readouterr().err
  (tmp_path / 'empty').mkdir()
  assert report.main([str(tmp_path / 'empty')]) == 2
  broken = tmp_path / 'broken'
  broken.mkdir()
  (broken / 'config.json').write_text('{not json')
  assert report.main([str(broken)]) == 2
