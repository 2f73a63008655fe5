"""SIGTERM and Ctrl-C: finish the current step, save a checkpoint, then stop.

The CLI installs the handlers; the training loop polls `requested()` once per
step (a Python flag read, no device sync) and, when set, saves and raises
`Stopped`. A second signal stops at once (KeyboardInterrupt): the last periodic
checkpoint is still there. Library callers that never call `install()` keep
Python's default behaviour.
"""
from __future__ import annotations

import signal

from kdjax.errors import KdjaxError

_received: list[int] = []  # signal numbers received since install()


class Stopped(KdjaxError):
  """The run stopped on request after saving what it had."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


def _handle(signum, frame) -> None:
  if _received:  # asked twice: do not wait for the step to end
    raise KeyboardInterrupt
  _received.append(signum)


def install() -> None:
  """Routes SIGINT and SIGTERM to the step-boundary stop (main thread only)."""
  _received.clear()
  signal.signal(signal.SIGINT, _handle)
  signal.signal(signal.SIGTERM, _handle)


def requested() -> int | None:
  """The signal number asking the run to stop, or None."""
  return _received[0] if _received else None


def signal_name(signum: int) -> str:
  return signal.Signals(signum).name


def check(where: str) -> None:
  """Raises `Stopped` if a stop was requested; for loops with nothing to save
  (their results are written atomically once complete, so nothing is lost)."""
  signum = requested()
  if signum is not None:
    raise Stopped(f'stopped by {signal_name(signum)} during {where}; rerun the same '
                  'command to resume', signum)
