"""A fine-tuned classifier (or regressor) for inference: load a HF BERT-family
directory (a kdjax export or any other), and run it over texts in batches."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from kdjax import loop, parallel, teachers
from kdjax.data.batching import DEFAULT_BUCKETS, bucket_lengths
from kdjax.data.tasks import Examples
from kdjax.data.tokenize import encode
from kdjax.errors import KdjaxError
from kdjax.models.heads import BertClassifier
from kdjax.steps import jit_predict


@dataclasses.dataclass(frozen=True)
class Classifier:
  """Encoder + head with its tokenizer, placed on `mesh`, forward pass jitted."""
  params: Any                 # replicated BertClassifier params
  predict: Callable           # jitted (params, batch) -> logits [B, C] or scores [B, 1]
  tokenizer: Any
  label_names: tuple[str, ...] | None  # None: regression (one score)
  max_length: int
  mesh: Mesh

  @property
  def regression(self) -> bool:
    return self.label_names is None


def load_classifier(model_dir: str, max_length: int, dtype: str = 'float32') -> Classifier:
  """The classifier in `model_dir` (config.json, model.safetensors, tokenizer
  files, id2label), computing in `dtype`, for sequences of `max_length` tokens."""
  if not os.path.isdir(model_dir):
    raise KdjaxError(f'{model_dir} is not a directory; give a HF model directory such as '
                     'WORKDIR/export/student')
  _, ckpt, tokenizer = teachers.open_teacher(model_dir, max_length, 0, dtype, role='model',
                                             length_option='--max-length')
  if ckpt.head_params is None:
    raise KdjaxError(f'{model_dir} has no classifier head (no classifier.weight); give a '
                     'fine-tuned classification or regression model')
  model = BertClassifier(ckpt.config, ckpt.head_params['dense']['bias'].shape[0])
  mesh = parallel.make_mesh()
  params = parallel.replicate({'bert': ckpt.encoder_params, 'classifier': ckpt.head_params},
                              mesh)
  return Classifier(params, jit_predict(model, mesh), tokenizer,
                    None if ckpt.regression else ckpt.label_names, max_length, mesh)


def predict(classifier: Classifier, texts_a: list[str], texts_b: list[str] | None,
            batch_size: int, desc: str | None = None) -> np.ndarray:
  """Logits [N, C] (scores [N, 1] for regression) of every text (pair), in order.

  Batches come in a few fixed lengths (the default length buckets, the last
  batch of each padded), so the forward pass compiles once per length and
  short texts are not padded to `max_length`; `desc` shows a progress bar on
  stderr.
  """
  parallel.check_batch_size(batch_size, classifier.mesh, '--batch-size')
  examples = Examples(texts_a, texts_b, np.zeros(len(texts_a), np.int32))
  arrays = encode(classifier.tokenizer, examples, classifier.max_length)
  return loop.predict_all(classifier.predict, classifier.params, arrays, batch_size,
                           classifier.mesh, desc=desc,
                           lengths=bucket_lengths(DEFAULT_BUCKETS, classifier.max_length))


def probabilities(logits: np.ndarray) -> np.ndarray:
  """Class probabilities [N, C] of logits [N, C] (softmax, float32)."""
  return np.asarray(jax.nn.softmax(np.asarray(logits, np.float32), axis=-1))
