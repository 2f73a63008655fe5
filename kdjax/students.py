"""Student architectures and their initialisation (random or from teacher layers)."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from kdjax.errors import KdjaxError
from kdjax.models.bert import BertConfig, init_params
from kdjax.models.heads import BertClassifier


def student_config(teacher: BertConfig, s) -> BertConfig:
  """A student sharing the teacher's tokenizer (vocab, positions, token types)."""
  try:
    return dataclasses.replace(
        teacher, hidden_size=s.hidden_size, num_layers=s.num_layers, num_heads=s.num_heads,
        intermediate_size=s.intermediate_size)
  except ValueError as e:
    raise KdjaxError(f'student config: {e}') from None


def default_layer_map(num_student: int, num_teacher: int) -> tuple[int, ...]:
  """Evenly spaced teacher layers, always ending with the last one."""
  return tuple(int(round(x)) for x in np.linspace(num_teacher / num_student - 1,
                                                  num_teacher - 1, num_student))


def checked_layer_map(given, num_student: int, num_teacher: int, key: str
                      ) -> tuple[int, ...]:
  """`given` (a teacher layer, 0-based, per student layer), or evenly spaced
  (`default_layer_map`) when empty; `key` names the config key in errors."""
  layer_map = tuple(int(t) for t in given) or default_layer_map(num_student, num_teacher)
  if len(layer_map) != num_student or not all(0 <= t < num_teacher for t in layer_map):
    raise KdjaxError(f'{key} {layer_map} must name {num_student} teacher layers in '
                     f'[0, {num_teacher})')
  return layer_map


LAYER_CHOICES = ('evenly_spaced', 'first')


def chosen_layers(choice: str, num_student: int, num_teacher: int) -> tuple[int, ...]:
  """The teacher layers a `num_student`-layer student is built from:
  'evenly_spaced' (`default_layer_map`, ending with the last layer) or 'first'
  (the bottom `num_student` layers, as patient KD builds BERT-3 from BERT-12,
  which keeps the lower layers' input-near features intact)."""
  if choice == 'first':
    return tuple(range(num_student))
  if choice == 'evenly_spaced':
    return default_layer_map(num_student, num_teacher)
  raise KdjaxError(f'unknown student.layer_choice {choice!r}; use one of {LAYER_CHOICES}')


def init_student(config: BertConfig, num_outputs: int, seed: int, init: str,
                 teacher_config: BertConfig, teacher_params, teacher_layers=(),
                 layer_choice: str = 'evenly_spaced'):
  """(model, params) of a single-task student; see `initialise_encoder`."""
  model = BertClassifier(config, num_outputs)
  params = jax.tree.map(np.asarray, init_params(model, jax.random.PRNGKey(seed)))
  params['bert'] = initialise_encoder(params['bert'], config, init, teacher_config,
                                      teacher_params['bert'], teacher_layers, layer_choice)
  return model, params


def initialise_encoder(student_bert, config: BertConfig, init: str,
                       teacher_config: BertConfig, teacher_bert, teacher_layers=(),
                       layer_choice: str = 'evenly_spaced'):
  """A student encoder param tree, from its random init `student_bert` and `init`:

  'random' keeps it; 'teacher_embeddings' replaces the embedding tables by the
  teacher's, projected on their top principal directions when the student is
  narrower; 'teacher_layers' copies embeddings, pooler and the layers
  `teacher_layers` of the teacher (same widths needed), or when that is empty
  the layers `layer_choice` names (`chosen_layers`).
  """
  student_bert = dict(student_bert)
  if init == 'random':
    return student_bert
  if init == 'teacher_embeddings':
    student_bert['embeddings'] = _projected_embeddings(
        teacher_bert['embeddings'], student_bert['embeddings'], config.hidden_size)
    return student_bert
  if init != 'teacher_layers':
    raise KdjaxError(f"unknown student.init {init!r}; use 'random', 'teacher_layers' or "
                     "'teacher_embeddings'")
  widths = ('hidden_size', 'num_heads', 'intermediate_size')
  if any(getattr(config, w) != getattr(teacher_config, w) for w in widths):
    raise KdjaxError('student.init=teacher_layers needs the teacher\'s hidden_size, '
                     'num_heads and intermediate_size; use init=random for a narrower student')
  layer_map = tuple(teacher_layers) or chosen_layers(layer_choice, config.num_layers,
                                                     teacher_config.num_layers)
  if len(layer_map) != config.num_layers or not all(
      0 <= t < teacher_config.num_layers for t in layer_map):
    raise KdjaxError(f'student.teacher_layers {layer_map} must name {config.num_layers} '
                     f'teacher layers in [0, {teacher_config.num_layers})')
  student_bert['embeddings'] = teacher_bert['embeddings']
  student_bert['pooler'] = teacher_bert['pooler']
  for i, t in enumerate(layer_map):
    student_bert[f'layer_{i}'] = teacher_bert[f'layer_{t}']
  return jax.tree.map(np.array, student_bert)  # own copies, never aliases of the teacher


def _projected_embeddings(teacher_emb, student_emb, width: int):
  """Teacher embedding tables reduced to `width` dims by PCA of the word table.

  Keeps the lexical geometry the teacher learned, which a randomly initialised
  narrow student otherwise has to relearn from a small labelled set.
  """
  words = np.asarray(teacher_emb['word_embeddings']['embedding'], np.float64)
  mean = words.mean(0, keepdims=True)
  _, _, vt = np.linalg.svd(words - mean, full_matrices=False)
  basis = vt[:width].T  # [d_T, width]
  if basis.shape[1] < width:
    raise KdjaxError('student.init=teacher_embeddings needs hidden_size <= the teacher\'s')
  out = dict(student_emb)
  for table in ('word_embeddings', 'position_embeddings', 'token_type_embeddings'):
    t = np.asarray(teacher_emb[table]['embedding'], np.float64)
    # The three tables are summed, so only one of them carries the centring.
    centred = t - mean if table == 'word_embeddings' else t
    out[table] = {'embedding': (centred @ basis).astype(np.float32)}
  return out


def transferred_word_table(teacher_words: np.ndarray, piece_ids: np.ndarray,
                           piece_mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
  """A word table for another vocabulary, from the teacher's, at a smaller width.

  Each new token's vector is the mean of the teacher vectors of the pieces that
  spell it (`kdjax.data.vocab.teacher_pieces_of`), then the table is reduced to
  `width` dims on its top right-singular vectors (not centred: the mean word
  direction is kept, so `table @ basis.T` stays close to the teacher's vectors).
  teacher_words [V_T, d_T], piece_ids / piece_mask [V, P] -> (table [V, width],
  basis [d_T, width] with orthonormal columns).
  """
  if width > teacher_words.shape[1]:
    raise KdjaxError(f'a transferred word table needs width {width} <= the teacher\'s '
                     f'{teacher_words.shape[1]}')
  words = np.asarray(teacher_words, np.float64)
  mask = np.asarray(piece_mask, np.float64)[..., None]
  spelled = (words[piece_ids] * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
  _, _, vt = np.linalg.svd(spelled, full_matrices=False)
  basis = vt[:width].T
  return (spelled @ basis).astype(np.float32), basis.astype(np.float32)
