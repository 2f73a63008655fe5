"""Command line: `python -m kdjax.main [--config FILE[:ARG]] [--workdir DIR] [--config.k=v]`.

With no arguments it runs the embedded default (kdjax/defaults.py). Bad input
ends with one line `kdjax: error: ...` on stderr and a non-zero exit; pass
`--verbose` for the traceback.
"""
from __future__ import annotations

import os
import re
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from kdjax import config_check, defaults, interrupt, torch_notice
from kdjax.errors import KdjaxError

_FLAGS: dict = {}


def _define_flags() -> None:
  """Defines the flags. config_flags reads `--config.key=value` overrides from
  sys.argv right here, so a bad key surfaces now, not at parse time."""
  _FLAGS['config'] = config_flags.DEFINE_config_file(
      'config', defaults.__file__, 'Experiment config file, optionally FILE:ARG (e.g. :quick).')
  _FLAGS['workdir'] = flags.DEFINE_string(
      'workdir', None, 'Run directory (checkpoints, logs, exports); default runs/<config>.')
  _FLAGS['verbose'] = flags.DEFINE_boolean('verbose', False, 'Show tracebacks on errors.')


EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 1, 130


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
  print(f'kdjax: error: {message}', file=sys.stderr)
  sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f'{_one_line(e)}; see the config reference in README.md')
  except (ValueError, KeyError, AttributeError, TypeError, OSError, SyntaxError) as e:
    fail(f'cannot load the config: {_one_line(e)}')


def _one_line(e: BaseException) -> str:
  """The gist of a possibly multi-line library message (tracebacks included)."""
  lines = [l.strip() for l in str(e).replace('\\n', '\n').splitlines() if l.strip()]
  raised = [l for l in lines if re.match(r'^[A-Za-z_.]*(Error|Exception): ', l)]
  text = raised[-1] if raised else ' '.join(lines)
  return text.strip('"\'').replace("\\'", "'")


def default_workdir(config_arg: str) -> str:
  path, _, arg = config_arg.partition(':')
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', stem + (f'-{arg}' if arg else ''))


def main(argv: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # library INFO lines drown the progress bars
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; use --config, --workdir and --config.KEY=VALUE')
  try:
    config = _FLAGS['config'].value
    config_dict = config.to_dict()  # the config file is loaded lazily: load it now
  except Exception as e:  # any failure to load the user's config file is bad input
    fail(f'cannot load the config file: {_one_line(e)}')
  workdir = _FLAGS['workdir'].value or default_workdir(flags.FLAGS['config'].serialize().split('=', 1)[1])

  def launch():
    config_check.check(config_dict)  # before jax is imported: errors come fast
    from kdjax import scaffold
    method, result = scaffold.launch(config, workdir)
    print(method.format_table(result))
    print(f'summary: {os.path.join(workdir, "summary.json")}')
  reporting_errors(launch)


def reporting_errors(job) -> None:
  """Runs `job()`; bad input, a stop request, a full disk or a bug ends it with
  one line on stderr and the matching exit code (the traceback with --verbose).
  Experiment scripts run their sweeps through it too."""
  verbose = _FLAGS['verbose'].value if 'verbose' in _FLAGS else False
  try:
    job()
  except interrupt.Stopped as e:
    fail(str(e), 128 + e.signum)
  except KdjaxError as e:
    if verbose:
      traceback.print_exc()
    fail(str(e))
  except KeyboardInterrupt:
    fail('interrupted; rerun the same command to resume from the last checkpoint',
         EXIT_INTERRUPTED)
  except Exception as e:  # a bug, not bad input: still one line unless --verbose
    from kdjax import checkpoint
    disk_error = checkpoint.os_error_in(e)
    if disk_error is not None and disk_error.errno in checkpoint.DISK_ERRORS:
      fail(f'cannot write {disk_error.filename or "to the workdir"} ({disk_error.strerror}); '
           'completed phases and checkpoints are kept: free space (or fix permissions) and '
           'rerun the same command to resume', EXIT_INTERNAL)
    if verbose:
      traceback.print_exc()
    fail(f'internal error {type(e).__name__}: {e} (rerun with --verbose for the traceback)',
         EXIT_INTERNAL)


def entry() -> None:
  torch_notice.silence()
  try:
    _define_flags()
  except (ValueError, KeyError, AttributeError, TypeError, OSError, SyntaxError,
          flags.Error) as e:
    fail(f'bad config or override: {_one_line(e)}; check the key names in README.md')
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  entry()
