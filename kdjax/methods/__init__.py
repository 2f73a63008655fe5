"""Distillation methods, one subpackage each: `pieces` (pure losses, steps and
samplers, importable with jax, flax and optax alone) and `pipeline`
(`run(config, workdir) -> summary dict` and `format_table(summary) -> str`, built
on `kdjax.scaffold`). `config.method` picks one."""
import importlib

from kdjax.errors import KdjaxError

METHODS = ('kd', 'mtdnn_kd', 'rl_kd', 'mixed_vocab')


def get_method(name: str):
  """The pipeline module of method `name`."""
  if name not in METHODS:
    raise KdjaxError(f'unknown method {name!r}; choose one of {sorted(METHODS)}')
  return importlib.import_module(f'kdjax.methods.{name}.pipeline')
