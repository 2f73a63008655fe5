"""Distillation methods. Each module has `run(config, workdir) -> summary dict`
and `format_table(summary) -> str`; `config.method` picks one."""
import importlib

from kdjax.errors import KdjaxError

METHODS = {'kd': 'kdjax.methods.kd', 'mtdnn_kd': 'kdjax.methods.mtdnn',
           'rl_kd': 'kdjax.methods.rlkd', 'mixed_vocab': 'kdjax.methods.mixed_kd'}


def get_method(name: str):
  if name not in METHODS:
    raise KdjaxError(f'unknown method {name!r}; choose one of {sorted(METHODS)}')
  return importlib.import_module(METHODS[name])
