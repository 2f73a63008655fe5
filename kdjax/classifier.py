"""A single-task classifier's training phase (a teacher's fine-tuning, a
student's distillation), shared by every method that trains one."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import numpy as np

from kdjax import parallel
from kdjax.data.batching import batch_shapes, train_batches
from kdjax.data.tasks import TaskSpec
from kdjax.methods.kd.pieces import classifier_step
from kdjax.steps import Start, phase_optimizer, start_phase, steps_for


def classifier_start(model: nn.Module, params, arrays: dict, spec: TaskSpec, section, mesh,
                     *, alpha: float = 1.0, temperature: float = 1.0,
                     compile_ahead: bool = False, name: str = 'classifier',
                     epochs: float | None = None, lengths: tuple[int, ...] = (),
                     step: Callable | None = None, frozen=None) -> Start:
  """The initial state and jitted step of `epochs` (default `section.epochs`)
  over `arrays` (numpy arrays or `jax.ShapeDtypeStruct`s of every column, N
  rows), with the optimiser settings of config section `section`; `alpha=1` is
  fine-tuning on gold labels alone; `lengths`: the length buckets of its batches.
  With `compile_ahead`, compiled for its batches (once per bucket length).
  `step`: another train step than `classifier_step` (e.g. a student's
  `kdjax.methods.kd.pieces.distill_step`), with `frozen` params if it takes them."""
  parallel.check_batch_size(section.batch_size, mesh, f'{name} batch_size')
  total = total_steps(arrays, section, epochs, lengths)
  shapes = batch_shapes(arrays, section.batch_size, lengths) if compile_ahead else None
  if step is None:
    step = classifier_step(model, alpha=alpha, temperature=temperature,
                           regression=spec.regression)
  return start_phase(params, step, phase_optimizer(section, total), mesh, frozen=frozen,
                     compile_for=shapes)


def total_steps(arrays: dict, section, epochs: float | None = None,
                lengths: tuple[int, ...] = ()) -> int:
  """Optimiser steps of `epochs` (default `section.epochs`) over `arrays`: whole
  batches without buckets; with them, every example once per epoch (only the
  epoch's last batch is partial)."""
  epochs = section.epochs if epochs is None else epochs
  num_examples = next(iter(arrays.values())).shape[0]
  return steps_for(num_examples, section.batch_size, epochs, bucketed=bool(lengths))


def best_metric(section, spec: TaskSpec) -> str | None:
  """The dev metric a phase keeps its best weights by (`section.keep_best`): the
  task's primary one."""
  return spec.metrics[0] if section.keep_best else None


def train_classifier(run, name: str, start: Start, arrays: dict[str, np.ndarray], section,
                     eval_fn: Callable, *, phase_id: int, seed: int,
                     checkpoint_dir: str | None = None, epochs: float | None = None,
                     best_metric: str | None = None, lengths: tuple[int, ...] = ()):
  """Runs `start` (from `classifier_start` over the same `arrays` and `epochs`)
  in `run` (a `kdjax.scaffold.Run`); data order from seed + phase_id. Returns
  the final params, or those of the best `best_metric` on dev."""
  batches = train_batches(arrays, section.batch_size, seed + phase_id, lengths)
  total = total_steps(arrays, section, epochs, lengths)
  return run.train(name, start, batches, total, eval_fn, phase_id=phase_id, seed=seed,
                   checkpoint_dir=checkpoint_dir, best_metric=best_metric)['params']
