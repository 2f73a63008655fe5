"""Transfer sets for task distillation: perturbed copies of the training texts,
labelled by the teacher, so that a small student learns the teacher's function
on many more inputs than the gold set has.

A copy masks some words and replaces others by words drawn from the training
texts (by frequency), in the manner of Tang et al. (2019); in a pair task a
share of the copies also takes its second text from another example, so that
the transfer set covers unrelated pairs too (the low end of a similarity
scale, the "no" of a paraphrase task), which perturbing words alone rarely
reaches. The teacher then answers every copy: a classification copy gets the
teacher's class as its label, a regression copy its score.

Everything is a pure function of (examples, settings, seed): the same inputs
give the same transfer set, so the teacher's outputs on it are stored once and
a stopped run resumes to the same data.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kdjax.data.sources import fingerprint
from kdjax.data.tasks import Examples
from kdjax.data.tokenize import encode
from kdjax.errors import KdjaxError


class Perturbation(NamedTuple):
  """How a copy differs from its example (`distill.augment_*` keys)."""
  copies: int           # perturbed copies per training example; 0 = no transfer set
  mask_prob: float      # chance that a word becomes the mask token
  replace_prob: float   # chance that a word becomes a word drawn from the training texts
  repair_prob: float    # pair tasks: chance that a copy's second text is another example's


def perturbation_of(section) -> Perturbation:
  """The `distill.augment_*` keys of distill section `section` (each
  range-checked with the config; here what ties keys together)."""
  p = Perturbation(int(section.augment_copies), float(section.augment_mask_prob),
                   float(section.augment_replace_prob), float(section.augment_repair_prob))
  if p.mask_prob + p.replace_prob > 1.0:
    raise KdjaxError('distill.augment_mask_prob + distill.augment_replace_prob must be <= 1, '
                     f'got {p.mask_prob} + {p.replace_prob}')
  if p.copies and section.alpha >= 1.0:
    raise KdjaxError('distill.augment_copies needs KD (distill.alpha < 1): the teacher labels '
                     'the transfer set')
  return p


def perturb_words(text: str, rng: np.random.Generator, pool: list[str], mask_prob: float,
                  replace_prob: float, mask_token: str) -> str:
  """`text` with each whitespace-separated word masked with chance `mask_prob`
  or replaced by a random word of `pool` with chance `replace_prob`."""
  words_in = text.split()
  words = []
  for word, u in zip(words_in, rng.random(len(words_in))):
    if u < mask_prob:
      words.append(mask_token)
    elif u < mask_prob + replace_prob:
      words.append(pool[int(rng.integers(len(pool)))])
    else:
      words.append(word)
  return ' '.join(words)


def transfer_set(examples: Examples, perturbation: Perturbation, seed: int,
                 mask_token: str = '[MASK]') -> Examples:
  """`perturbation.copies` perturbed copies of every example (copy-major order);
  labels are placeholders (zeros) until the teacher answers the copies."""
  if perturbation.copies == 0 or len(examples) == 0:
    raise KdjaxError('a transfer set needs distill.augment_copies >= 1 and training examples')
  rng = np.random.default_rng(seed)
  texts = examples.texts_a + (examples.texts_b or [])
  pool = [word for text in texts for word in text.split()] or [mask_token]
  n = len(examples)
  copy = lambda text: perturb_words(text, rng, pool, perturbation.mask_prob,
                                    perturbation.replace_prob, mask_token)
  texts_a, texts_b = [], None if examples.texts_b is None else []
  for _ in range(perturbation.copies):
    for i in range(n):
      texts_a.append(copy(examples.texts_a[i]))
      if texts_b is not None:
        other = int(rng.integers(n)) if rng.random() < perturbation.repair_prob else i
        texts_b.append(copy(examples.texts_b[other]))
  return Examples(texts_a, texts_b, np.zeros(n * perturbation.copies, examples.labels.dtype),
                  f'{examples.origin} (transfer set: {perturbation.copies} perturbed copies)')


class TransferSet(NamedTuple):
  """A transfer set encoded for the teacher and for the student."""
  examples: Examples    # the perturbed copies (placeholder labels)
  teacher_arrays: dict  # encoder inputs in the teacher's vocabulary
  student_arrays: dict  # encoder inputs in the student's (the same dict when shared)
  key: str              # fingerprint of the copies: the key of the teacher's stored outputs


def encoded_transfer_set(examples: Examples, perturbation: Perturbation, seed: int,
                         teacher_tokenizer, student_tokenizer, max_length: int) -> TransferSet:
  """The transfer set of `examples`, encoded with both tokenizers (the mask
  word is the teacher's mask token, which a BERT-style student vocabulary
  reads as its own)."""
  copies = transfer_set(examples, perturbation, seed, teacher_tokenizer.mask_token)
  teacher_arrays = encode(teacher_tokenizer, copies, max_length)
  student_arrays = (teacher_arrays if student_tokenizer is teacher_tokenizer
                    else encode(student_tokenizer, copies, max_length))
  return TransferSet(copies, teacher_arrays, student_arrays, fingerprint(copies))


def teacher_labels(teacher_outputs: np.ndarray, regression: bool,
                   teacher_weights: tuple[float, ...] | None = None) -> np.ndarray:
  """The teacher's answers [N] from its outputs [N, C] (classes: the argmax,
  int32) or [N, 1] (regression: the score, float32). Several teachers' outputs
  [N, K, C] answer by their `teacher_weights` (normalised; None: equal): the
  weighted mean score, or the class of the weighted mean probabilities."""
  outputs = np.asarray(teacher_outputs, np.float64)
  if outputs.ndim == 3:
    k = outputs.shape[1]
    w = np.asarray(teacher_weights if teacher_weights is not None else (1.0,) * k)
    w = (w / w.sum())[None, :, None]
    if not regression:
      outputs = np.exp(outputs - outputs.max(-1, keepdims=True))
      outputs = outputs / outputs.sum(-1, keepdims=True)
    outputs = (w * outputs).sum(1)
  if regression:
    return outputs.reshape(-1).astype(np.float32)
  return np.argmax(outputs, axis=-1).astype(np.int32)


def labelled(transfer: TransferSet, teacher_outputs: np.ndarray, regression: bool,
             teacher_weights: tuple[float, ...] | None = None) -> dict:
  """The student's training arrays of `transfer`: its encoder inputs, the
  teacher's outputs as `teacher_logits` and the teacher's answers as `labels`."""
  outputs = np.asarray(teacher_outputs, np.float32)
  return {**transfer.student_arrays, 'teacher_logits': outputs,
          'labels': teacher_labels(outputs, regression, teacher_weights)}


def with_transfer_set(train: dict, transfer: dict) -> dict:
  """The training arrays `train` followed by the transfer set's `transfer`
  (the same columns, row-concatenated)."""
  if set(train) != set(transfer):
    raise KdjaxError(f'transfer set columns {sorted(transfer)} differ from the training '
                     f'columns {sorted(train)}')
  return {k: np.concatenate([np.asarray(train[k]), np.asarray(transfer[k]).astype(
      np.asarray(train[k]).dtype)]) for k in train}
