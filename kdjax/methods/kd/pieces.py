"""Plain KD's pure pieces: the per-example losses and the train steps built from them.

A student learns from its teachers' logits (one teacher, or several with fixed
weights) and, optionally, from the first teacher's hidden states and attention
distributions layer by layer (`LayerTargets`); for those the frozen teacher
runs inside the jitted step. Imports jax, flax and optax only (through
`kdjax.losses` and `kdjax.steps`), so it can be used in other JAX code as it is.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses import (attention_kl, distillation_loss, hidden_state_mse,
                          multi_teacher_loss)
from kdjax.steps import PerExampleLoss, encoder_inputs, make_step, training_forward

CLASSIFIER_PARTS = ('bert', 'classifier')  # the parts of a student that are evaluated and exported


def classifier_loss(*, alpha: float, temperature: float, regression: bool) -> PerExampleLoss:
  """`α·hard + (1−α)·τ²·soft` per example for `batch['teacher_logits']` [B, C] when
  the batch has them, the hard loss alone otherwise (a teacher's fine-tuning)."""
  def loss(logits, batch):
    return distillation_loss(logits, batch['labels'], batch.get('teacher_logits'),
                             alpha=alpha, temperature=temperature, regression=regression)
  return loss


def multi_teacher_classifier_loss(teacher_weights, *, alpha: float, temperature: float,
                                  regression: bool) -> PerExampleLoss:
  """`kdjax.losses.multi_teacher_loss` per example for `batch['teacher_logits']`
  [B, K, C]; `teacher_weights`: [B, K], or a tuple of K weights for every instance."""
  def loss(out, batch):
    weights = teacher_weights
    if isinstance(weights, tuple):
      weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32),
                                 batch['teacher_logits'].shape[:2])
    return multi_teacher_loss(out, batch['labels'], batch['teacher_logits'], weights,
                              alpha=alpha, temperature=temperature, regression=regression)
  return loss


def classifier_step(model: nn.Module, *, alpha: float, temperature: float,
                    regression: bool) -> Callable:
  """The train step `(state, batch, rng, *, tx)` of a classifier on `classifier_loss`."""
  return make_step('classifier_train_step', training_forward(model),
                   classifier_loss(alpha=alpha, temperature=temperature,
                                   regression=regression))


@dataclasses.dataclass(frozen=True)
class LayerTargets:
  """Which student states learn from which teacher states, and how much.

  `layer_map[l]`: the teacher layer (0-based) student layer l is matched with.
  The hidden-state loss also matches the embedding outputs (hidden state 0).
  """
  layer_map: tuple[int, ...]
  hidden_weight: float = 0.0
  attention_weight: float = 0.0

  @property
  def on(self) -> bool:
    return self.hidden_weight > 0 or self.attention_weight > 0

  @property
  def hidden_pairs(self) -> tuple[tuple[int, int], ...]:
    """(student, teacher) hidden-state indices: embeddings, then each layer's output."""
    return ((0, 0),) + tuple((l + 1, t + 1) for l, t in enumerate(self.layer_map))

  @property
  def attention_pairs(self) -> tuple[tuple[int, int], ...]:
    """(student, teacher) layer indices of the attention distributions."""
    return tuple(enumerate(self.layer_map))


def projection_names(num_layers: int) -> tuple[str, ...]:
  """The projections' names in `params['projection']`, one per hidden-state pair."""
  return ('embeddings',) + tuple(f'layer_{i}' for i in range(num_layers))


def init_projections(seed: int, num_layers: int, student_width: int, teacher_width: int
                     ) -> dict[str, jax.Array]:
  """One W [d_S, d_T] per hidden-state pair (LeCun normal), mapping the student's
  states up to the teacher's width. The student is projected, not the teacher:
  a learned map applied to the teacher would let both sides shrink towards 0
  together, which the loss would reward."""
  init = nn.initializers.lecun_normal()
  keys = jax.random.split(jax.random.PRNGKey(seed), num_layers + 1)
  return {name: init(k, (student_width, teacher_width), jnp.float32)
          for name, k in zip(projection_names(num_layers), keys)}


def classifier_params(params) -> dict:
  """A student's classifier (encoder and head) without what only its training
  uses (the projections): what is evaluated, counted and exported."""
  return {k: params[k] for k in CLASSIFIER_PARTS}


