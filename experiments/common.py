"""Helpers shared by the experiment scripts: configs, overrides, statistics."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'results')

try:
  import kdjax  # noqa: F401
except ModuleNotFoundError as missing:
  # A clone run without installing it: one line that says what to do, not a
  # traceback from the first import deep inside a run.
  if missing.name != 'kdjax':
    raise
  sys.exit('kdjax: error: the kdjax package is not installed; run `pip install -e .` '
           'in the repository root first')


def load_config(name: str, arg: str | None = None):
  """`configs/<name>.py`'s get_config(arg)."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'configs',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def apply_overrides(config, overrides: list[str]) -> None:
  """`--config.a.b=value` pairs, parsed as Python literals where possible."""
  for item in overrides:
    if not item.startswith('--config.') or '=' not in item:
      sys.exit(f'kdjax: error: unknown argument {item!r}; use --config.KEY=VALUE')
    key, _, raw = item[len('--config.'):].partition('=')
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      if p not in node:
        sys.exit(f'kdjax: error: unknown config key {key!r}')
      node = node[p]
    if leaf not in node:
      sys.exit(f'kdjax: error: unknown config key {key!r}')
    node[leaf] = value


def write_record(name: str, record: dict) -> None:
  """experiments/results/<name>.json: a script's whole record (sorted keys)."""
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f'{name}.json'), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)


def write_markdown(name: str, lines: list[str]) -> None:
  """experiments/results/<name>.md from `lines`, also printed."""
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f'{name}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value)."""
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def run_method(config, workdir: str) -> dict:
  """One run of `config.method` in `workdir`, with the checks and set-up of
  `python -m kdjax.main` (config ranges, same-config resume, distributed start,
  stop handling); returns its summary."""
  from kdjax import scaffold
  return scaffold.launch(config, workdir)[1]


def load_saved_record(name: str, flag: str = '--keep-saved') -> dict:
  """experiments/results/NAME.json, for --keep-saved or --rewrite (`flag`);
  exits with one line if absent."""
  path = os.path.join(RESULTS, f'{name}.json')
  if not os.path.exists(path):
    sys.exit(f'kdjax: error: {flag} needs a saved record at {path}')
  with open(path) as f:
    return json.load(f)


def flat(tree: dict, prefix: str = '') -> dict:
  """{'a.b': value} of a nested config dict (a tuple read back from JSON is a list)."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = list(value) if isinstance(value, tuple) else value
  return out


def check_same_setup(saved: dict, config: dict, seeds: list[int], rerun: str) -> None:
  """Refuses (one line, non-zero exit) to merge runs with a saved record of
  other seeds or config values: paths aside, and keys added since the record
  was written are not compared. `rerun` says what to run instead."""
  if saved['seeds'] != seeds:
    raise SystemExit(f"kdjax: error: the saved record has seeds {saved['seeds']}; "
                     f"--keep-saved needs seeds {seeds}")
  now, then = flat(config), flat(saved['config'])
  changed = sorted(k for k in now.keys() & then.keys()
                   if not k.endswith('_dir') and now[k] != then[k])
  if changed:
    raise SystemExit(f"kdjax: error: the saved record was made with other config values "
                     f"({', '.join(f'{k}={then[k]!r}, now {now[k]!r}' for k in changed)}); "
                     + rerun)


def guarded(main) -> None:
  """Runs an experiment's `main()` with the CLI's error reporting: one line and
  a non-zero exit on bad input, a stop request or a full disk."""
  from kdjax.main import reporting_errors
  reporting_errors(main)


def prepare_runtime() -> None:
  """What `python -m kdjax.main` sets up before a run: quiet library logs and the
  persistent compilation cache (the variants of an experiment share programs)."""
  from absl import logging
  from kdjax import compile_cache
  logging.set_verbosity(logging.WARNING)
  compile_cache.enable()


def majority_baseline(data) -> dict:
  """The accuracy on the final evaluation split (as a run selects and subsamples
  it from config section `data`) of always answering the training set's most
  frequent class: what a student must clearly beat to have learned anything."""
  from kdjax.data import sources
  spec, splits = sources.load_task(data)
  split = sources.final_eval_split(splits)
  evaluated = sources.subsample(splits[split], data.max_eval_examples, data.split_seed)
  train_labels = np.asarray(splits['train'].labels)
  majority = int(np.bincount(train_labels).argmax())
  accuracy = float(np.mean(np.asarray(evaluated.labels) == majority))
  return {'split': split, 'class': spec.label_names[majority], 'accuracy': accuracy}


def default_student_step(length: int, batch_size: int = 32, num_labels: int = 5):
  """The default 4 x 256 student's jitted KD train step (AdamW, dropout on)
  and one batch of random ids at full `length`: (step, state, batch); compile
  with `step.lower(state, batch, key).compile()`."""
  import jax
  import ml_collections
  from kdjax import parallel
  from kdjax.methods.kd.pieces import distill_step
  from kdjax.models.bert import BertConfig, init_params
  from kdjax.models.heads import BertClassifier
  from kdjax.steps import init_state, jit_train_step, phase_optimizer
  from kdjax.students import student_config
  section = ml_collections.ConfigDict(dict(num_layers=4, hidden_size=256, num_heads=4,
                                           intermediate_size=1024))
  model = BertClassifier(student_config(BertConfig(), section), num_labels)
  mesh = parallel.make_mesh()
  tx = phase_optimizer(ml_collections.ConfigDict(dict(
      learning_rate=3e-4, warmup_fraction=0.1, weight_decay=0.01, batch_size=batch_size)), 500)
  state = parallel.replicate(init_state(jax.tree.map(
      np.asarray, init_params(model, jax.random.PRNGKey(0))), tx), mesh)
  step = jit_train_step(distill_step(model, alpha=0.5, temperature=2.0, regression=False),
                        mesh, tx=tx)
  ids = np.random.default_rng(0).integers(1000, 30000, (batch_size, length)).astype(np.int32)
  batch = parallel.to_global({
      'input_ids': ids, 'token_type_ids': np.zeros_like(ids), 'attention_mask': np.ones_like(ids),
      'labels': np.zeros(batch_size, np.int32),
      'teacher_logits': np.zeros((batch_size, num_labels), np.float32),
      'weights': np.ones(batch_size, np.float32)}, mesh)
  return step, state, batch
