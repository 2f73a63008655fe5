"""Pure knowledge-distillation losses. Every loss returns one value per example.

Shapes are in the argument names' docstrings: B examples, C classes, K
teachers, L positions, d widths, h attention heads. Reduction over examples
and masking of padded ones are explicit and left to `weighted_mean`, so padded
examples (weight 0) never reach a gradient; the layer-wise losses also mask
padded positions within an example.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.errors import KdjaxError


def hard_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """CE against gold integer labels. logits [B, C], labels [B] -> [B]."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def soft_cross_entropy(student_logits: jax.Array, target_probs: jax.Array,
                       temperature: float = 1.0) -> jax.Array:
  """τ² · CE(q, softmax(z_S/τ)) for given target probabilities q [B, C] -> [B].

  The τ² factor keeps soft-target gradients on the scale of the hard loss
  (Hinton et al. 2015). With averaged ensemble probabilities as q this is the
  MT-DNN-KD soft loss.
  """
  log_probs = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  return -(temperature ** 2) * jnp.sum(target_probs * log_probs, axis=-1)


def kd_cross_entropy(student_logits: jax.Array, teacher_logits: jax.Array,
                     temperature: float = 1.0) -> jax.Array:
  """Hinton KD: τ² · CE(softmax(z_T/τ), softmax(z_S/τ)). [B, C], [B, C] -> [B]."""
  target = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits) / temperature, axis=-1)
  return soft_cross_entropy(student_logits, target, temperature)


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Regression loss: (s - t)². predictions [B] or [B, 1], targets [B] -> [B]."""
  return jnp.square(predictions.reshape(targets.shape) - targets)


def distillation_loss(student_out: jax.Array, labels: jax.Array,
                      teacher_out: jax.Array | None, *, alpha: float,
                      temperature: float, regression: bool) -> jax.Array:
  """α · hard + (1 − α) · soft, per example -> [B].

  Classification: student_out, teacher_out are logits [B, C], labels [B] ints;
  soft is `kd_cross_entropy`. Regression: outputs are scores [B, 1] (or [B]),
  labels [B] floats; both terms are squared errors. `teacher_out=None` (or
  α = 1) gives the hard loss alone.
  """
  if regression:
    hard = squared_error(student_out, labels.astype(jnp.float32))
  else:
    hard = hard_cross_entropy(student_out, labels)
  if teacher_out is None:
    return hard
  if regression:
    soft = squared_error(student_out, jax.lax.stop_gradient(teacher_out).reshape(labels.shape))
  else:
    soft = kd_cross_entropy(student_out, teacher_out, temperature)
  return alpha * hard + (1.0 - alpha) * soft


def teacher_kd_losses(student_out: jax.Array, labels: jax.Array, teacher_out: jax.Array, *,
                      temperature: float, regression: bool) -> jax.Array:
  """KD(p_Tk, z_S) for every teacher: [B, C], [B], [B, K, C] -> [B, K]."""
  soft_only = lambda t: distillation_loss(student_out, labels, t, alpha=0.0,
                                          temperature=temperature, regression=regression)
  return jax.vmap(soft_only, in_axes=1, out_axes=1)(teacher_out)


def multi_teacher_loss(student_out: jax.Array, labels: jax.Array, teacher_out: jax.Array,
                       teacher_weights: jax.Array, *, alpha: float, temperature: float,
                       regression: bool) -> jax.Array:
  """α · gold loss + (1 − α) · Σ_k w_jk · KD(p_Tk, z_S), per instance -> [B]."""
  hard = distillation_loss(student_out, labels, None, alpha=1.0, temperature=1.0,
                           regression=regression)
  kd = teacher_kd_losses(student_out, labels, teacher_out, temperature=temperature,
                         regression=regression)
  weights = jax.lax.stop_gradient(teacher_weights)
  return alpha * hard + (1.0 - alpha) * jnp.sum(weights * kd, axis=-1)


def mean_over_positions(values: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, L], [B, L] -> [B]: the mean over each example's unmasked positions."""
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def hidden_state_mse(teacher_hidden: Sequence[jax.Array], student_hidden: Sequence[jax.Array],
                     pairs: Sequence[tuple[int, int]], mask: jax.Array,
                     projections=None, project: str = 'student') -> jax.Array:
  """Σ over `pairs` (s, t) of MSE(h_S^(s), h_T^(t)), through projections -> [B].

  teacher_hidden / student_hidden: hidden states as the encoder returns them
  (index 0 the embeddings, i the output of layer i), each [B, L, d_T] / [B, L, d_S].
  `projections`: None (same widths), one matrix for every pair, or a sequence
  with one per pair (None entries: that pair is compared as it is).
  `project='student'`: W [d_S, d_T] maps the student state up to the teacher's
  width, MSE(h_S W, h_T); 'teacher': W [d_T, d_S], MSE(h_T W, h_S). MSE: mean
  over features, then over the positions where `mask` [B, L] is 1. Computed in
  float32 whatever the compute dtype; no gradient reaches the teacher.
  """
  if project not in ('student', 'teacher'):
    raise KdjaxError(f"projection side {project!r}: use 'student' or 'teacher'")
  if projections is None or not isinstance(projections, (list, tuple)):
    projections = [projections] * len(pairs)
  if len(projections) != len(pairs):
    raise KdjaxError(f'{len(projections)} projections for {len(pairs)} layer pairs')
  total = jnp.zeros(mask.shape[0], jnp.float32)
  for (s, t), w in zip(pairs, projections):
    h_t = jax.lax.stop_gradient(teacher_hidden[t]).astype(jnp.float32)
    h_s = student_hidden[s].astype(jnp.float32)
    if w is None:
      diff = h_s - h_t
    elif project == 'student':
      diff = h_s @ w.astype(jnp.float32) - h_t
    else:
      diff = h_t @ w.astype(jnp.float32) - h_s
    total = total + mean_over_positions(jnp.mean(jnp.square(diff), axis=-1), mask)
  return total


