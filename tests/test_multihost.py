"""Two processes with two fake CPU devices each (gloo collectives on localhost)
end where one process with four devices ends, and resume from the checkpoints
they saved together."""
import json
import os
import socket
import subprocess

import numpy as np

from tests.conftest import REPO
from tests.test_crash import command


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run(teacher_dir, workdir, devices, processes):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  if processes > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f'localhost:{free_port()}',
               JAX_NUM_PROCESSES=str(processes))
  # 96 training examples: 6 teacher and 6 student steps are enough here.
  cmd = command(teacher_dir, workdir, '--config.data.max_train_examples=96')
  procs = [subprocess.Popen(cmd, cwd=REPO, text=True,
                            env={**env, 'JAX_PROCESS_ID': str(i)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for i in range(processes)]
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  return summary


def test_two_processes_equal_one(tmp_path, tiny_teacher_dir):
  single = run(tiny_teacher_dir, tmp_path / 'single', devices=4, processes=1)
  multi = run(tiny_teacher_dir, tmp_path / 'multi', devices=2, processes=2)
  assert multi['hardware']['process_count'] == 2 and multi['hardware']['device_count'] == 4
  assert single['hardware']['process_count'] == 1 and single['hardware']['device_count'] == 4
  for role in ('teacher', 'student'):
    for name, value in single[role]['metrics'].items():
      np.testing.assert_allclose(multi[role]['metrics'][name], value, atol=1e-5, err_msg=role)
  losses = {}
  for name in ('single', 'multi'):
    lines = [json.loads(l) for l in open(tmp_path / name / 'metrics.jsonl')]
    losses[name] = [l['loss'] for l in lines if 'loss' in l]
  np.testing.assert_allclose(losses['multi'], losses['single'], rtol=1e-5, atol=1e-6)
  # The same command again restores every phase from the checkpoints both
  # processes wrote, trains nothing more and reports the same metrics.
  again = run(tiny_teacher_dir, tmp_path / 'multi', devices=2, processes=2)
  for role in ('teacher', 'student'):
    assert again[role]['metrics'] == multi[role]['metrics']
