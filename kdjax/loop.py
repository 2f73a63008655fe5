"""The host loop: run a phase's steps, evaluate, checkpoint, stop on request.

The loop never blocks on the device each step: metrics of step t are read on
the host after step t+1 has been dispatched. A phase resumes from its latest
checkpoint, and its batches are a pure function of (seed, step), so a resumed
run ends where an uninterrupted one would.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from kdjax import checkpoint, interrupt, parallel
from kdjax.data.batching import eval_batch_count, eval_batches
from kdjax.data.tasks import TaskSpec
from kdjax.errors import KdjaxError
from kdjax.metrics import compute_metrics
from kdjax.observe import MetricsLog, progress
from kdjax.steps import State


@dataclasses.dataclass(frozen=True)
class Cadence:
  """How often a phase logs, evaluates and checkpoints (run-wide config keys)."""
  eval_every: int
  checkpoint_every: int
  log_every: int
  keep_checkpoints: int = 2

  @classmethod
  def of(cls, config) -> 'Cadence':
    return cls(config.eval_every, config.checkpoint_every, config.log_every,
               config.keep_checkpoints)


@dataclasses.dataclass(frozen=True)
class Phase:
  """One resumable training run (a teacher's fine-tuning, a student, a stage).

  With `best_metric` (a key of what `eval_fn` returns, higher is better) the
  params of the best evaluation are kept in `<checkpoint_dir>-best` and the
  phase ends with them instead of the last step's.
  """
  name: str
  train_step: Callable        # jitted (state, batch, rng) -> (state, metrics)
  batches: Any                # .batch_at(step) -> this process's rows of the batch
  total_steps: int
  checkpoint_dir: str
  eval_fn: Callable[[Any], dict[str, float]]   # params -> dev metrics ({} for none)
  cadence: Cadence
  best_metric: str | None = None


class BestParams:
  """The params of a phase's best dev evaluation, kept on disk beside its
  checkpoints (so a resumed phase still knows them) with their step and value."""

  def __init__(self, phase: Phase, params_like):
    self.metric = phase.best_metric
    self.manager = checkpoint.open_manager(phase.checkpoint_dir + '-best', keep=1)
    self._like = {'params': params_like, 'value': np.zeros((), np.float32)}
    kept = checkpoint.restore_latest(self.manager, self._like)
    self.step = None if kept is None else int(self.manager.latest_step())
    self.value = -math.inf if kept is None else float(kept['value'])

  def offer(self, step: int, dev: dict[str, float], params) -> None:
    """Keeps `params` if their `dev[metric]` beats the best so far."""
    if self.metric not in dev:
      raise KdjaxError(f'keep_best: the dev metrics {sorted(dev)} have no {self.metric!r}')
    value = dev[self.metric]
    if value > self.value:  # ties keep the earlier step; NaN never wins
      checkpoint.save(self.manager, step, {'params': params,
                                           'value': np.asarray(value, np.float32)},
                      self.step)
      self.step, self.value = step, float(value)

  def params(self):
    """The kept params (None if no evaluation happened)."""
    if self.step is None:
      return None
    return checkpoint.restore_latest(self.manager, self._like)['params']

  def close(self) -> None:
    self.manager.close()


def no_eval(params) -> dict[str, float]:
  """The eval_fn of phases without a dev metric (MLM pre-training)."""
  return {}


def _check_finite(phase: str, step: int, metrics: dict[str, float], last_saved: int | None):
  if not math.isfinite(metrics['loss']):
    kept = f'the checkpoint of step {last_saved} is kept' if last_saved else 'nothing was saved'
    raise KdjaxError(f'{phase}: loss is {metrics["loss"]} at step {step}; {kept}; lower the '
                     'learning rate or check the data')


def _stop_signal(step: int, checkpoint_every: int) -> int | None:
  """The signal asking this run to stop after `step`, if any. Hosts must agree
  (saving is collective), so multi-host runs compare flags at checkpoint steps."""
  if jax.process_count() == 1:
    return interrupt.requested()
  if step % checkpoint_every:
    return None
  flags = multihost_utils.process_allgather(np.int32(interrupt.requested() or 0))
  return int(np.max(flags)) or None


def run_phase(phase: Phase, state: State, rng: jax.Array, mesh: Mesh, log: MetricsLog,
              on_train_start: Callable[[int], None] | None = None
              ) -> tuple[State, dict | None]:
  """Trains `state` to `phase.total_steps`, resuming from the latest checkpoint.

  `on_train_start(step)` is called with the step training resumes from, before
  the first step, when any step is left. Returns the final state (with the best
  evaluation's params when the phase keeps them) and, then, {'step', 'metric',
  'value'} of that evaluation."""
  keep = phase.cadence.keep_checkpoints
  checkpoint.check_space(phase.checkpoint_dir, state, keep)
  manager = checkpoint.open_manager(phase.checkpoint_dir, keep)
  best = BestParams(phase, state['params']) if phase.best_metric else None
  try:
    state, last_saved = _resume(phase, state, manager, log)
    if on_train_start is not None and int(state['step']) < phase.total_steps:
      on_train_start(int(state['step']))
    bar = progress(phase.total_steps, phase.name, initial=int(state['step']))
    try:  # the bar ends its line before any error message is printed
      state = _train_steps(phase, state, rng, mesh, log, manager, bar, last_saved, best)
    finally:
      bar.close()
    if best is None or best.step is None:
      return state, None
    return ({**state, 'params': best.params()},
            {'step': best.step, 'metric': best.metric, 'value': best.value})
  finally:
    manager.close()
    if best is not None:
      best.close()


def _resume(phase: Phase, state: State, manager, log: MetricsLog) -> tuple[State, int | None]:
  """The latest checkpoint (or `state`) and the step it was saved at."""
  restored = checkpoint.restore_latest(manager, state)
  start = int((state if restored is None else restored)['step'])
  if start > phase.total_steps:
    raise KdjaxError(f'{phase.checkpoint_dir} holds step {start}, beyond this run\'s '
                     f'{phase.total_steps} steps; use a new --workdir for a shorter run')
  # Steps after the checkpoint (or, killed before the first one, every step the
  # phase logged) are logged again.
  log.rewind(phase.name, start)
  if restored is None:
    return state, None
  return restored, start


def _train_steps(phase: Phase, state: State, rng: jax.Array, mesh: Mesh, log: MetricsLog,
                 manager, bar, last_saved: int | None, best: BestParams | None) -> State:
  cadence = phase.cadence
  pending = None  # (step, device metrics) of the previous step, read a step late

  def flush(item):
    step, device_metrics = item
    host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    _check_finite(phase.name, step, host, last_saved)
    if step % cadence.log_every == 0 or step == phase.total_steps:
      log.write(phase.name, step, host)
      bar.set_postfix(loss=f'{host["loss"]:.4f}')

  for step in range(int(state['step']), phase.total_steps):
    batch = parallel.to_global(phase.batches.batch_at(step), mesh)
    state, metrics = phase.train_step(state, batch, rng)
    if pending is not None:
      flush(pending)
    pending = (step + 1, metrics)
    bar.update(1)
    done = step + 1 == phase.total_steps
    stop_signal = _stop_signal(step + 1, cadence.checkpoint_every)
    if done or (step + 1) % cadence.checkpoint_every == 0 or stop_signal is not None:
      flush(pending)  # never save a state whose loss was not finite
      pending = None
      checkpoint.save(manager, step + 1, state, last_saved)
      last_saved = step + 1
    if stop_signal is not None and not done:
      raise interrupt.Stopped(
          f'stopped by {interrupt.signal_name(stop_signal)}: {phase.name} saved at step '
          f'{step + 1} of {phase.total_steps} in {phase.checkpoint_dir}; rerun the same '
          'command to resume', stop_signal)
    if done or (step + 1) % cadence.eval_every == 0:
      dev = phase.eval_fn(state['params'])
      if dev:
        log.write(phase.name, step + 1, {f'dev_{k}': v for k, v in dev.items()})
      if best is not None:
        best.offer(step + 1, dev, state['params'])
  if pending is not None:
    flush(pending)
  return state


def predict_all(predict: Callable, params, arrays: dict[str, np.ndarray],
                batch_size: int, mesh: Mesh, desc: str | None = None,
                lengths: tuple[int, ...] = ()) -> np.ndarray:
  """Outputs for every row of `arrays`, in order, as one host array [N, C]; with
  bucket `lengths`, computed bucket by bucket on batches cut to their length."""
  n = len(arrays['input_ids'])
  outputs, in_flight = None, None
  bar = (progress(eval_batch_count(arrays, batch_size, lengths), desc, unit='batch')
         if desc else None)

  def collect(item):
    nonlocal outputs
    rows, out = item
    out = np.asarray(out)
    if outputs is None:
      outputs = np.zeros((n,) + out.shape[1:], out.dtype)
    outputs[rows[rows >= 0]] = out[rows >= 0]  # padding rows are dropped
    if bar:
      bar.update(1)

  for rows, batch in eval_batches(arrays, batch_size, jax.process_index(),
                                  jax.process_count(), lengths):
    if desc:  # a long pass (teacher outputs); short dev evaluations finish first
      interrupt.check(desc)
    del batch['weights']
    out = predict(params, parallel.to_global(batch, mesh))
    if jax.process_count() > 1:
      out = multihost_utils.process_allgather(out, tiled=True)
    if in_flight is not None:  # read the previous batch while this one computes
      collect(in_flight)
    in_flight = (rows, out)
  collect(in_flight)
  if bar:
    bar.close()
  return outputs


def evaluate(predict: Callable, params, arrays: dict[str, np.ndarray], labels: np.ndarray,
             spec: TaskSpec, batch_size: int, mesh: Mesh, lengths: tuple[int, ...] = ()
             ) -> dict[str, float]:
  """The task's metrics of `predict` on every row of `arrays`."""
  outputs = predict_all(predict, params, arrays, batch_size, mesh, lengths=lengths)
  return compute_metrics(spec.metrics, outputs, labels, spec.regression)


def overlapped(background: Callable[[], Any], foreground: Callable[[], Any]) -> tuple[Any, Any]:
  """(background(), foreground()), the first run on another thread while the
  second runs on this one; an exception of either is raised here."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    later = pool.submit(background)
    now = foreground()
    return later.result(), now
