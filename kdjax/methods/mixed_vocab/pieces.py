"""Mixed-vocabulary distillation: pure pieces.

`mixed_segmentation` turns the per-word pieces of `kdjax.data.vocab.segment_words`
into one sequence in which each word is, with probability p_SV, written with the
student vocabulary and otherwise with the teacher's, plus MLM masks and targets,
all with static shapes (jittable, one compilation). `dual_mlm_loss` scores a
masked position in the vocabulary it was written with; `shared_projection_loss`
is the layer-wise hidden-state MSE through one projection shared by all layers.

Shapes: B sequences, L positions, W words, P pieces per vocabulary, M masked
positions per sequence, V vocabulary sizes, d_T / d_S teacher / student widths.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.errors import KdjaxError
from kdjax.losses import hidden_state_mse, mean_over_positions, weighted_mean
from kdjax.models.mixed import STUDENT_VOCAB, TEACHER_VOCAB
from kdjax.steps import make_step
PROJECTIONS = ('down', 'up')


@dataclasses.dataclass(frozen=True)
class VocabIds:
  """The special ids of one vocabulary, and where its ordinary tokens start."""
  size: int
  cls: int
  sep: int
  pad: int
  mask: int
  first_regular: int   # random replacement tokens are drawn from [first_regular, size)

  @classmethod
  def of(cls, tokenizer) -> 'VocabIds':
    vocab = tokenizer.get_vocab()
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                tokenizer.mask_token_id]
    if any(s is None for s in specials):
      raise KdjaxError('the vocabulary needs [CLS], [SEP], [PAD] and [MASK] tokens')
    # BERT vocabularies put [unused*] and specials first; "!" starts the real tokens.
    first = vocab.get('!', max(specials) + 1)
    return cls(len(vocab), *specials, first)


def p_student_at(step, total_steps: int, final: float, ramp_fraction: float):
  """p_SV: linear from 0 to `final` over the first `ramp_fraction` of the steps
  (`final` from the start when `ramp_fraction` is 0)."""
  if ramp_fraction <= 0:
    return jnp.asarray(final, jnp.float32)
  ramp = jnp.maximum(ramp_fraction * total_steps, 1.0)
  return final * jnp.clip(step / ramp, 0.0, 1.0)


def mixed_segmentation(rng: jax.Array, segments: dict[str, jax.Array], p_student, *,
                       max_length: int, max_predictions: int, mask_prob: float,
                       teacher: VocabIds, student: VocabIds) -> dict[str, jax.Array]:
  """One mixed-vocabulary MLM batch from per-word pieces in both vocabularies.

  segments: `teacher_ids|word|rank` and `student_ids|word|rank` [B, P],
  `teacher_length`, `student_length` [B, W] (see `segment_words`). Each word
  takes the student pieces with probability `p_student`; so do [CLS] and [SEP].
  Words that do not fit in `max_length` (with [CLS] and [SEP]) are dropped
  whole. Returns [B, L] `input_ids` (masked), `original_ids`, `vocab_ids`
  (0 teacher / 1 student), `token_type_ids`, `attention_mask`; [B, M]
  `mlm_positions`, `mlm_targets`, `mlm_vocab`, `mlm_weights`; and [B, W]
  `student_words` (which words were written with the student vocabulary).
  Masking follows BERT: of the chosen positions (each word piece with
  probability `mask_prob`, at most M), 80 % become [MASK], 10 % a random token
  of the position's vocabulary, 10 % stay.
  """
  k_words, k_specials, k_mask, k_kind, k_rand_t, k_rand_s = jax.random.split(rng, 6)
  t_len, s_len = segments['teacher_length'], segments['student_length']
  batch, _ = t_len.shape
  rows = jnp.arange(batch)[:, None]
  positions = jnp.arange(max_length)[None, :]

  word_valid = t_len > 0
  use_student = jax.random.bernoulli(k_words, p_student, t_len.shape) & word_valid
  lengths = jnp.where(use_student, s_len, t_len)
  fits = word_valid & (jnp.cumsum(lengths, axis=1) <= max_length - 2)
  lengths = jnp.where(fits, lengths, 0)
  offsets = 1 + jnp.cumsum(lengths, axis=1) - lengths   # first position of each word
  sep_at = 1 + jnp.sum(lengths, axis=1, keepdims=True)  # [B, 1]

  ids = jnp.zeros((batch, max_length), jnp.int32)
  vocab = jnp.zeros((batch, max_length), jnp.int32)
  for prefix, is_student in (('teacher_', False), ('student_', True)):
    word = segments[prefix + 'word']
    w = jnp.maximum(word, 0)
    keep = ((word >= 0) & (jnp.take_along_axis(use_student, w, 1) == is_student)
            & jnp.take_along_axis(fits, w, 1))
    pos = jnp.where(keep, jnp.take_along_axis(offsets, w, 1) + segments[prefix + 'rank'],
                    max_length)  # out of range: dropped by the scatter
    ids = ids.at[rows, pos].set(segments[prefix + 'ids'], mode='drop')
    if is_student:
      vocab = vocab.at[rows, pos].set(STUDENT_VOCAB, mode='drop')

  special_student = jax.random.bernoulli(k_specials, p_student, (batch, 2))
  cls_s, sep_s = special_student[:, :1], special_student[:, 1:]
  is_cls, is_sep = positions == 0, positions == sep_at
  ids = jnp.where(is_cls, jnp.where(cls_s, student.cls, teacher.cls), ids)
  ids = jnp.where(is_sep, jnp.where(sep_s, student.sep, teacher.sep), ids)
  vocab = jnp.where(is_cls, cls_s.astype(jnp.int32), vocab)
  vocab = jnp.where(is_sep, sep_s.astype(jnp.int32), vocab)
  attention_mask = (positions <= sep_at).astype(jnp.int32)
  ids = jnp.where(positions > sep_at, teacher.pad, ids)
  vocab = jnp.where(positions > sep_at, TEACHER_VOCAB, vocab)

  # MLM: word pieces chosen with probability mask_prob, the M lowest draws kept.
  draws = jax.random.uniform(k_mask, (batch, max_length))
  candidate = (positions >= 1) & (positions < sep_at) & (draws < mask_prob)
  neg_keys, mlm_positions = jax.lax.top_k(-jnp.where(candidate, draws, 2.0), max_predictions)
  mlm_weights = (neg_keys > -2.0).astype(jnp.float32)
  chosen = jnp.zeros((batch, max_length), jnp.float32).at[rows, mlm_positions].max(
      mlm_weights) > 0
  kind = jax.random.uniform(k_kind, (batch, max_length))
  is_s = vocab == STUDENT_VOCAB
  mask_id = jnp.where(is_s, student.mask, teacher.mask)
  random_id = jnp.where(
      is_s, jax.random.randint(k_rand_s, ids.shape, student.first_regular, student.size),
      jax.random.randint(k_rand_t, ids.shape, teacher.first_regular, teacher.size))
  input_ids = jnp.where(chosen & (kind < 0.8), mask_id,
                        jnp.where(chosen & (kind < 0.9), random_id, ids))
  return {'input_ids': input_ids, 'original_ids': ids, 'vocab_ids': vocab,
          'token_type_ids': jnp.zeros_like(ids), 'attention_mask': attention_mask,
          'mlm_positions': mlm_positions,
          'mlm_targets': jnp.take_along_axis(ids, mlm_positions, 1),
          'mlm_vocab': jnp.take_along_axis(vocab, mlm_positions, 1),
          'mlm_weights': mlm_weights, 'student_words': use_student & fits}


def _token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """[B, M, V], [B, M] -> [B, M]."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def mlm_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean CE over each sequence's masked positions. [B, M, V], [B, M], [B, M] -> [B]."""
  return mean_over_positions(_token_cross_entropy(logits, targets), weights)


