"""MT-DNN-KD pieces: ensemble soft targets, the mixed multi-task loss and its
train step, the task sampler.

Pure functions (jax, flax, optax, numpy); the pipeline that uses them is
`kdjax.methods.mtdnn_kd.pipeline`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kdjax.data.batching import BucketedBatches, batches_per_epoch
from kdjax.losses import hard_cross_entropy, soft_cross_entropy
from kdjax.steps import make_step, training_forward


def ensemble_soft_targets(teacher_outputs, regression: bool,
                          temperature: float = 1.0) -> np.ndarray:
  """Averages K teachers' outputs [K, N, C] (a list or a stacked array): the mean
  of the members' softened probabilities softmax(z_k / τ) [N, C], as Hinton KD
  softens one teacher's (τ = 1: the plain average), or of their scores [N, 1]
  for regression (τ does not apply to a score)."""
  stacked = np.stack([np.asarray(o, np.float64) for o in teacher_outputs])  # [K, N, C]
  if regression:
    return stacked.mean(0).astype(np.float32)
  stacked = stacked / temperature
  shifted = stacked - stacked.max(-1, keepdims=True)
  probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
  return probs.mean(0).astype(np.float32)


def ensemble_predictions(soft_targets: np.ndarray, regression: bool) -> np.ndarray:
  """What the ensemble predicts, as outputs `compute_metrics` reads."""
  return soft_targets if not regression else soft_targets.reshape(-1, 1)


@dataclasses.dataclass(frozen=True)
class TaskTable:
  """Static per-task facts the loss needs, indexed by task id."""
  num_classes: tuple[int, ...]      # 1 for regression tasks
  regression: tuple[bool, ...]

  @property
  def width(self) -> int:
    return max(self.num_classes)


def multitask_loss(logits: jax.Array, labels: jax.Array, soft_targets: jax.Array,
                   has_soft: jax.Array, task_ids: jax.Array, table: TaskTable, *,
                   alpha: float, temperature: float) -> jax.Array:
  """Per-example MT-DNN-KD loss -> [B].

  logits [B, W] (W = widest task), labels [B] (class id, or score as float),
  soft_targets [B, W] (ensemble probabilities padded with 0, or the ensemble
  score in column 0), has_soft [B] (1 where the task has a teacher), task_ids [B].
  Loss = α·hard + (1−α)·soft where a teacher exists, hard alone otherwise;
  CE for classification (padded classes masked out), squared error for regression.
  """
  num_classes = jnp.asarray(table.num_classes)[task_ids]
  regression = jnp.asarray(table.regression)[task_ids]
  valid = jnp.arange(logits.shape[-1])[None, :] < num_classes[:, None]
  class_logits = jnp.where(valid, logits, -1e9)
  class_ids = jnp.where(regression, 0, labels).astype(jnp.int32)
  hard_ce = hard_cross_entropy(class_logits, class_ids)
  soft_ce = soft_cross_entropy(class_logits, jax.lax.stop_gradient(soft_targets), temperature)
  score = logits[:, 0]
  hard_se = jnp.square(score - labels)
  soft_se = jnp.square(score - jax.lax.stop_gradient(soft_targets[:, 0]))
  hard = jnp.where(regression, hard_se, hard_ce)
  soft = jnp.where(regression, soft_se, soft_ce)
  return jnp.where(has_soft > 0, alpha * hard + (1.0 - alpha) * soft, hard)


def multitask_step(model, table: TaskTable, *, alpha: float, temperature: float):
  """The student's train step `(state, batch, rng, *, tx)` on `multitask_loss`;
  a batch holds one task's rows with their soft targets and task ids."""
  def loss(logits, batch):
    return multitask_loss(logits, batch['labels'], batch['soft_targets'], batch['has_soft'],
                          batch['task_ids'], table, alpha=alpha, temperature=temperature)
  return make_step('multitask_train_step', training_forward(model, 'logits', 'task_ids'), loss)


def task_schedule(task_sizes: list[int], batch_size: int, total_steps: int,
                  seed: int) -> np.ndarray:
  """The task of every step: drawn with probability ∝ training-set size (MT-DNN).

  A pure function of its arguments, so a resumed run replays the same tasks.
  """
  sizes = np.asarray(task_sizes, np.float64)
  if (sizes < batch_size).any():
    small = int(np.argmin(sizes))
    raise ValueError(f'task {small} has {int(sizes[small])} examples, fewer than a batch '
                     f'of {batch_size}')
  return np.random.default_rng([seed, 7]).choice(len(sizes), size=total_steps,
                                                  p=sizes / sizes.sum())


@dataclasses.dataclass(frozen=True)
class MultiTaskBatches:
  """One task per batch; each task walks its own seeded epoch permutations,
  with length buckets (`lengths`) one bucket per batch, as `BucketedBatches`.

  `arrays[t]` holds task t's rows; every task's arrays share keys and widths.
  """
  arrays: tuple[dict[str, np.ndarray], ...]
  schedule: np.ndarray            # [total_steps] task ids
  global_batch_size: int
  seed: int
  process_index: int = 0
  process_count: int = 1
  lengths: tuple[int, ...] = ()

  def __post_init__(self):
    if self.lengths:
      object.__setattr__(self, '_bucketed', tuple(
          BucketedBatches(a, self.global_batch_size, (self.seed, t), self.lengths,
                          self.process_index, self.process_count)
          for t, a in enumerate(self.arrays)))
    # nth[s]: how many batches of step s's task came before it (its position in
    # that task's stream), computed once so each step is O(1) on the host.
    nth = np.zeros(len(self.schedule), np.int64)
    for task in np.unique(self.schedule):
      steps = np.flatnonzero(self.schedule == task)
      nth[steps] = np.arange(len(steps))
    object.__setattr__(self, '_nth', nth)

  def indices_at(self, step: int) -> tuple[int, np.ndarray]:
    task = int(self.schedule[step])
    nth = int(self._nth[step])
    n = len(self.arrays[task]['input_ids'])
    epoch, position = divmod(nth, self.steps_per_epoch(task))
    order = np.random.default_rng([self.seed, task, epoch]).permutation(n)
    rows = order[position * self.global_batch_size:(position + 1) * self.global_batch_size]
    local = self.global_batch_size // self.process_count
    return task, rows[self.process_index * local:(self.process_index + 1) * local]

  def steps_per_epoch(self, task: int) -> int:
    """Batches of task `task` in one pass over its rows."""
    return batches_per_epoch(len(self.arrays[task]['input_ids']), self.global_batch_size,
                             bucketed=bool(self.lengths))

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    if self.lengths:
      task = int(self.schedule[step])
      batch = self._bucketed[task].batch_at(int(self._nth[step]))
    else:
      task, rows = self.indices_at(step)
      batch = {k: v[rows] for k, v in self.arrays[task].items()}
      batch['weights'] = np.ones(len(rows), np.float32)
    batch['task_ids'] = np.full(len(batch['weights']), task, np.int32)
    return batch
