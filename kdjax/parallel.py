"""Device mesh, shardings and host-to-global arrays for data parallelism.

One mesh with a single `data` axis over all devices: batches are split along
it, state is replicated. The same code runs on 1 CPU, N fake CPU devices, a
multi-GPU host or every host of a TPU pod slice (one process per host).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from kdjax.errors import KdjaxError

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  # Auto axes: the compiler propagates shardings (gathers from replicated
  # embedding tables need no annotations), as data parallelism wants.
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the `data` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str) -> None:
  if global_batch_size % mesh.size:
    raise KdjaxError(f'{what} {global_batch_size} is not divisible by the {mesh.size} '
                     'devices; choose a multiple of the device count')


def to_global(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's rows into global arrays sharded on `data`."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a host PyTree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