def dual_mlm_loss(teacher_logits: jax.Array, student_logits: jax.Array, targets: jax.Array,
                  target_vocab: jax.Array, weights: jax.Array) -> jax.Array:
  """MLM with two softmaxes: a position is scored in the vocabulary it was written in.

  teacher_logits [B, M, V_T], student_logits [B, M, V_S], targets / target_vocab /
  weights [B, M] -> [B] (mean over each sequence's masked positions).
  """
  is_student = target_vocab == STUDENT_VOCAB
  ce_teacher = _token_cross_entropy(teacher_logits, jnp.where(is_student, 0, targets))
  ce_student = _token_cross_entropy(student_logits, jnp.where(is_student, targets, 0))
  return mean_over_positions(jnp.where(is_student, ce_student, ce_teacher), weights)


def shared_projection_loss(teacher_hidden: Sequence[jax.Array],
                           student_hidden: Sequence[jax.Array], projection: jax.Array,
                           layer_map: Sequence[int], mask: jax.Array,
                           direction: str = 'down') -> jax.Array:
  """Σ_l MSE(U · h_T^(m(l)), h_S^(l)) with one U for every layer -> [B]
  (`kdjax.losses.hidden_state_mse` with one shared projection).

  teacher_hidden / student_hidden: hidden states as the encoder returns them
  (index 0 the embeddings, i the output of layer i), each [B, L, d]. Student
  layer l (1-based) is matched with teacher hidden state `layer_map[l - 1]`.
  'down': U [d_T, d_S] maps the teacher to the student; 'up': U [d_S, d_T] maps
  the student to the teacher. MSE: mean over features, then over the positions
  where `mask` [B, L] is 1.
  """
  if direction not in PROJECTIONS:
    raise KdjaxError(f'projection direction {direction!r}: use one of {PROJECTIONS}')
  if len(layer_map) != len(student_hidden) - 1:
    raise KdjaxError(f'layer map {tuple(layer_map)} must name one teacher layer per '
                     f'student layer ({len(student_hidden) - 1})')
  pairs = tuple(enumerate(layer_map, start=1))
  return hidden_state_mse(teacher_hidden, student_hidden, pairs, mask, projection,
                          'teacher' if direction == 'down' else 'student')


