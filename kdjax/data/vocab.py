"""Student WordPiece vocabularies and per-word segmentation in two vocabularies.

`train_wordpiece` learns a small vocabulary on the distillation corpus and saves
it as a standard BERT `vocab.txt` (plus `tokenizer_config.json`), which
`transformers.AutoTokenizer` loads. `segment_words` splits texts into words once
(the teacher tokenizer's normaliser and pre-tokeniser) and records each word's
pieces in both vocabularies as fixed-shape arrays, so that the mixed
segmentation of `kdjax.methods.mixed_vocab` is a pure, jittable function.
"""
from __future__ import annotations

import json
import os
from typing import Iterable

import numpy as np

from kdjax import atomic
from kdjax.data import wordpiece
from kdjax.errors import KdjaxError

SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')


def train_wordpiece(texts: Iterable[str], vocab_size: int, out_dir: str,
                    lowercase: bool = True, min_frequency: int = 2) -> str:
  """Learns a WordPiece vocabulary of at most `vocab_size` tokens (the same one
  for the same texts, `kdjax.data.wordpiece`); returns `out_dir`.

  Written atomically: `out_dir` appears complete or not at all.
  """
  if vocab_size < len(SPECIAL_TOKENS) + 100:
    raise KdjaxError(f'student vocabulary size {vocab_size} is too small (at least 105)')
  tokens = wordpiece.learn_vocabulary(wordpiece.words_of(texts, lowercase), vocab_size,
                                      SPECIAL_TOKENS, min_frequency)
  with atomic.replacing(out_dir) as tmp:
    os.makedirs(tmp)
    with open(os.path.join(tmp, 'vocab.txt'), 'w', encoding='utf-8') as f:
      f.write(''.join(t + '\n' for t in tokens))
    with open(os.path.join(tmp, 'tokenizer_config.json'), 'w') as f:
      json.dump({'tokenizer_class': 'BertTokenizer', 'do_lower_case': lowercase,
                 'model_max_length': 512}, f, indent=2)
  return out_dir


def split_words(tokenizer, texts: list[str]) -> list[list[str]]:
  """Normalised words of each text, as the (BERT) tokenizer itself splits them."""
  backend = tokenizer.backend_tokenizer
  words = []
  for text in texts:
    normal = backend.normalizer.normalize_str(text) if backend.normalizer else text
    words.append([w for w, _ in backend.pre_tokenizer.pre_tokenize_str(normal)])
  return words


def word_pieces(tokenizer, words: list[list[str]], max_words: int, max_pieces: int
                ) -> dict[str, np.ndarray]:
  """Each word's pieces in one vocabulary, as fixed-shape arrays.

  Returns `ids` [N, P] piece ids, `word` [N, P] the word of each piece (-1 =
  padding), `rank` [N, P] the piece's index within its word, and `length`
  [N, W] pieces per word. Words past `max_words`, or whose pieces would not
  fit in `max_pieces`, are dropped whole.
  """
  n = len(words)
  out = {'ids': np.zeros((n, max_pieces), np.int32),
         'word': np.full((n, max_pieces), -1, np.int32),
         'rank': np.zeros((n, max_pieces), np.int32),
         'length': np.zeros((n, max_words), np.int32)}
  clipped = [w[:max_words] for w in words]
  non_empty = [i for i, w in enumerate(clipped) if w]
  if not non_empty:
    return out
  enc = tokenizer([clipped[i] for i in non_empty], is_split_into_words=True,
                  add_special_tokens=False)
  for row, i in enumerate(non_empty):
    ids, word_ids = enc['input_ids'][row], enc.word_ids(row)
    lengths = np.bincount(np.asarray(word_ids, np.int64), minlength=len(clipped[i]))
    fits = np.cumsum(lengths) <= max_pieces  # whole words only
    kept = int(fits.sum())
    pos = 0
    for piece, w in zip(ids, word_ids):
      if w >= kept:
        break
      out['ids'][i, pos], out['word'][i, pos] = piece, w
      out['rank'][i, pos] = pos - int(lengths[:w].sum())
      pos += 1
    out['length'][i, :kept] = lengths[:kept]
  return out


def segment_words(teacher_tokenizer, student_tokenizer, texts: list[str], max_words: int,
                  max_pieces: int) -> dict[str, np.ndarray]:
  """Both vocabularies' pieces of the same words: `teacher_*` and `student_*`
  arrays of `word_pieces`, plus `num_words` [N]."""
  words = split_words(teacher_tokenizer, texts)
  teacher = word_pieces(teacher_tokenizer, words, max_words, max_pieces)
  student = word_pieces(student_tokenizer, words, max_words, max_pieces)
  # A word is usable only if both segmentations kept it.
  both = (teacher['length'] > 0) & (student['length'] > 0)
  for arrays in (teacher, student):
    arrays['length'] = np.where(both, arrays['length'], 0).astype(np.int32)
    dropped = np.take_along_axis(~both, np.maximum(arrays['word'], 0), axis=1)
    arrays['word'] = np.where(dropped, -1, arrays['word']).astype(np.int32)
  out = {f'teacher_{k}': v for k, v in teacher.items()}
  out.update({f'student_{k}': v for k, v in student.items()})
  out['num_words'] = both.sum(axis=1).astype(np.int32)
  return out


def mixed_length_mask(segments: dict[str, np.ndarray], max_length: int) -> np.ndarray:
  """[N, max_length] int32: 1 on the first positions up to the longest mixed
  sequence each row can become ([CLS], every usable word in its longer
  segmentation, [SEP]; at most max_length). Length buckets read it like a token
  mask, so a row goes to a bucket that holds it however its words are mixed."""
  longest = np.maximum(segments['teacher_length'], segments['student_length']).sum(axis=1) + 2
  return (np.arange(max_length)[None, :] < np.minimum(longest, max_length)[:, None]
          ).astype(np.int32)


def teacher_pieces_of(student_tokenizer, teacher_tokenizer, max_pieces: int = 8
                      ) -> tuple[np.ndarray, np.ndarray]:
  """The teacher-vocabulary pieces that spell each student token.

  Returns `ids` [V_S, max_pieces] and `mask` [V_S, max_pieces] (1 = a real
  piece). A token the teacher also has maps to itself ('##ing' to '##ing',
  '[CLS]' to '[CLS]'); any other is spelled by the teacher's WordPiece model
  (a continuation '##xy' as the word 'xy'); one it cannot spell maps to [UNK].
  """
  t_vocab = teacher_tokenizer.get_vocab()
  t_model = teacher_tokenizer.backend_tokenizer.model
  s_tokens = sorted(student_tokenizer.get_vocab().items(), key=lambda kv: kv[1])
  ids = np.zeros((len(s_tokens), max_pieces), np.int32)
  mask = np.zeros((len(s_tokens), max_pieces), np.float32)
  for row, (token, _) in enumerate(s_tokens):
    if token in t_vocab:
      pieces = [t_vocab[token]]
    else:
      pieces = [t.id for t in t_model.tokenize(token.removeprefix('##'))][:max_pieces]
      pieces = pieces or [t_vocab['[UNK]']]
    ids[row, :len(pieces)], mask[row, :len(pieces)] = pieces, 1.0
  return ids, mask
