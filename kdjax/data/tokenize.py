"""Tokenization with the teacher's HF tokenizer into static padded arrays."""
from __future__ import annotations

import numpy as np

from kdjax.data.tasks import Examples
from kdjax.errors import KdjaxError

ENCODER_INPUTS = ('input_ids', 'token_type_ids', 'attention_mask')


def load_tokenizer(checkpoint_dir: str):
  """The HF tokenizer stored beside a checkpoint (vocab.txt or tokenizer.json)."""
  from transformers import AutoTokenizer
  try:
    return AutoTokenizer.from_pretrained(checkpoint_dir)
  except (OSError, ValueError, TypeError) as e:
    raise KdjaxError(f'cannot load the tokenizer in {checkpoint_dir} ({e}); the '
                     'checkpoint needs vocab.txt or tokenizer.json') from None


def check_tokenizer(tokenizer, vocab_size: int, where: str) -> None:
  if len(tokenizer) > vocab_size:
    raise KdjaxError(f'{where}: the tokenizer has {len(tokenizer)} tokens but the model '
                     f'only {vocab_size} embeddings; the vocabulary does not match the weights')


def encode(tokenizer, examples: Examples, max_length: int) -> dict[str, np.ndarray]:
  """Token ids, token types and attention mask, each int32 [N, max_length].

  Pairs are encoded `[CLS] a [SEP] b [SEP]` with token types 0/1 and truncated
  longest-first. Padding to `max_length` keeps every batch the same shape, so
  each step function compiles once.
  """
  args = (examples.texts_a,) if examples.texts_b is None else (examples.texts_a, examples.texts_b)
  enc = tokenizer(*args, padding='max_length', truncation=True, max_length=max_length,
                  return_tensors='np', return_token_type_ids=True, return_attention_mask=True)
  return {k: np.asarray(enc[k], np.int32) for k in ENCODER_INPUTS}


def model_inputs(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The encoder's input columns of `arrays` (without labels or targets)."""
  return {k: arrays[k] for k in ENCODER_INPUTS}
