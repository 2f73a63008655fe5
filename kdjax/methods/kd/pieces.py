"""Plain KD's pure pieces: the per-example loss and the train step built from it.

Imports jax, flax and optax only (through `kdjax.losses` and `kdjax.steps`), so
it can be used in other JAX code as it is.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from kdjax.losses import distillation_loss
from kdjax.steps import PerExampleLoss, make_step, training_forward


def classifier_loss(*, alpha: float, temperature: float, regression: bool) -> PerExampleLoss:
  """`α·hard + (1−α)·τ²·soft` per example for `batch['teacher_logits']` [B, C] when
  the batch has them, the hard loss alone otherwise (a teacher's fine-tuning)."""
  def loss(logits, batch):
    return distillation_loss(logits, batch['labels'], batch.get('teacher_logits'),
                             alpha=alpha, temperature=temperature, regression=regression)
  return loss


def classifier_step(model: nn.Module, *, alpha: float, temperature: float,
                    regression: bool) -> Callable:
  """The train step `(state, batch, rng, *, tx)` of a classifier on `classifier_loss`."""
  return make_step('classifier_train_step', training_forward(model),
                   classifier_loss(alpha=alpha, temperature=temperature,
                                   regression=regression))
