"""Train state, optimiser and the one train-step builder; pure and jittable.

A train step is a pure function `(state, batch, rng) -> (state, metrics)`
(`(state, frozen, batch, rng)` when a frozen model's params ride along), jitted
once per phase with explicit shardings and the state donated. Every method
builds its steps with `make_step` from two pieces: a forward pass and a
per-example loss. Nothing here touches files, signals or the host loop
(`kdjax.loop` does).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from kdjax import parallel
from kdjax.data.batching import batches_per_epoch
from kdjax.errors import KdjaxError
from kdjax.losses import weighted_mean

State = dict[str, Any]  # {'step': int32 [], 'params': PyTree, 'opt_state': PyTree, ...}
# forward(params, batch, dropout_rng) -> outputs (in training mode)
Forward = Callable[[Any, dict, jax.Array], Any]
# per_example_loss(outputs, batch) -> [B], or ([B], {name: [B]}) with parts to log
PerExampleLoss = Callable[[Any, dict], Any]
# prepare(state, frozen, batch, rng) -> (batch, dropout_rng, metrics): batch-side
# work before differentiation (re-segmenting text, a frozen teacher's outputs)
Prepare = Callable[[State, Any, dict, jax.Array], tuple[dict, jax.Array, dict]]


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


def phase_optimizer(section, total_steps: int) -> optax.GradientTransformation:
  """The optimiser of a phase from its config section (learning_rate,
  warmup_fraction, weight_decay)."""
  return make_optimizer(Schedule(section.learning_rate, total_steps,
                                 int(section.warmup_fraction * total_steps),
                                 section.weight_decay))


def steps_for(num_examples: int, batch_size: int, epochs: float, bucketed: bool = False
              ) -> int:
  """Optimiser steps of `epochs` passes over `num_examples` (`batches_per_epoch`)."""
  if num_examples < batch_size:
    raise KdjaxError(f'{num_examples} training examples is fewer than one batch of '
                     f'{batch_size}; lower the batch size')
  return max(1, int(round(epochs * batches_per_epoch(num_examples, batch_size, bucketed))))


def init_state(params, tx: optax.GradientTransformation) -> State:
  return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}


def apply_gradients(state: State, loss_fn: Callable, tx: optax.GradientTransformation,
                    has_aux: bool = False) -> tuple[State, dict[str, jax.Array]]:
  """Differentiates `loss_fn(params) -> scalar` and applies one optimiser update.

  With `has_aux`, `loss_fn` returns `(loss, aux)` and the dict `aux` joins the
  metrics. Other entries of `state` (a policy's state) are carried over.
  """
  out, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(state['params'])
  loss, aux = out if has_aux else (out, {})
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  new_state = {**state, 'step': state['step'] + 1,
               'params': optax.apply_updates(state['params'], updates),
               'opt_state': opt_state}
  return new_state, {'loss': loss, 'grad_norm': optax.global_norm(grads), **aux}


def weighted_loss_fn(forward: Forward, per_example_loss: PerExampleLoss, batch: dict,
                     rng: jax.Array) -> Callable:
  """`params -> (weighted mean loss, {part: weighted mean})` over `batch['weights']`
  (padding rows weigh 0)."""
  def loss_fn(params):
    per_example = per_example_loss(forward(params, batch, rng), batch)
    parts = {}
    if isinstance(per_example, tuple):
      per_example, parts = per_example
    weights = batch['weights']
    return weighted_mean(per_example, weights), {k: weighted_mean(v, weights)
                                                 for k, v in parts.items()}
  return loss_fn


def make_step(name: str, forward: Forward, per_example_loss: PerExampleLoss,
              prepare: Prepare | None = None, with_frozen: bool = False) -> Callable:
  """The train step `(state, batch, rng, *, tx)` (or `(state, frozen, batch, rng,
  *, tx)` `with_frozen`) that folds the step into `rng`, optionally `prepare`s the
  batch, and takes one optimiser step on the weighted mean of `per_example_loss`.

  `name` names the compiled program (profiles, the compilation cache's log).
  """
  def core(state, frozen, batch, rng, tx):
    rng = jax.random.fold_in(rng, state['step'])
    extra = {}
    if prepare is not None:
      batch, rng, extra = prepare(state, frozen, batch, rng)
    state, metrics = apply_gradients(state, weighted_loss_fn(forward, per_example_loss,
                                                             batch, rng), tx, has_aux=True)
    return state, {**metrics, **extra}

  if with_frozen:
    def step(state: State, frozen, batch: dict, rng: jax.Array, *, tx):
      return core(state, frozen, batch, rng, tx)
  else:
    def step(state: State, batch: dict, rng: jax.Array, *, tx):
      return core(state, None, batch, rng, tx)
  step.__name__ = step.__qualname__ = name
  return step


def encoder_inputs(batch: dict, prefix: str = '') -> tuple[jax.Array, jax.Array, jax.Array]:
  """(input_ids, token_type_ids, attention_mask) of a batch, each [B, L]."""
  return (batch[prefix + 'input_ids'], batch[prefix + 'token_type_ids'],
          batch[prefix + 'attention_mask'])


def training_forward(model: nn.Module, output: str = 'logits', *extra_inputs: str) -> Forward:
  """The forward pass of a `kdjax.models` classifier in training mode (dropout
  on): `model.apply(params, ids, types, mask, *batch[extra_inputs])[output]`."""
  def forward(params, batch, rng):
    out = model.apply({'params': params}, *encoder_inputs(batch),
                      *(batch[k] for k in extra_inputs), deterministic=False,
                      rngs={'dropout': rng})
    return out[output]
  return forward


def predict_logits(params, batch: dict[str, jax.Array], *, model: nn.Module) -> jax.Array:
  """Deterministic forward pass: logits [B, C] (or scores [B, 1])."""
  return model.apply({'params': params}, *encoder_inputs(batch))['logits']


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

  def step(state, batch, rng):
    return jitted(state, frozen, batch, rng)
  # Lowered like a `jax.jit` function of (state, batch, rng), so `start_phase`
  # compiles either kind ahead of its first call.
  step.lower = lambda state, batch, rng: jitted.lower(state, frozen, batch, rng)
  return step


def jit_predict(model: nn.Module, mesh: Mesh, predict_fn: Callable = predict_logits
                ) -> Callable:
  """Jits `predict_fn(params, batch, *, model)`: params replicated, batch split on `data`."""
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(functools.partial(predict_fn, model=model),
                 in_shardings=(rep, data), out_shardings=data)


@dataclasses.dataclass(frozen=True)
class Start:
  """A phase's initial train state (replicated) and its jitted step."""
  state: State
  train_step: Callable


def start_phase(params, step_fn: Callable, tx: optax.GradientTransformation, mesh: Mesh,
                frozen=None, compile_for: list[dict[str, jax.ShapeDtypeStruct]] | None = None,
                **step_static) -> Start:
  """The initial state of `params` under `tx` and the jitted `step_fn`.

  With `compile_for` (the shapes of the global batches, one per bucket length,
  `batching.batch_shapes`) the step is compiled here too, so that its first
  call finds the program ready: run on a background thread, the start-up
  (initialisation and compilation, seconds on a CPU) overlaps other work such
  as a teacher pass. `frozen`: params passed to `step_fn(state, frozen, batch,
  rng)` at every call (`jit_train_step_frozen`).
  """
  state = parallel.replicate(init_state(params, tx), mesh)
  if frozen is not None:
    jitted = jit_train_step_frozen(step_fn, mesh, frozen, tx=tx, **step_static)
  else:
    jitted = jit_train_step(step_fn, mesh, tx=tx, **step_static)
  sharding = parallel.batch_sharded(mesh)
  for shapes in compile_for or ():
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
             for k, v in shapes.items()}
    jitted.lower(state, batch, jax.random.PRNGKey(0)).compile()
  return Start(state, jitted)
