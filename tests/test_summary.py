"""The final table's one-class warning: a student that answers the same class
whatever it reads is named, not reported silently as a weak score."""
import numpy as np
import pytest

from kdjax import summary


def test_top_class_share_by_hand():
  logits = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 0.0], [-1.0, 3.0]])
  assert summary.top_class_share(logits, regression=False) == pytest.approx(3 / 4)
  assert summary.top_class_share(np.array([[0.1, 0.2, 0.3]] * 5), False) == 1.0
  assert summary.top_class_share(np.ones((4, 1)), regression=True) is None


def _result(student_share, teacher_share):
  side = lambda share: {'metrics': {'accuracy': 0.5}, 'params': 10, 'disk_bytes': 40,
                        'examples_per_s': 1.0, 'top_class_share': share}
  return {'eval_split': 'test', 'teacher': side(teacher_share), 'student': side(student_share),
          'comparison': {'primary_metric': 'accuracy', 'kept_fraction': 1.0,
                         'param_ratio': 1.0, 'disk_ratio': 1.0, 'speedup': 1.0}}


def test_one_class_warning_only_when_the_student_alone_answers_one_class():
  warning = summary.one_class_warning(_result(1.0, 0.42))
  assert warning.startswith('warning: the student gives one class to 100.0% of the test')
  assert '(the teacher: 42.0%)' in warning
  assert warning in summary.format_table(_result(1.0, 0.42)).splitlines()
  assert summary.one_class_warning(_result(0.985, 0.42)) is None  # below the threshold
  assert summary.one_class_warning(_result(1.0, 1.0)) is None  # the split itself is one class
  assert summary.one_class_warning(_result(None, None)) is None  # regression
  assert 'warning' not in summary.format_table(_result(0.6, 0.5))


def test_code_version_is_read_once_per_process(monkeypatch):
  """A commit made while a process trains must not relabel the runs it
  finishes later: the version is the one read at the first call, and each
  caller gets its own copy."""
  import subprocess
  from kdjax import summary
  summary._code_version_at_first_call.cache_clear()
  first = summary.code_version()
  assert len(first['commit']) == 40 or first['commit'] == 'unknown'

  def a_later_commit(*args, **kwargs):
    return subprocess.CompletedProcess(args, 0, stdout='f' * 40 + '\n', stderr='')

  monkeypatch.setattr(subprocess, 'run', a_later_commit)
  try:
    again = summary.code_version()
    assert again == first and again is not first
    again['commit'] = 'changed by a caller'
    assert summary.code_version() == first
    summary._code_version_at_first_call.cache_clear()
    assert summary.code_version()['commit'] == 'f' * 40  # the stub: the read is what is cached
  finally:
    summary._code_version_at_first_call.cache_clear()  # later tests read the real one
