"""Joining a multi-process (multi-host) run before any JAX computation.

Switched on by the environment, so the same command runs everywhere:
- `JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i`: an
  explicit cluster (e.g. N processes on one multi-GPU host, or on CPUs);
- `KDJAX_DISTRIBUTED=1`: JAX detects the cluster itself (Cloud TPU pod slices,
  SLURM, Open MPI, Kubernetes).
Neither set: a single process. Afterwards every process sees all devices in
one mesh, reads only its rows of each batch, and joins the collective
checkpoint saves; process 0 alone writes logs, caches, summaries and exports.
"""
from __future__ import annotations

import os

import jax

from kdjax.errors import KdjaxError


def requested() -> bool:
  return bool(os.environ.get('JAX_COORDINATOR_ADDRESS') or
              os.environ.get('KDJAX_DISTRIBUTED', '') not in ('', '0'))


_joined: list[bool] = []  # whether this process has joined (a sweep launches many runs)


def initialize() -> None:
  """Calls `jax.distributed.initialize` when the environment asks for it, once."""
  if not requested() or _joined:
    return
  explicit = {}
  if os.environ.get('JAX_COORDINATOR_ADDRESS'):
    try:
      explicit = {'coordinator_address': os.environ['JAX_COORDINATOR_ADDRESS'],
                  'num_processes': int(os.environ['JAX_NUM_PROCESSES']),
                  'process_id': int(os.environ['JAX_PROCESS_ID'])}
    except (KeyError, ValueError) as e:
      raise KdjaxError('JAX_COORDINATOR_ADDRESS needs integer JAX_NUM_PROCESSES and '
                       f'JAX_PROCESS_ID ({type(e).__name__}: {e})') from None
  # CPU processes exchange gradients through gloo (GPUs and TPUs use their own).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(**explicit)
    _joined.append(True)
  except (RuntimeError, ValueError) as e:
    raise KdjaxError(f'cannot join the multi-process run ({str(e).splitlines()[0]}); '
                     'check JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID') from None
