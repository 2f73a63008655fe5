"""Import and export Hugging Face BERT checkpoints (config.json + model.safetensors).

Weights move as numpy arrays through `safetensors.numpy`, so no torch is needed.
One name table (`_name_table`) serves both directions, so import and export
cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Iterator

import numpy as np
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from kdjax import atomic
from kdjax.errors import KdjaxError
from kdjax.models.bert import BertConfig

# Linear weights are stored [out, in] by torch and [in, out] by flax.
_TRANSPOSE, _AS_IS = True, False


def _name_table(config: BertConfig) -> Iterator[tuple[str, tuple[str, ...], bool]]:
  """Yields (HF name without prefix, kdjax encoder param path, transpose?)."""
  def dense(hf, path):
    yield f'{hf}.weight', path + ('kernel',), _TRANSPOSE
    yield f'{hf}.bias', path + ('bias',), _AS_IS

  def norm(hf, path):
    yield f'{hf}.weight', path + ('scale',), _AS_IS
    yield f'{hf}.bias', path + ('bias',), _AS_IS

  for emb in ('word_embeddings', 'position_embeddings', 'token_type_embeddings'):
    yield f'embeddings.{emb}.weight', ('embeddings', emb, 'embedding'), _AS_IS
  yield from norm('embeddings.LayerNorm', ('embeddings', 'LayerNorm'))
  for i in range(config.num_layers):
    hf, ours = f'encoder.layer.{i}', (f'layer_{i}',)
    for proj in ('query', 'key', 'value'):
      yield from dense(f'{hf}.attention.self.{proj}', ours + ('attention', proj))
    yield from dense(f'{hf}.attention.output.dense', ours + ('attention', 'output'))
    yield from norm(f'{hf}.attention.output.LayerNorm', ours + ('attention', 'LayerNorm'))
    yield from dense(f'{hf}.intermediate.dense', ours + ('intermediate',))
    yield from dense(f'{hf}.output.dense', ours + ('output',))
    yield from norm(f'{hf}.output.LayerNorm', ours + ('output_LayerNorm',))
  yield from dense('pooler.dense', ('pooler',))


_OLD_NORM_NAMES = {'.gamma': '.weight', '.beta': '.bias'}


@dataclasses.dataclass
class HFCheckpoint:
  """What a local HF BERT checkpoint directory holds, as kdjax params."""
  config: BertConfig
  encoder_params: dict[str, Any]   # a BertEncoder param tree
  head_params: dict[str, Any] | None  # a TaskHead param tree, if it has a classifier
  label_names: tuple[str, ...] | None
  path: str
  regression: bool = False  # a one-score head (HF: problem_type 'regression' or num_labels 1)


def _read_tensors(path: str) -> dict[str, np.ndarray]:
  try:
    tensors = load_file(path)
  except (SafetensorError, OSError, ValueError) as e:
    raise KdjaxError(f'cannot read weights {path} ({e}); re-export or re-download '
                     'the checkpoint') from None
  renamed = {}
  for name, value in tensors.items():
    for old, new in _OLD_NORM_NAMES.items():
      if 'LayerNorm' in name and name.endswith(old):
        name = name[: -len(old)] + new
    renamed[name] = value
  return renamed


def load_hf_config(checkpoint_dir: str) -> dict[str, Any]:
  config_path = os.path.join(checkpoint_dir, 'config.json')
  if not os.path.isdir(checkpoint_dir):
    raise KdjaxError(f'teacher checkpoint directory {checkpoint_dir!r} does not exist; '
                     'set --config.teacher.checkpoint to a HF BERT directory')
  if not os.path.isfile(config_path):
    raise KdjaxError(f'{config_path} is missing; a HF checkpoint directory needs '
                     'config.json and model.safetensors')
  try:
    with open(config_path, encoding='utf-8') as f:
      hf = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise KdjaxError(f'{config_path} is not valid JSON ({e})') from None
  if hf.get('model_type', 'bert') != 'bert':
    raise KdjaxError(f"{config_path} has model_type {hf.get('model_type')!r}; "
                     'kdjax reads BERT-family checkpoints (model_type "bert")')
  return hf


def load_hf_checkpoint(checkpoint_dir: str, pooler_seed: int = 0) -> HFCheckpoint:
  """Reads a HF BERT directory (with or without `bert.` prefix and classifier).

  A checkpoint saved without a pooler gets a freshly initialised one
  (normal(0, initializer_range), seeded by `pooler_seed`).
  """
  hf = load_hf_config(checkpoint_dir)
  try:
    config = BertConfig.from_hf_dict(hf)
  except (KeyError, ValueError, TypeError) as e:
    raise KdjaxError(f'{checkpoint_dir}/config.json is not a BERT config ({e})') from None
  weights_path = os.path.join(checkpoint_dir, 'model.safetensors')
  if not os.path.isfile(weights_path):
    raise KdjaxError(f'{weights_path} is missing; convert the checkpoint to '
                     'safetensors (kdjax does not read pytorch_model.bin)')
  tensors = _read_tensors(weights_path)
  prefix = 'bert.' if any(k.startswith('bert.') for k in tensors) else ''

  flat = {}
  for hf_name, path, transpose in _name_table(config):
    value = tensors.get(prefix + hf_name)
    if value is None and hf_name.startswith('pooler.'):
      value = _fresh_pooler(config, hf_name, pooler_seed)
    if value is None:
      raise KdjaxError(f'{weights_path} has no tensor {prefix + hf_name}; is it a BERT '
                       f'checkpoint with {config.num_layers} layers as config.json says?')
    value = np.asarray(value, np.float32)
    flat[path] = value.T if transpose else value
  _check_shapes(flat, config, weights_path)
  layers = {int(m.group(1)) for name in tensors
            if (m := re.match(re.escape(prefix) + r'encoder\.layer\.(\d+)\.', name))}
  if layers - set(range(config.num_layers)):
    raise KdjaxError(f'{weights_path} holds {max(layers) + 1} encoder layers but config.json '
                     f'says {config.num_layers}; the weights do not match the config')

  head, labels = None, None
  if 'classifier.weight' in tensors:
    weight, bias = tensors['classifier.weight'], tensors.get('classifier.bias')
    if bias is None or bias.ndim != 1 or weight.shape != (bias.shape[0], config.hidden_size):
      raise KdjaxError(f'{weights_path}: classifier.weight {weight.shape} and classifier.bias '
                       f'{None if bias is None else bias.shape} do not fit hidden size '
                       f'{config.hidden_size}')
    head = {'dense': {'kernel': np.asarray(weight, np.float32).T,
                      'bias': np.asarray(bias, np.float32)}}
    id2label = hf.get('id2label') or {}
    labels = tuple(id2label[str(i)] if str(i) in id2label else id2label.get(i, str(i))
                   for i in range(head['dense']['bias'].shape[0]))
  regression = head is not None and (
      hf.get('problem_type') == 'regression'
      or (hf.get('problem_type') is None and head['dense']['bias'].shape == (1,)))
  return HFCheckpoint(config, traverse_util.unflatten_dict(flat), head, labels,
                      checkpoint_dir, regression)


def _fresh_pooler(config: BertConfig, hf_name: str, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if hf_name.endswith('weight'):
    return rng.normal(0, config.initializer_range,
                      (config.hidden_size, config.hidden_size)).astype(np.float32)
  return np.zeros(config.hidden_size, np.float32)


def _check_shapes(flat, config: BertConfig, where: str) -> None:
  """Every tensor against the shape `config` implies (computed without
  allocating), and finite: a mismatch fails here, not as an XLA error later."""
  import jax
  from kdjax.models.bert import BertEncoder, init_params
  expected = traverse_util.flatten_dict(jax.eval_shape(
      lambda: init_params(BertEncoder(config), jax.random.PRNGKey(0))))
  for path, value in flat.items():
    want = expected[path].shape
    if value.shape != want:
      raise KdjaxError(f"{where}: {'/'.join(path)} has shape {value.shape}, config.json "
                       f'implies {want}; the weights do not match the config')
    if not np.isfinite(value).all():
      raise KdjaxError(f"{where}: {'/'.join(path)} holds NaN or Inf values; the "
                       'checkpoint is damaged')


def hf_state_dict(config: BertConfig, encoder_params, head_params=None) -> dict[str, np.ndarray]:
  """kdjax params -> HF BertForSequenceClassification tensors (`bert.` prefix)."""
  flat = traverse_util.flatten_dict(encoder_params)
  out = {}
  for hf_name, path, transpose in _name_table(config):
    value = np.asarray(flat[path], np.float32)
    out['bert.' + hf_name] = np.ascontiguousarray(value.T if transpose else value)
  if head_params is not None:
    out['classifier.weight'] = np.ascontiguousarray(np.asarray(head_params['dense']['kernel'], np.float32).T)
    out['classifier.bias'] = np.asarray(head_params['dense']['bias'], np.float32)
  return out


def export_hf_checkpoint(out_dir: str, config: BertConfig, encoder_params,
                         head_params, label_names: tuple[str, ...] | None,
                         tokenizer_dir: str, dtype: str = 'float32') -> str:
  """Writes a directory `AutoModelForSequenceClassification` loads.

  `label_names=None` marks a regression head (one score); `head_params=None`
  writes a bare encoder (`BertModel`); `dtype='float16'` stores half-precision
  weights (half the bytes; `transformers` loads them as such). The directory is
  written beside `out_dir` and renamed into place, so a crash never leaves a
  half-written export under the final name.
  """
  from transformers import AutoTokenizer  # slow import; only needed here

  if dtype not in ('float32', 'float16'):
    raise KdjaxError(f"export dtype {dtype!r}: use 'float32' or 'float16'")
  hf = config.to_hf_dict()
  hf['torch_dtype'] = dtype
  if head_params is None:  # a bare encoder (e.g. a teacher to fine-tune later)
    hf['architectures'] = ['BertModel']
  else:
    num_labels = 1 if label_names is None else len(label_names)
    names = list(label_names) if label_names else ['score']
    hf.update({
        'architectures': ['BertForSequenceClassification'],
        'num_labels': num_labels,
        'problem_type': 'regression' if label_names is None else 'single_label_classification',
        'id2label': {str(i): name for i, name in enumerate(names)},
        'label2id': {name: i for i, name in enumerate(names)},
        'classifier_dropout': None,
    })
  with atomic.replacing(out_dir) as tmp:
    os.makedirs(tmp)
    with open(os.path.join(tmp, 'config.json'), 'w', encoding='utf-8') as f:
      json.dump(hf, f, indent=2, sort_keys=True)
    tensors = {k: v.astype(dtype) for k, v in
               hf_state_dict(config, encoder_params, head_params).items()}
    save_file(tensors,
              os.path.join(tmp, 'model.safetensors'), metadata={'format': 'pt'})
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(tmp)
    _write_vocab_txt(tokenizer, os.path.join(tmp, 'vocab.txt'))
  return out_dir


def _write_vocab_txt(tokenizer, path: str) -> None:
  """The plain WordPiece vocab.txt (one token per line, in id order).

  Recent `transformers` save only tokenizer.json; vocab.txt keeps the export
  readable by every BERT tokenizer implementation.
  """
  if os.path.exists(path):
    return
  vocab = tokenizer.get_vocab()
  by_id = sorted(vocab.items(), key=lambda item: item[1])
  if [i for _, i in by_id] != list(range(len(by_id))):
    return  # not a dense WordPiece vocabulary: tokenizer.json alone describes it
  with open(path, 'w', encoding='utf-8') as f:
    f.write(''.join(token + '\n' for token, _ in by_id))