def _projections(params, num_layers: int):
  if 'projection' not in params:
    return None  # same widths: states are compared as they are
  return [params['projection'][name] for name in projection_names(num_layers)]


def teacher_targets(teacher: nn.Module, layers: LayerTargets) -> Callable:
  """`prepare(state, teacher_params, batch, rng)` for `make_step`: the frozen
  teacher reads the batch (deterministic) and its hidden states
  (`batch['teacher_hidden']`) and attentions (`batch['teacher_attentions']`)
  join it, gradient stopped."""
  returned = dict(output_hidden_states=layers.hidden_weight > 0,
                  output_attentions=layers.attention_weight > 0)

  def prepare(state, teacher_params, batch, rng):
    out = teacher.apply({'params': teacher_params}, *encoder_inputs(batch), **returned)
    targets = {}
    if 'hidden_states' in out:
      targets['teacher_hidden'] = out['hidden_states']
    if 'attentions' in out:
      targets['teacher_attentions'] = out['attentions']
    return {**batch, **jax.lax.stop_gradient(targets)}, rng, {}
  return prepare


def layer_forward(model: nn.Module, layers: LayerTargets) -> Callable:
  """The student's training forward pass with the states `layers` compares,
  and its projections (`params['projection']`, None at equal widths)."""
  returned = dict(output_hidden_states=layers.hidden_weight > 0,
                  output_attentions=layers.attention_weight > 0)

  def forward(params, batch, rng):
    out = model.apply({'params': classifier_params(params)}, *encoder_inputs(batch),
                      deterministic=False, rngs={'dropout': rng}, **returned)
    return {**out, 'projections': _projections(params, len(layers.layer_map))}
  return forward


def layer_loss(layers: LayerTargets, logit_loss: PerExampleLoss) -> PerExampleLoss:
  """`logit_loss + hidden_weight · hidden_state_mse + attention_weight ·
  attention_kl` per example, with each part to log, against the teacher's
  states in the batch (`teacher_targets`, or the same arrays from a store)."""
  def loss(out, batch):
    total = logit_loss(out['logits'], batch)
    parts = {'logit_loss': total}
    mask = batch['attention_mask']
    if layers.hidden_weight > 0:
      parts['hidden_loss'] = hidden_state_mse(batch['teacher_hidden'], out['hidden_states'],
                                              layers.hidden_pairs, mask, out['projections'])
      total = total + layers.hidden_weight * parts['hidden_loss']
    if layers.attention_weight > 0:
      parts['attention_loss'] = attention_kl(batch['teacher_attentions'], out['attentions'],
                                             layers.attention_pairs, mask)
      total = total + layers.attention_weight * parts['attention_loss']
    return total, parts
  return loss


def distill_step(model: nn.Module, *, alpha: float, temperature: float, regression: bool,
                 teacher_weights: tuple[float, ...] | None = None,
                 teacher: nn.Module | None = None,
                 layers: LayerTargets | None = None) -> Callable:
  """A student's train step on its teachers' logits (and, with `layers`, the
  first teacher's hidden states and attentions).

  `batch['teacher_logits']`: [B, C] from one teacher (`teacher_weights=None`),
  or [B, K, C] weighted by `teacher_weights` (K fixed weights). Without layer
  targets it is `(state, batch, rng, *, tx)` (for one teacher `classifier_step`
  itself); with them `(state, teacher_params, batch, rng, *, tx)`: the frozen
  `teacher` reads the batch inside the step (no host round trip) and
  `layer_loss` adds the weighted hidden-state and attention losses.
  """
  if teacher_weights is None:
    logit_loss = classifier_loss(alpha=alpha, temperature=temperature, regression=regression)
  else:
    logit_loss = multi_teacher_classifier_loss(tuple(teacher_weights), alpha=alpha,
                                               temperature=temperature, regression=regression)
  if layers is None or not layers.on:
    if teacher_weights is None:
      return classifier_step(model, alpha=alpha, temperature=temperature,
                             regression=regression)
    return make_step('multi_teacher_step', training_forward(model), logit_loss)
  if teacher is None:
    raise ValueError('layer targets need the teacher model')
  return make_step('layer_distill_step', layer_forward(model, layers),
                   layer_loss(layers, logit_loss), teacher_targets(teacher, layers),
                   with_frozen=True)
