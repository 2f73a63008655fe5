"""Every method's train step (plain KD also with several teachers and layer-wise
losses to a teacher run inside the step) ends where it ends on one device, on
meshes of 1, 2, 4 and 8 devices: 3 steps, dropout on, the same fixed random batch, float32,
losses, metrics and the whole train state (policy included) within
rtol = atol = 1e-5, and the parameters really moved.

The pytest process has 4 fake CPU devices (conftest), so `tests.device_worker`
runs the steps in subprocesses with 8 and reports the differences as JSON.
"""
import json
import os
import subprocess
import sys

import pytest

from tests import device_worker
from tests.conftest import REPO

TOLERANCE = 1e-5
# Compiling 20 small programs is nearly all of the time; LLVM's optimisation of
# the generated code changes nothing the comparison is about (the partitioning).
XLA_FLAGS = (f'--xla_force_host_platform_device_count={max(device_worker.DEVICE_COUNTS)}'
             ' --xla_backend_optimization_level=0')


def _worker_groups() -> list[list[str]]:
  """The methods split round-robin over one worker per available core."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  methods = list(device_worker.METHODS)
  workers = max(1, min(len(methods), cores or 1))
  return [methods[i::workers] for i in range(workers)]


@pytest.fixture(scope='module')
def results() -> dict:
  env = {**os.environ, 'XLA_FLAGS': XLA_FLAGS, 'JAX_PLATFORMS': 'cpu'}
  procs = [subprocess.Popen([sys.executable, '-m', 'tests.device_worker', *group], cwd=REPO,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for group in _worker_groups()]
  merged = {}
  try:
    for p in procs:
      out, err = p.communicate(timeout=600)
      assert p.returncode == 0, err[-3000:]
      merged.update(json.loads(out.splitlines()[-1]))
  finally:
    for p in procs:  # a hung collective must not outlive the test
      if p.poll() is None:
        p.kill()
        p.wait()
  return merged


@pytest.mark.parametrize('method', list(device_worker.METHODS))
def test_steps_equal_on_1_2_4_8_devices(results, method):
  rows = results[method]
  assert sorted(int(n) for n in rows) == list(device_worker.DEVICE_COUNTS)
  for n, row in rows.items():
    # `*_err` is max |x - x_1| / (1 + |x_1|): <= t is assert_allclose(rtol=t, atol=t).
    errors = {k: v for k, v in row.items() if k.endswith('_err')}
    assert {'loss_err', 'metrics_err', 'param_err', 'state_err'} <= set(errors), row
    far = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not far, f'{method} on {n} devices is not the 1-device result: {far}'
    # Well beyond the tolerance, so equal results are not merely unmoved ones.
    moved = {k: v for k, v in row.items() if k.endswith('moved')}
    assert moved and min(moved.values()) > 10 * TOLERANCE, (method, n, moved)
  if method == 'rl_kd':  # the policy is compared and trained too
    assert all('policy_err' in row and 'policy_moved' in row for row in rows.values())
