"""Command line: `python -m kdjax.main [--config FILE[:ARG]] [--workdir DIR] [--config.k=v]`.

With no arguments it runs the embedded default (kdjax/defaults.py). Bad input
ends with one line `kdjax: error: ...` on stderr and a non-zero exit; pass
`--verbose` for the traceback.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from kdjax import defaults
from kdjax.errors import KdjaxError

_CONFIG = config_flags.DEFINE_config_file(
    'config', defaults.__file__, 'Experiment config file, optionally FILE:ARG (e.g. :quick).')
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (checkpoints, logs, exports); default runs/<config>.')
_VERBOSE = flags.DEFINE_boolean('verbose', False, 'Show tracebacks on errors.')

EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 1, 130


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
  print(f'kdjax: error: {message}', file=sys.stderr)
  sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f'{e}; see `python -m kdjax.main --helpfull` and the config reference in README.md')
  except (ValueError, KeyError, AttributeError, TypeError, OSError, SyntaxError) as e:
    fail(f'cannot load the config: {e}')


def default_workdir(config_arg: str) -> str:
  path, _, arg = config_arg.partition(':')
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', stem + (f'-{arg}' if arg else ''))


def check_same_config(workdir: str, config_dict: dict) -> None:
  """Refuses to resume a workdir whose saved run used a different config."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (OSError, json.JSONDecodeError):
    return
  current = json.loads(json.dumps(config_dict))  # tuples -> lists, as saved
  if saved != current:
    changed = sorted(_diff_keys(saved, current))
    raise KdjaxError(f'{workdir} holds a run with another config (differs in '
                     f'{", ".join(changed[:5])}); use a new --workdir to start a new run')


def _diff_keys(a, b, prefix=''):
  for key in set(a) | set(b):
    va, vb = a.get(key), b.get(key)
    if isinstance(va, dict) and isinstance(vb, dict):
      yield from _diff_keys(va, vb, f'{prefix}{key}.')
    elif va != vb:
      yield prefix + key


def main(argv: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # library INFO lines drown the progress bars
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; use --config, --workdir and --config.KEY=VALUE')
  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS['config'].serialize().split('=', 1)[1])
  try:
    from kdjax.methods import kd  # imports jax: after flag errors are reported
    from kdjax.summary import format_table
    check_same_config(workdir, config.to_dict())
    result = kd.run(config, workdir)
    print(format_table(result))
    print(f'summary: {os.path.join(workdir, "summary.json")}')
  except KdjaxError as e:
    if _VERBOSE.value:
      traceback.print_exc()
    fail(str(e))
  except KeyboardInterrupt:
    fail('interrupted; rerun the same command to resume from the last checkpoint',
         EXIT_INTERRUPTED)
  except Exception as e:  # a bug, not bad input: still one line unless --verbose
    if _VERBOSE.value:
      traceback.print_exc()
    fail(f'internal error {type(e).__name__}: {e} (rerun with --verbose for the traceback)',
         EXIT_INTERNAL)


def entry() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  entry()
