"""Deterministic batches of a few fixed shapes, sharded across processes.

The training order is a pure function of (seed, step): epoch e uses the
permutation `epoch_order(seed, e)`, so a run resumed at step s sees exactly the
batches an uninterrupted run would. Each process takes its contiguous slice of
every global batch, so no host ever materialises another host's rows.

Length buckets: with `buckets` (sequence lengths such as 16/32/64/128), each
example goes to the smallest bucket that holds its tokens and a batch is cut
to its bucket's length, so short sentences are not padded to `max_length`;
each step function compiles once per bucket length.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import jax
import numpy as np

from kdjax.data.tokenize import ENCODER_INPUTS
from kdjax.errors import KdjaxError


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batches_per_epoch(num_examples: int, global_batch_size: int, bucketed: bool) -> int:
  """Batches in one pass over `num_examples`: whole ones (`TrainBatches` drops
  the last partial batch), or every example (`BucketedBatches`: only the last
  batch is partial)."""
  if bucketed:
    return math.ceil(num_examples / global_batch_size)
  return num_examples // global_batch_size


def _check_batch_size(num_examples: int, global_batch_size: int, process_count: int) -> None:
  if global_batch_size % process_count:
    raise KdjaxError(f'batch size {global_batch_size} is not divisible by the '
                     f'{process_count} processes')
  if num_examples < global_batch_size:
    raise KdjaxError(f'the training set has {num_examples} examples, fewer than one '
                     f'batch of {global_batch_size}; lower the batch size')


@dataclasses.dataclass(frozen=True)
class TrainBatches:
  """Random-order training batches; the last partial batch of an epoch is dropped."""
  arrays: dict[str, np.ndarray]   # every array has N rows
  global_batch_size: int
  seed: int
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    _check_batch_size(self.num_examples, self.global_batch_size, self.process_count)

  @property
  def num_examples(self) -> int:
    return len(next(iter(self.arrays.values())))

  @property
  def steps_per_epoch(self) -> int:
    return batches_per_epoch(self.num_examples, self.global_batch_size, bucketed=False)

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


# The default `data.buckets`: fine steps where sentences are (GLUE's are mostly
# under 32 tokens), coarse ones beyond (experiments/results/padding.md).
DEFAULT_BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128)


def bucket_lengths(buckets, max_length: int) -> tuple[int, ...]:
  """The sequence lengths in use: `buckets` capped at `max_length`, and
  `max_length` itself (every example fits the last). () = no buckets."""
  if not buckets:
    return ()
  if any(int(b) < 1 for b in buckets):
    raise KdjaxError(f'data.buckets {tuple(buckets)}: lengths must be positive')
  return tuple(sorted({min(int(b), max_length) for b in buckets} | {max_length}))


def bucket_of(attention_mask: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
  """Index into `lengths` of the smallest bucket that holds each row's tokens. [N, L] -> [N]"""
  tokens = np.asarray(attention_mask).sum(axis=1)
  return np.searchsorted(np.asarray(lengths), tokens, side='left')