def attention_kl(teacher_attentions: Sequence[jax.Array],
                 student_attentions: Sequence[jax.Array], pairs: Sequence[tuple[int, int]],
                 mask: jax.Array) -> jax.Array:
  """Σ over `pairs` (s, t) of KL(A_T^(t) ‖ A_S^(s)) of attention distributions -> [B].

  Attentions as the encoder returns them: one [B, h, L, L] array per layer
  (index i: layer i), each row a query's distribution over the keys. Per
  query row, KL = Σ_k A_T log(A_T / A_S) over the keys where `mask` [B, L] is
  1; then the mean over heads and over the unmasked query positions. With
  different head counts both sides are first averaged over their heads (the
  mean of distributions is one), so any student can match any teacher.
  Computed in float32; no gradient reaches the teacher.
  """
  keys = mask[:, None, None, :] > 0
  tiny = jnp.finfo(jnp.float32).tiny  # log(0) of a vanished probability stays finite
  total = jnp.zeros(mask.shape[0], jnp.float32)
  for s, t in pairs:
    a_t = jax.lax.stop_gradient(teacher_attentions[t]).astype(jnp.float32)
    a_s = student_attentions[s].astype(jnp.float32)
    if a_t.shape[1] != a_s.shape[1]:
      a_t, a_s = a_t.mean(axis=1, keepdims=True), a_s.mean(axis=1, keepdims=True)
    log_ratio = jnp.log(jnp.maximum(a_t, tiny)) - jnp.log(jnp.maximum(a_s, tiny))
    per_query = jnp.sum(jnp.where(keys, a_t * log_ratio, 0.0), axis=-1)  # [B, h, L]
    total = total + mean_over_positions(per_query.mean(axis=1), mask)
  return total


def weighted_mean(per_example: jax.Array, weights: jax.Array) -> jax.Array:
  """Σ w·x / max(Σ w, 1e-9): padded examples carry weight 0. [B], [B] -> []."""
  weights = weights.astype(per_example.dtype)
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1e-9)