# ------------------------------------------------------------------ train steps

@dataclasses.dataclass(frozen=True)
class Segmentation:
  """Static settings of `mixed_segmentation` for a run."""
  max_length: int
  max_predictions: int
  mask_prob: float
  teacher: VocabIds
  student: VocabIds

  def __call__(self, rng, segments, p_student):
    # In length buckets, the batch's `attention_mask` (`vocab.mixed_length_mask`, cut
    # to the bucket) carries the sequence length: static, one program per bucket.
    length = (segments['attention_mask'].shape[1] if 'attention_mask' in segments
              else self.max_length)
    return mixed_segmentation(rng, segments, p_student, max_length=length,
                              max_predictions=min(self.max_predictions, length),
                              mask_prob=self.mask_prob, teacher=self.teacher,
                              student=self.student)



def _sequence_weights(batch, mixed):
  """Padded rows and sequences without a masked position carry no loss."""
  return batch['weights'] * (jnp.sum(mixed['mlm_weights'], axis=1) > 0)


def dual_mlm_step(model, *, segmentation: Segmentation, p_final: float, ramp_fraction: float,
                  ramp_over: int):
  """Stage I's train step `(state, batch, rng, *, tx)`: dual-vocabulary MLM on
  freshly mixed text.

  batch: the per-word pieces of `segment_words` (+ weights); p_SV follows
  `p_student_at(step)`. Teacher encoder, student embeddings, up-projection and
  both MLM heads are trained together.
  """
  def prepare(state, frozen, batch, rng):
    seg_rng, dropout_rng = jax.random.split(rng)
    p = p_student_at(state['step'], ramp_over, p_final, ramp_fraction)
    mixed = segmentation(seg_rng, batch, p)
    share = weighted_mean(jnp.sum(mixed['vocab_ids'] * mixed['attention_mask'], 1)
                          / jnp.maximum(jnp.sum(mixed['attention_mask'], 1), 1),
                          batch['weights'])
    metrics = {'p_student': p, 'student_token_share': share,
               'student_words': mixed['student_words'].sum()}
    return {**mixed, 'weights': _sequence_weights(batch, mixed)}, dropout_rng, metrics

  def forward(params, mixed, rng):
    return model.apply({'params': params}, mixed['input_ids'], mixed['vocab_ids'],
                       mixed['token_type_ids'], mixed['attention_mask'],
                       mixed['mlm_positions'], deterministic=False, rngs={'dropout': rng})

  def loss(out, mixed):
    return dual_mlm_loss(out['teacher_logits'], out['student_logits'], mixed['mlm_targets'],
                         mixed['mlm_vocab'], mixed['mlm_weights'])

  return make_step('dual_mlm_step', forward, loss, prepare)


def student_distill_step(model, *, teacher, segmentation: Segmentation,
                         layer_map: tuple[int, ...], hidden_weight: float, projection: str):
  """Stage II's train step `(state, teacher_params, batch, rng, *, tx)`: student
  MLM + shared-projection hidden-state MSE to the (frozen) Stage-I teacher.

  Teacher and student read the same text, written entirely in the student
  vocabulary, so their positions line up token by token.
  """
  def prepare(state, teacher_params, batch, rng):
    seg_rng, dropout_rng = jax.random.split(rng)
    mixed = segmentation(seg_rng, batch, 1.0)
    teacher_hidden = jax.lax.stop_gradient(teacher.apply(
        {'params': teacher_params}, mixed['input_ids'], mixed['vocab_ids'],
        mixed['token_type_ids'], mixed['attention_mask'],
        output_hidden_states=True)['hidden_states'])
    return ({**mixed, 'weights': _sequence_weights(batch, mixed),
             'teacher_hidden': teacher_hidden}, dropout_rng, {})

  def forward(params, mixed, rng):
    return model.apply({'params': params}, mixed['input_ids'], mixed['token_type_ids'],
                       mixed['attention_mask'], mixed['mlm_positions'], deterministic=False,
                       rngs={'dropout': rng})

  def loss(out, mixed):
    mlm = mlm_loss(out['mlm_logits'], mixed['mlm_targets'], mixed['mlm_weights'])
    hidden = shared_projection_loss(mixed['teacher_hidden'], out['hidden_states'],
                                    out['projection'], layer_map, mixed['attention_mask'],
                                    projection)
    return mlm + hidden_weight * hidden, {'mlm_loss': mlm, 'hidden_loss': hidden}

  return make_step('student_distill_step', forward, loss, prepare, with_frozen=True)
