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


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_loads_with_known_keys(path):
  assert CONFIGS, 'configs/ is empty'
  get_config = load(path)
  plain = get_config()
  # Single-teacher configs keep the default's keys; other methods their own.
  expected = set(flat_keys(default_config() if plain.method == 'kd' else plain))
  for arg in (None, 'quick'):
    assert set(flat_keys(get_config(arg))) == expected
  with pytest.raises(ValueError):
    get_config('no-such-variant')
