"""experiments/bench_real_data.py's report: a run of some tasks keeps the rows
of the others, each marked with the run that measured it."""
from tests.conftest import load_experiment


def _row(seconds: float) -> dict:
  return {'speedup': 470.0 / seconds, 'best': {'kdjax': {'job_s': seconds}}}


def test_a_partial_run_keeps_the_other_tasks_rows_with_their_provenance():
  bench = load_experiment('bench_real_data')
  earlier = {'command': 'python experiments/bench_real_data.py --rounds 1', 'date': '2026-12-01',
             'versions': 'jax 0.10.1', 'tasks': {'sst2': _row(154.3), 'bbc': _row(396.5)}}
  now = {'command': 'python experiments/bench_real_data.py --tasks bbc', 'date': '2026-12-03',
         'versions': 'jax 0.10.2', 'tasks': {'bbc': _row(350.0)}}
  merged = bench.carry_over_tasks(earlier, now)
  assert list(merged['tasks']) == ['sst2', 'bbc']
  assert merged['tasks']['bbc'] == now['tasks']['bbc']  # the new measurement, no provenance
  assert merged['tasks']['sst2']['best']['kdjax']['job_s'] == 154.3
  assert merged['tasks']['sst2']['command'] == earlier['command']
  assert merged['tasks']['sst2']['date'] == '2026-12-01'
  assert merged['command'] == now['command']
  # Carried over again, a row keeps the run that measured it, not the one in between.
  later = {**now, 'command': 'python experiments/bench_real_data.py --tasks bbc --rounds 3',
           'date': '2026-12-05'}
  assert bench.carry_over_tasks(merged, later)['tasks']['sst2']['date'] == '2026-12-01'
  assert bench.carry_over_tasks(None, now) == now
