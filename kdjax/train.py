"""The training loop: state, jitted steps, evaluation, checkpoints, logging.

A train step is a module-level pure function `(state, batch, rng) -> (state,
metrics)`, jitted once per phase with explicit shardings and the state donated.
The loop never blocks on the device each step: metrics of step t are read on
the host after step t+1 has been dispatched.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from kdjax import checkpoint, interrupt, parallel
from kdjax.data.batching import TrainBatches, batch_shapes, eval_batches
from kdjax.data.tasks import TaskSpec
from kdjax.errors import KdjaxError
from kdjax.losses import distillation_loss, weighted_mean
from kdjax.metrics import compute_metrics
from kdjax.observe import MetricsLog, progress

State = dict[str, Any]  # {'step': int32 [], 'params': PyTree, 'opt_state': PyTree}


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Optimisation hyper-parameters of one training phase."""
  learning_rate: float
  total_steps: int
  warmup_steps: int
  weight_decay: float
  max_grad_norm: float = 1.0


def make_optimizer(s: Schedule) -> optax.GradientTransformation:
  """AdamW with linear warm-up then linear decay to 0 (BERT's schedule).

  Biases and LayerNorm scales are not decayed.
  """
  lr = optax.join_schedules([
      optax.linear_schedule(0.0, s.learning_rate, max(s.warmup_steps, 1)),
      optax.linear_schedule(s.learning_rate, 0.0, max(s.total_steps - s.warmup_steps, 1)),
  ], [max(s.warmup_steps, 1)])
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim > 1, params)
  return optax.chain(
      optax.clip_by_global_norm(s.max_grad_norm),
      optax.adamw(lr, weight_decay=s.weight_decay, mask=decay_mask))


def init_state(params, tx: optax.GradientTransformation) -> State:
  return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}


def classifier_train_step(state: State, batch: dict[str, jax.Array], rng: jax.Array, *,
                          model: nn.Module, tx: optax.GradientTransformation,
                          alpha: float, temperature: float, regression: bool
                          ) -> tuple[State, dict[str, jax.Array]]:
  """One optimisation step of `α·hard + (1−α)·soft` (hard only without teacher logits)."""
  rng = jax.random.fold_in(rng, state['step'])

  def loss_fn(params):
    out = model.apply({'params': params}, batch['input_ids'], batch['token_type_ids'],
                      batch['attention_mask'], deterministic=False, rngs={'dropout': rng})
    per_example = distillation_loss(out['logits'], batch['labels'], batch.get('teacher_logits'),
                                    alpha=alpha, temperature=temperature, regression=regression)
    return weighted_mean(per_example, batch['weights'])

  return apply_gradients(state, loss_fn, tx)


def apply_gradients(state: State, loss_fn: Callable, tx: optax.GradientTransformation,
                    has_aux: bool = False) -> tuple[State, dict[str, jax.Array]]:
  """Differentiates `loss_fn(params) -> scalar` and applies one optimiser update.

  With `has_aux`, `loss_fn` returns `(loss, aux)` and the dict `aux` joins the metrics.
  """
  out, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(state['params'])
  loss, aux = out if has_aux else (out, {})
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  new_state = {'step': state['step'] + 1,
               'params': optax.apply_updates(state['params'], updates),
               'opt_state': opt_state}
  return new_state, {'loss': loss, 'grad_norm': optax.global_norm(grads), **aux}


def predict_logits(params, batch: dict[str, jax.Array], *, model: nn.Module) -> jax.Array:
  """Deterministic forward pass: logits [B, C] (or scores [B, 1])."""
  return model.apply({'params': params}, batch['input_ids'], batch['token_type_ids'],
                     batch['attention_mask'])['logits']


