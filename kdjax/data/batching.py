"""Deterministic batches of fixed shape, sharded across processes.

The training order is a pure function of (seed, step): epoch e uses the
permutation `epoch_order(seed, e)`, so a run resumed at step s sees exactly the
batches an uninterrupted run would. Each process takes its contiguous slice of
every global batch, so no host ever materialises another host's rows.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import numpy as np

from kdjax.errors import KdjaxError


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


@dataclasses.dataclass(frozen=True)
class TrainBatches:
  """Random-order training batches; the last partial batch of an epoch is dropped."""
  arrays: dict[str, np.ndarray]   # every array has N rows
  global_batch_size: int
  seed: int
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    if self.global_batch_size % self.process_count:
      raise KdjaxError(f'batch size {self.global_batch_size} is not divisible by the '
                       f'{self.process_count} processes')
    if self.num_examples < self.global_batch_size:
      raise KdjaxError(f'the training set has {self.num_examples} examples, fewer than one '
                       f'batch of {self.global_batch_size}; lower the batch size')

  @property
  def num_examples(self) -> int:
    return len(next(iter(self.arrays.values())))

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.global_batch_size

  def indices_at(self, step: int) -> np.ndarray:
    """This process's row indices for global step `step`."""
    epoch, position = divmod(step, self.steps_per_epoch)
    order = epoch_order(self.seed, epoch, self.num_examples)
    rows = order[position * self.global_batch_size:(position + 1) * self.global_batch_size]
    local = self.global_batch_size // self.process_count
    return rows[self.process_index * local:(self.process_index + 1) * local]

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    idx = self.indices_at(step)
    batch = {k: v[idx] for k, v in self.arrays.items()}
    batch['weights'] = np.ones(len(idx), np.float32)
    return batch


def batch_shapes(arrays: dict, global_batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of one global training batch of `arrays` (numpy arrays or
  `jax.ShapeDtypeStruct`s with N rows), as `TrainBatches` makes them."""
  shapes = {k: jax.ShapeDtypeStruct((global_batch_size,) + tuple(v.shape[1:]), v.dtype)
            for k, v in arrays.items()}
  shapes['weights'] = jax.ShapeDtypeStruct((global_batch_size,), np.float32)
  return shapes


def eval_batches(arrays: dict[str, np.ndarray], global_batch_size: int,
                 process_index: int = 0, process_count: int = 1
                 ) -> Iterator[dict[str, np.ndarray]]:
  """In-order batches covering every row once; the tail is padded with weight 0.

  Padding keeps the batch shape fixed (one compilation); weights let metrics
  and losses ignore the padded rows.
  """
  n = len(next(iter(arrays.values())))
  local = global_batch_size // process_count
  for start in range(0, n, global_batch_size):
    rows = np.arange(start, start + global_batch_size)
    rows = rows[process_index * local:(process_index + 1) * local]
    valid = rows < n
    rows = np.where(valid, rows, 0)
    batch = {k: v[rows] for k, v in arrays.items()}
    batch['weights'] = valid.astype(np.float32)
    yield batch
