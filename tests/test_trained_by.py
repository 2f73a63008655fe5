"""The journal of which code trained a phase's steps."""
from kdjax import trained_by

A, B, C = ({'commit': c * 40, 'dirty': False} for c in 'abc')


def test_a_resume_replaces_the_entries_it_trains_again(tmp_path):
  phase = str(tmp_path / 'checkpoints' / 'student')
  assert trained_by.read(phase) == []
  trained_by.record(phase, 0, A)
  trained_by.record(phase, 40, B)   # stopped after the checkpoint of step 40
  entries = trained_by.record(phase, 20, C)  # a later stop: back to the checkpoint of step 20
  assert [(e['from_step'], e['code_version']) for e in entries] == [(0, A), (20, C)]
  assert trained_by.read(phase) == entries
  assert trained_by.record(phase, 0, B)[0]['code_version'] == B  # trained again from 0: B alone
  assert len(trained_by.read(phase)) == 1


def test_latest_and_versions_of():
  journals = {'teacher': [{'from_step': 0, 'code_version': A, 'started': '2026-01-01T00:00'}],
              'student': [{'from_step': 0, 'code_version': B, 'started': '2026-01-02T00:00'},
                          {'from_step': 8, 'code_version': A, 'started': '2026-01-03T00:00'}]}
  assert trained_by.latest(journals) == A
  assert trained_by.latest({}) is None
  assert trained_by.versions_of({'trained_by': journals, 'code_version': C}) == [A, B]
  assert trained_by.versions_of({'code_version': C}) == [C]  # a run from before journals
  assert trained_by.versions_of({})[0]['commit'] == 'unknown'