def cut_to(batch: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
  """`batch` with its token columns cut to `length` positions (the rest is padding)."""
  return {k: v[:, :length] if k in ENCODER_INPUTS else v for k, v in batch.items()}


@dataclasses.dataclass(frozen=True)
class BucketedBatches:
  """Random-order training batches drawn one length bucket at a time.

  Epoch e: rows are shuffled within their bucket (`epoch_order`-style, seeded
  by (seed, e)); each bucket is cut into full batches and its remainder joins
  the next longer bucket; the last remainder is padded with weight-0 rows, so
  every example is seen exactly once per epoch; the batches are then shuffled.
  The number of batches per epoch depends only on the bucket sizes.
  """
  arrays: dict[str, np.ndarray]   # every array has N rows; token columns [N, max_length]
  global_batch_size: int
  seed: int | tuple[int, ...]     # a tuple: several seeds (a run's and a task's)
  lengths: tuple[int, ...]        # bucket_lengths(...)
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    _check_batch_size(self.num_examples, self.global_batch_size, self.process_count)
    bucket = bucket_of(self.arrays['attention_mask'], self.lengths)
    object.__setattr__(self, '_members', [np.flatnonzero(bucket == b)
                                          for b in range(len(self.lengths))])
    object.__setattr__(self, '_cached', {})  # epoch -> plan (the last one only)

  @property
  def num_examples(self) -> int:
    return len(next(iter(self.arrays.values())))

  @property
  def steps_per_epoch(self) -> int:
    return batches_per_epoch(self.num_examples, self.global_batch_size, bucketed=True)

  def epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """[(bucket length, global rows [B] with -1 for padding)] of epoch `epoch`."""
    if epoch not in self._cached:
      rng = np.random.default_rng([*np.atleast_1d(self.seed), epoch])
      size, plan, carry = self.global_batch_size, [], np.zeros(0, np.int64)
      for length, members in zip(self.lengths, self._members):
        rows = np.concatenate([carry, rng.permutation(members)])
        full = len(rows) // size
        plan += [(length, rows[i * size:(i + 1) * size]) for i in range(full)]
        carry = rows[full * size:]
      if len(carry):
        plan.append((self.lengths[-1], np.concatenate([carry, np.full(size - len(carry), -1)])))
      plan = [plan[i] for i in rng.permutation(len(plan))]
      self._cached.clear()
      self._cached[epoch] = plan
    return self._cached[epoch]

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    epoch, position = divmod(step, self.steps_per_epoch)
    length, rows = self.epoch_plan(epoch)[position]
    local = self.global_batch_size // self.process_count
    rows = rows[self.process_index * local:(self.process_index + 1) * local]
    valid = rows >= 0
    batch = {k: v[np.where(valid, rows, 0)] for k, v in self.arrays.items()}
    batch['weights'] = valid.astype(np.float32)
    return cut_to(batch, length)


def train_batches(arrays: dict[str, np.ndarray], global_batch_size: int, seed: int,
                  lengths: tuple[int, ...] = ()):
  """`BucketedBatches` over `lengths`, or `TrainBatches` (every batch at full
  length, the last partial batch of an epoch dropped) without buckets."""
  common = dict(seed=seed, process_index=jax.process_index(),
                process_count=jax.process_count())
  if lengths:
    return BucketedBatches(arrays, global_batch_size, lengths=lengths, **common)
  return TrainBatches(arrays, global_batch_size, **common)


def used_lengths(attention_mask: np.ndarray, global_batch_size: int,
                 lengths: tuple[int, ...]) -> tuple[int, ...]:
  """The bucket lengths `BucketedBatches` cuts these rows' batches to: the same
  in every epoch, since they depend on the bucket sizes only (a bucket is used
  when it, with the remainder carried into it, fills a batch; the last length
  when a remainder is left)."""
  sizes = np.bincount(bucket_of(attention_mask, lengths), minlength=len(lengths))
  used, carry = [], 0
  for length, size in zip(lengths, sizes):
    if carry + size >= global_batch_size:
      used.append(length)
    carry = (carry + size) % global_batch_size
  if carry and lengths[-1] not in used:
    used.append(lengths[-1])
  return tuple(used)


def batch_shapes(arrays: dict, global_batch_size: int, lengths: tuple[int, ...] = ()
                 ) -> list[dict[str, jax.ShapeDtypeStruct]]:
  """Shapes of the global training batches of `arrays` (numpy arrays or
  `jax.ShapeDtypeStruct`s with N rows): one per bucket length its batches use
  (every length when the attention mask is only a shape; one without buckets)."""
  shapes = {k: jax.ShapeDtypeStruct((global_batch_size,) + tuple(v.shape[1:]), v.dtype)
            for k, v in arrays.items()}
  shapes['weights'] = jax.ShapeDtypeStruct((global_batch_size,), np.float32)
  if not lengths:
    return [shapes]
  mask = arrays['attention_mask']
  if isinstance(mask, np.ndarray):  # compiling a length no batch has costs seconds
    lengths = used_lengths(mask, global_batch_size, lengths)
  return [{k: jax.ShapeDtypeStruct((v.shape[0], length), v.dtype) if k in ENCODER_INPUTS else v
           for k, v in shapes.items()} for length in lengths]


def eval_batch_count(arrays: dict[str, np.ndarray], global_batch_size: int,
                     lengths: tuple[int, ...] = ()) -> int:
  """How many batches `eval_batches` yields."""
  if not lengths:
    return math.ceil(len(next(iter(arrays.values()))) / global_batch_size)
  sizes = np.bincount(bucket_of(arrays['attention_mask'], lengths), minlength=len(lengths))
  return int(sum(math.ceil(s / global_batch_size) for s in sizes))


def eval_batches(arrays: dict[str, np.ndarray], global_batch_size: int,
                 process_index: int = 0, process_count: int = 1,
                 lengths: tuple[int, ...] = ()
                 ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
  """Batches covering every row once: (global rows [B], -1 for padding; this
  process's batch). In order without buckets; bucket by bucket with them, each
  batch cut to its bucket's length. Tails are padded with weight-0 rows.

  Padding keeps each batch shape fixed (one compilation per length); weights
  let metrics and losses ignore the padded rows.
  """
  n = len(next(iter(arrays.values())))
  local = global_batch_size // process_count
  if lengths:
    bucket = bucket_of(arrays['attention_mask'], lengths)
    groups = [(length, np.flatnonzero(bucket == b)) for b, length in enumerate(lengths)]
  else:
    groups = [(None, np.arange(n))]
  for length, members in groups:
    for start in range(0, len(members), global_batch_size):
      rows = members[start:start + global_batch_size]
      rows = np.concatenate([rows, np.full(global_batch_size - len(rows), -1)])
      mine = rows[process_index * local:(process_index + 1) * local]
      valid = mine >= 0
      batch = {k: v[np.where(valid, mine, 0)] for k, v in arrays.items()}
      batch['weights'] = valid.astype(np.float32)
      yield rows, (batch if length is None else cut_to(batch, length))
