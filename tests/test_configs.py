"""Every config in configs/ loads (plain and :quick) with the default keys."""
import glob
import importlib.util
import os

import pytest

from kdjax.defaults import get_config as default_config
from tests.conftest import REPO

CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', '*.py')))


def load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config


def flat_keys(config, prefix=''):
  for key, value in config.items():
    if hasattr(value, 'items'):
      yield from flat_keys(value, f'{prefix}{key}.')
    else:
      yield prefix + key


# Keys the shared training loop and summary read from every method's config.
RUN_KEYS = {'method', 'seed', 'compute_dtype', 'eval_every', 'checkpoint_every',
            'keep_checkpoints', 'log_every', 'eval_batch_size'}


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_loads_with_known_keys(path):
  """Single-teacher configs have exactly the default's keys; the others the
  shared run keys and (one task) the default's data keys; :quick changes
  values, never keys."""
  assert CONFIGS, 'configs/ is empty'
  get_config = load(path)
  plain, quick = get_config(), get_config('quick')
  defaults = set(flat_keys(default_config()))
  if plain.method == 'kd':
    assert set(flat_keys(plain)) == defaults
  else:
    assert RUN_KEYS <= set(flat_keys(plain))
    if 'task' in plain.data:
      assert {k for k in defaults if k.startswith('data.')} <= set(flat_keys(plain))
  assert set(flat_keys(quick)) == set(flat_keys(plain))
  with pytest.raises(ValueError):
    get_config('no-such-variant')


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_quick_is_a_smaller_run_of_the_same_experiment(path):
  """:quick subsamples the data and trains for fewer epochs on shorter inputs;
  the method and the student's architecture stay."""
  get_config = load(path)
  plain, quick = get_config(), get_config('quick')
  assert quick.method == plain.method
  assert 0 < quick.data.max_train_examples
  assert plain.data.max_train_examples == 0 or (
      quick.data.max_train_examples < plain.data.max_train_examples)
  assert 0 < quick.data.max_eval_examples
  assert quick.data.max_length <= plain.data.max_length
  assert quick.distill.epochs < plain.distill.epochs
  assert quick.student.to_dict() == plain.student.to_dict()


def test_bbc_distill_is_the_default_experiment():
  """kdjax/defaults.py says configs/bbc_distill.py is the same experiment."""
  get_config = load(os.path.join(REPO, 'configs', 'bbc_distill.py'))
  for arg in (None, 'quick'):
    assert get_config(arg).to_dict() == default_config(arg).to_dict()
