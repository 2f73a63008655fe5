"""Shared fixtures. Four fake CPU devices, so data-parallel code paths run."""
import os

# Must be set before jax is imported anywhere in the test process.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
# Tests compile from scratch (test_compile_cache.py turns the cache on itself).
os.environ.setdefault('KDJAX_COMPILATION_CACHE', 'off')

import jax  # noqa: E402
import pytest  # noqa: E402

from kdjax.models.bert import BertConfig, BertEncoder, init_params  # noqa: E402
from kdjax.models.hf import export_hf_checkpoint  # noqa: E402
from kdjax.teachers import bundled_teacher_dir  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE_DIR = os.environ.get('KDJAX_GLUE_DIR') or os.path.join(REPO, '..', 'shared', 'data', 'glue')

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                  intermediate_size=64, max_position_embeddings=64)


@pytest.fixture(scope='session')
def minilm_dir() -> str:
  return bundled_teacher_dir()


@pytest.fixture(scope='session')
def tiny_teacher_dir(tmp_path_factory, minilm_dir) -> str:
  """A tiny random BERT saved as a HF checkpoint with the real MiniLM tokenizer."""
  path = str(tmp_path_factory.mktemp('tiny') / 'teacher')
  params = init_params(BertEncoder(TINY), jax.random.PRNGKey(0))
  return export_hf_checkpoint(path, TINY, jax.device_get(params), None, None, minilm_dir)


@pytest.fixture(scope='session')
def glue_dir() -> str:
  if not os.path.isdir(GLUE_DIR):
    pytest.skip(f'GLUE files not found at {GLUE_DIR}; set KDJAX_GLUE_DIR')
  return GLUE_DIR


def classifier_batch(rows: int = 8, length: int = 16, labels: int = 3) -> dict:
  """A fixed random batch for a classifier step: ids, ragged masks, labels and
  teacher logits."""
  import numpy as np
  rng = np.random.default_rng(0)
  return {
      'input_ids': rng.integers(1000, 30000, (rows, length)).astype(np.int32),
      'token_type_ids': np.zeros((rows, length), np.int32),
      'attention_mask': (np.arange(length)[None] <
                         rng.integers(4, length + 1, (rows, 1))).astype(np.int32),
      'labels': rng.integers(0, labels, rows).astype(np.int32),
      'teacher_logits': rng.normal(size=(rows, labels)).astype(np.float32),
      'weights': np.ones(rows, np.float32),
  }


def load_config(name: str, arg: str | None = None):
  """`configs/<name>.py`'s get_config(arg)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'configs',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def load_experiment(name: str):
  """`experiments/<name>.py` as a module (its sibling imports resolved)."""
  import importlib.util
  import sys
  folder = os.path.join(REPO, 'experiments')
  sys.path.insert(0, folder)
  try:
    spec = importlib.util.spec_from_file_location(f'{name}_experiment',
                                                  os.path.join(folder, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(folder)
  return module


def pytest_configure(config):
  # The same generated cases on every run, so CI is reproducible; set
  # KDJAX_HYPOTHESIS_EXPLORE=1 to draw new ones.
  from hypothesis import settings
  settings.register_profile('kdjax', derandomize=not os.environ.get('KDJAX_HYPOTHESIS_EXPLORE'))
  settings.load_profile('kdjax')


def pytest_terminal_summary(terminalreporter):
  import sys
  module = sys.modules.get('tests.test_bad_input')
  if module is None or not module.CASES:
    return
  cases = module.CASES
  parts = ', '.join(f'{n} {k}' for k, n in cases.items())
  terminalreporter.write_line(f'bad-input suite: {sum(cases.values())} generated cases ({parts})')


def export_accuracy(export_dir: str, config) -> float:
  """Accuracy of an exported HF classifier on the run's final evaluation split
  (as `config` selects and subsamples it), recomputed from the export alone."""
  import numpy as np
  from kdjax.data import sources
  from kdjax.data.tokenize import encode, load_tokenizer
  from kdjax.models.heads import BertClassifier
  from kdjax.models.hf import load_hf_checkpoint
  _, splits = sources.load_task(config.data)
  split = sources.final_eval_split(splits)
  examples = sources.subsample(splits[split], config.data.max_eval_examples,
                               config.data.split_seed)
  arrays = encode(load_tokenizer(export_dir), examples, config.data.max_length)
  ckpt = load_hf_checkpoint(export_dir)
  model = BertClassifier(ckpt.config, ckpt.head_params['dense']['bias'].shape[0])
  params = {'bert': ckpt.encoder_params, 'classifier': ckpt.head_params}
  predictions = []
  for start in range(0, len(examples), 32):
    batch = [arrays[k][start:start + 32]
             for k in ('input_ids', 'token_type_ids', 'attention_mask')]
    predictions.append(np.argmax(np.asarray(model.apply({'params': params}, *batch)['logits']),
                                 -1))
  return float(np.mean(np.concatenate(predictions) == np.asarray(examples.labels)))
