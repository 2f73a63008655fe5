"""Models of mixed-vocabulary distillation.

`DualVocabBert` (Stage I) is the teacher encoder reading text in which some
words are written with the student vocabulary: those positions are embedded by
the student table (width d_S) brought to the teacher's width by a trainable
up-projection; two MLM softmaxes, one per vocabulary, both tied to their
embedding tables. `MlmStudent` (Stage II) is the small student with its own
vocabulary, an MLM head tied to its embeddings, and the projection shared by all
layers for the hidden-state loss, held in the same parameter tree.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.models.bert import BertConfig, BertEncoder

TEACHER_VOCAB, STUDENT_VOCAB = 0, 1  # which vocabulary a position is written in


def gather_positions(hidden: jax.Array, positions: jax.Array) -> jax.Array:
  """[B, L, H], [B, M] -> [B, M, H]."""
  return jnp.take_along_axis(hidden, positions[..., None], axis=1)


class MlmTransform(nn.Module):
  """BERT's prediction transform: dense, gelu, LayerNorm."""
  config: BertConfig

  @nn.compact
  def __call__(self, h):
    init = nn.initializers.normal(stddev=self.config.initializer_range)
    h = nn.gelu(nn.Dense(h.shape[-1], kernel_init=init, name='dense')(h), approximate=False)
    return nn.LayerNorm(epsilon=self.config.layer_norm_eps, name='LayerNorm')(h)


def _word_table(encoder: nn.Module) -> jax.Array:
  return encoder.variables['params']['embeddings']['word_embeddings']['embedding']


class DualVocabBert(nn.Module):
  """The teacher encoder with a second (student) vocabulary; see the module docstring."""
  config: BertConfig        # the teacher's
  student_vocab_size: int
  student_width: int        # d_S, the student's embedding width

  @nn.compact
  def __call__(self, input_ids, vocab_ids, token_type_ids, attention_mask,
               mlm_positions=None, *, deterministic: bool = True,
               output_hidden_states: bool = False):
    cfg = self.config
    init = nn.initializers.normal(stddev=cfg.initializer_range)
    student_table = self.param('student_embeddings', init,
                               (self.student_vocab_size, self.student_width))
    up = self.param('student_up', nn.initializers.lecun_normal(),
                    (self.student_width, cfg.hidden_size))
    is_student = vocab_ids == STUDENT_VOCAB
    student_vectors = jnp.take(student_table, jnp.where(is_student, input_ids, 0), axis=0) @ up
    encoder = BertEncoder(cfg, name='bert')
    out = encoder(jnp.where(is_student, 0, input_ids), token_type_ids, attention_mask,
                  deterministic=deterministic, output_hidden_states=output_hidden_states,
                  word_override=(student_vectors, is_student))
    if mlm_positions is None:
      return out
    h = MlmTransform(cfg, name='mlm_transform')(gather_positions(out['last_hidden_state'],
                                                                 mlm_positions))
    teacher_bias = self.param('teacher_mlm_bias', nn.initializers.zeros, (cfg.vocab_size,))
    student_bias = self.param('student_mlm_bias', nn.initializers.zeros,
                              (self.student_vocab_size,))
    out['teacher_logits'] = h @ _word_table(encoder).T + teacher_bias
    out['student_logits'] = h @ (student_table @ up).T + student_bias
    return out


class MlmStudent(nn.Module):
  """Student encoder + tied MLM head + the shared projection U.

  `projection` 'down': U [d_T, d_S] (teacher states mapped to the student's
  width); 'up': U [d_S, d_T].
  """
  config: BertConfig        # the student's (its own vocabulary and width)
  teacher_width: int
  projection: str = 'down'

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, mlm_positions, *,
               deterministic: bool = True):
    cfg = self.config
    encoder = BertEncoder(cfg, name='bert')
    out = encoder(input_ids, token_type_ids, attention_mask, deterministic=deterministic,
                  output_hidden_states=True)
    h = MlmTransform(cfg, name='mlm_transform')(gather_positions(out['last_hidden_state'],
                                                                 mlm_positions))
    bias = self.param('mlm_bias', nn.initializers.zeros, (cfg.vocab_size,))
    out['mlm_logits'] = h @ _word_table(encoder).T + bias
    shape = ((self.teacher_width, cfg.hidden_size) if self.projection == 'down'
             else (cfg.hidden_size, self.teacher_width))
    out['projection'] = self.param('projection', nn.initializers.lecun_normal(), shape)
    return out