def jit_train_step(step_fn: Callable, mesh: Mesh, **static) -> Callable:
  """Jits `step_fn` once: state replicated and donated, batch split on `data`."""
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(functools.partial(step_fn, **static), in_shardings=(rep, data, rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def jit_train_step_frozen(step_fn: Callable, mesh: Mesh, frozen, **static) -> Callable:
  """`jit_train_step` for `step_fn(state, frozen, batch, rng)`.

  `frozen` (a teacher's params) is passed as a replicated argument at every
  call, so it is neither baked into the program as a constant, nor donated,
  nor checkpointed with the state.
  """
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  jitted = jax.jit(functools.partial(step_fn, **static), in_shardings=(rep, rep, data, rep),
                   out_shardings=(rep, rep), donate_argnums=(0,))
  frozen = parallel.replicate(frozen, mesh)
  return lambda state, batch, rng: jitted(state, frozen, batch, rng)


def jit_predict(model: nn.Module, mesh: Mesh, predict_fn: Callable = predict_logits
                ) -> Callable:
  """Jits `predict_fn(params, batch, *, model)`: params replicated, batch split on `data`."""
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(functools.partial(predict_fn, model=model),
                 in_shardings=(rep, data), out_shardings=data)


def predict_all(predict: Callable, params, arrays: dict[str, np.ndarray],
                batch_size: int, mesh: Mesh, desc: str | None = None) -> np.ndarray:
  """Outputs for every row of `arrays`, in order, as one host array [N, C]."""
  n = len(arrays['input_ids'])
  outputs, in_flight = [], None
  bar = progress(math.ceil(n / batch_size), desc, unit='batch') if desc else None
  for batch in eval_batches(arrays, batch_size, jax.process_index(), jax.process_count()):
    if desc:  # a long pass (teacher outputs); short dev evaluations finish first
      interrupt.check(desc)
    del batch['weights']  # padding rows are trimmed below
    out = predict(params, parallel.to_global(batch, mesh))
    if jax.process_count() > 1:
      out = multihost_utils.process_allgather(out, tiled=True)
    if in_flight is not None:  # read the previous batch while this one computes
      outputs.append(np.asarray(in_flight))
      if bar:
        bar.update(1)
    in_flight = out
  outputs.append(np.asarray(in_flight))
  if bar:
    bar.update(1)
    bar.close()
  return np.concatenate(outputs)[:n]


def evaluate(predict: Callable, params, arrays: dict[str, np.ndarray], labels: np.ndarray,
             spec: TaskSpec, batch_size: int, mesh: Mesh) -> dict[str, float]:
  outputs = predict_all(predict, params, arrays, batch_size, mesh)
  return compute_metrics(spec.metrics, outputs, labels, spec.regression)


@dataclasses.dataclass
class Phase:
  """One resumable training run (teacher fine-tuning or student distillation)."""
  name: str
  train_step: Callable        # jitted (state, batch, rng) -> (state, metrics)
  batches: TrainBatches
  total_steps: int
  checkpoint_dir: str
  eval_fn: Callable[[Any], dict[str, float]]   # params -> dev metrics
  eval_every: int
  checkpoint_every: int
  log_every: int
  keep_checkpoints: int = 2


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


def run_phase(phase: Phase, state: State, rng: jax.Array, mesh: Mesh,
              log: MetricsLog) -> State:
  """Trains `state` to `phase.total_steps`, resuming from the latest checkpoint."""
  checkpoint.check_space(phase.checkpoint_dir, state, phase.keep_checkpoints)
  manager = checkpoint.open_manager(phase.checkpoint_dir, phase.keep_checkpoints)
  try:
    state, last_saved = _resume(phase, state, manager, log)
    bar = progress(phase.total_steps, phase.name, initial=int(state['step']))
    try:  # the bar ends its line before any error message is printed
      return _train_steps(phase, state, rng, mesh, log, manager, bar, last_saved)
    finally:
      bar.close()
  finally:
    manager.close()


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
                 manager, bar, last_saved: int | None) -> State:
  pending = None  # (step, device metrics) of the previous step, read a step late

  def flush(item):
    step, device_metrics = item
    host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    _check_finite(phase.name, step, host, last_saved)
    if step % phase.log_every == 0 or step == phase.total_steps:
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
    stop_signal = _stop_signal(step + 1, phase.checkpoint_every)
    if done or (step + 1) % phase.checkpoint_every == 0 or stop_signal is not None:
      flush(pending)  # never save a state whose loss was not finite
      pending = None
      checkpoint.save(manager, step + 1, state, last_saved)
      last_saved = step + 1
    if stop_signal is not None and not done:
      raise interrupt.Stopped(
          f'stopped by {interrupt.signal_name(stop_signal)}: {phase.name} saved at step '
          f'{step + 1} of {phase.total_steps} in {phase.checkpoint_dir}; rerun the same '
          'command to resume', stop_signal)
    if done or (step + 1) % phase.eval_every == 0:
      dev = phase.eval_fn(state['params'])
      if dev:  # phases without a dev metric (MLM pre-training) return {}
        log.write(phase.name, step + 1, {f'dev_{k}': v for k, v in dev.items()})
  if pending is not None:
    flush(pending)
  return state


def phase_optimizer(section, total_steps: int) -> optax.GradientTransformation:
  """The optimiser of a phase from its config section (learning_rate,
  warmup_fraction, weight_decay)."""
  return make_optimizer(Schedule(section.learning_rate, total_steps,
                                 int(section.warmup_fraction * total_steps),
                                 section.weight_decay))


@dataclasses.dataclass(frozen=True)
class Start:
  """A phase's initial train state (replicated) and its jitted step."""
  state: State
  train_step: Callable


def start_phase(params, step_fn: Callable, tx: optax.GradientTransformation, mesh: Mesh,
                frozen=None, compile_for: dict[str, jax.ShapeDtypeStruct] | None = None,
                **step_static) -> Start:
  """The initial state of `params` under `tx` and the jitted `step_fn`.

  With `compile_for` (the shapes of one global batch, `batching.batch_shapes`)
  the step is compiled here too, so that its first call finds the program
  ready: run on a background thread, the start-up (initialisation and
  compilation, seconds on a CPU) overlaps other work such as a teacher pass.
  """
  state = parallel.replicate(init_state(params, tx), mesh)
  if frozen is not None:
    if compile_for is not None:
      raise ValueError('compile_for is not supported with frozen params')
    return Start(state, jit_train_step_frozen(step_fn, mesh, frozen, tx=tx, **step_static))
  jitted = jit_train_step(step_fn, mesh, tx=tx, **step_static)
  if compile_for is not None:
    sharding = parallel.batch_sharded(mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
             for k, v in compile_for.items()}
    jitted.lower(state, batch, jax.random.PRNGKey(0)).compile()
  return Start(state, jitted)


def overlapped(background: Callable[[], Any], foreground: Callable[[], Any]) -> tuple[Any, Any]:
  """(background(), foreground()), the first run on another thread while the
  second runs on this one; an exception of either is raised here."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    later = pool.submit(background)
    now = foreground()
    return later.result(), now


def fit(name: str, phase_id: int, params, step_fn: Callable, batches, total_steps: int,
        section, config, mesh: Mesh, checkpoint_dir: str, log: MetricsLog,
        eval_fn: Callable, seed: int | None = None, frozen=None, start: Start | None = None,
        **step_static) -> Any:
  """Trains `params` with `step_fn` for one resumable phase; returns the final params.

  `section` holds the phase's optimiser settings (learning_rate,
  warmup_fraction, weight_decay, batch_size); `config` the run-wide eval,
  checkpoint and logging cadence and (unless `seed` is given) the seed. With
  `frozen` (a teacher's params) the step is `step_fn(state, frozen, batch, rng)`.
  `start`, made beforehand by `start_phase` with the same settings, replaces
  `params`, `step_fn`, `frozen` and `step_static`.
  """
  parallel.check_batch_size(section.batch_size, mesh, f'{name} batch_size')
  if start is None:
    start = start_phase(params, step_fn, phase_optimizer(section, total_steps), mesh, frozen,
                        **step_static)
  phase = Phase(name, start.train_step, batches, total_steps, checkpoint_dir, eval_fn,
                config.eval_every, config.checkpoint_every, config.log_every,
                config.keep_checkpoints)
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed if seed is None else seed), phase_id)
  return run_phase(phase, start.state, rng, mesh, log)['params']


def classifier_start(name: str, model: nn.Module, params, arrays: dict, spec: TaskSpec,
                     section, mesh: Mesh, *, alpha: float, temperature: float,
                     compile_ahead: bool = False) -> Start:
  """`start_phase` of `classifier_train_step` for `section.epochs` over `arrays`
  (numpy arrays or `jax.ShapeDtypeStruct`s of every column, N rows); with
  `compile_ahead`, compiled for its batches."""
  parallel.check_batch_size(section.batch_size, mesh, f'{name} batch_size')
  num_examples = next(iter(arrays.values())).shape[0]
  total = steps_for(num_examples, section.batch_size, section.epochs)
  shapes = batch_shapes(arrays, section.batch_size) if compile_ahead else None
  return start_phase(params, classifier_train_step, phase_optimizer(section, total), mesh,
                     compile_for=shapes, model=model, alpha=alpha, temperature=temperature,
                     regression=spec.regression)


def fit_classifier(name: str, phase_id: int, model: nn.Module, params,
                   arrays: dict[str, np.ndarray], spec: TaskSpec, section, config, mesh: Mesh,
                   checkpoint_dir: str, log: MetricsLog, eval_fn: Callable, *, alpha: float,
                   temperature: float, seed: int, start: Start | None = None) -> Any:
  """`fit` with `classifier_train_step` over `arrays` (inputs, labels and, for a
  student, teacher_logits) for `section.epochs` epochs; data order from `seed`.
  `start`: the phase's `classifier_start`, made beforehand (then `params` is unused)."""
  batches = TrainBatches(arrays, section.batch_size, seed=seed + phase_id,
                         process_index=jax.process_index(),
                         process_count=jax.process_count())
  total = steps_for(batches.num_examples, section.batch_size, section.epochs)
  start = start or classifier_start(name, model, params, arrays, spec, section, mesh,
                                    alpha=alpha, temperature=temperature)
  return fit(name, phase_id, params, classifier_train_step, batches, total, section, config,
             mesh, checkpoint_dir, log, eval_fn, seed=seed, start=start)


def steps_for(num_examples: int, batch_size: int, epochs: float) -> int:
  if num_examples < batch_size:
    raise KdjaxError(f'{num_examples} training examples is fewer than one batch of '
                     f'{batch_size}; lower the batch size')
  return max(1, int(round(epochs * (num_examples // batch_size))))


def ensure_writable(workdir: str) -> None:
  """Fails before any work if `workdir` cannot be created or written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write-test-{os.getpid()}')  # one per process
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise KdjaxError(f'workdir {workdir!r} is not writable ({e.strerror}); choose '
                     'another --workdir') from None
