"""Pure knowledge-distillation losses. Every loss returns one value per example.

Shapes are in the argument names' docstrings: B examples, C classes. Reduction
and masking are explicit and left to `weighted_mean`, so padded examples
(weight 0) never reach a gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


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


def weighted_mean(per_example: jax.Array, weights: jax.Array) -> jax.Array:
  """Σ w·x / max(Σ w, 1e-9): padded examples carry weight 0. [B], [B] -> []."""
  weights = weights.astype(per_example.dtype)
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1e-9)
