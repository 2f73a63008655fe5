"""Orbax checkpoints of a train state: periodic, final, resumable.

Orbax writes each step into a temporary directory and renames it when complete,
so a crash mid-save never leaves a checkpoint that `latest_step` would pick.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import threading
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from kdjax.errors import KdjaxError


def open_manager(directory: str, keep: int = 2) -> ocp.CheckpointManager:
  # Synchronous saves: the state is donated to the next step right after.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


# Errors that mean "this disk cannot take the checkpoint", not a bug.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS)


def save(manager: ocp.CheckpointManager, step: int, state: Any, kept: int | None = None
         ) -> None:
  """Saves `state` as `step`; a full or read-only disk becomes a one-line error
  that names the checkpoint still there (`kept`, the last complete step)."""
  try:
    with _quiet_orbax():
      manager.save(step, args=ocp.args.StandardSave(state), force=True)
      manager.wait_until_finished()
  except Exception as e:  # orbax wraps OS errors in its own types
    disk_error = os_error_in(e)
    if disk_error is None or disk_error.errno not in DISK_ERRORS:
      raise
    still = f'the checkpoint of step {kept} is kept' if kept else 'no earlier checkpoint exists'
    raise KdjaxError(f'cannot write the checkpoint of step {step} in {manager.directory} '
                     f'({disk_error.strerror}); {still}; free space (or fix permissions) '
                     'and rerun the same command to resume') from None


@contextlib.contextmanager
def _quiet_orbax():
  """Orbax reports a failed write many times over: a logged traceback, the
  exception (which the caller turns into one line), 'Task exception was never
  retrieved' from asyncio for each pending write, and one 'RuntimeError: Event
  loop is closed' traceback per pending tensorstore write, printed to
  sys.stderr from writer threads for a while after the failure. The logs are
  silenced and those tracebacks filtered out, during the save and, after a
  failure, until the process ends."""
  loggers = [logging.getLogger(name) for name in ('absl', 'asyncio')]
  levels, stderr = [logger.level for logger in loggers], sys.stderr
  for logger in loggers:
    logger.setLevel(logging.CRITICAL)
  sys.stderr = _DropClosedLoopTracebacks(stderr)
  yield
  for logger, level in zip(loggers, levels):  # reached only after a successful save
    logger.setLevel(level)
  sys.stderr = stderr


class _DropClosedLoopTracebacks:
  """A text stream that passes whole lines on, holds back each traceback until
  its last line, and drops it if that is 'RuntimeError: Event loop is closed'.
  Several writer threads print at once, so lines are gathered per thread."""

  def __init__(self, stream):
    self._stream, self._lock = stream, threading.Lock()
    self._partial, self._held = {}, {}  # per thread: text after the last newline; a traceback

  def write(self, text: str) -> int:
    thread = threading.get_ident()
    with self._lock:
      lines = (self._partial.pop(thread, '') + text).split('\n')
      if lines[-1]:
        self._partial[thread] = lines[-1]
      for line in lines[:-1]:
        self._line(thread, line + '\n')
    return len(text)

  def _line(self, thread: int, line: str) -> None:
    if line.startswith('Traceback (most recent call last):'):
      self._held[thread] = []
    held = self._held.get(thread)
    if held is None:
      self._stream.write(line)
      return
    held.append(line)
    if not line[0].isspace() and not line.startswith('Traceback'):  # the exception line
      if 'Event loop is closed' not in line:
        self._stream.write(''.join(held))
      del self._held[thread]

  def flush(self) -> None:
    thread = threading.get_ident()
    with self._lock:
      if thread not in self._held and thread in self._partial:
        self._stream.write(self._partial.pop(thread))
    self._stream.flush()

  def __getattr__(self, name):
    return getattr(self._stream, name)


def os_error_in(e: BaseException) -> OSError | None:
  """The first OS error in `e`'s cause/context chain: an OSError, or one that
  tensorstore (under orbax) reports inside a ValueError as `os_error_code='N'`."""
  seen = set()
  while e is not None and id(e) not in seen:
    if isinstance(e, OSError) and e.errno is not None:
      return e
    code = re.search(r"os_error_code='(\d+)'", str(e))
    if code:
      return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return None


def state_bytes(state: Any) -> int:
  return sum(int(getattr(x, 'nbytes', 0)) for x in jax.tree.leaves(state))


def check_space(directory: str, state: Any, keep: int) -> None:
  """Fails before a phase starts if its checkpoints cannot fit on the disk:
  orbax writes a new step beside the `keep` it already holds."""
  os.makedirs(directory, exist_ok=True)
  free = shutil.disk_usage(directory).free
  needed = state_bytes(state) * (keep + 1)
  held = sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(directory) for f in files)
  if free + held < needed:
    raise KdjaxError(f'{directory}: {free / 2**20:.0f} MiB free but {keep + 1} checkpoints of '
                     f'this phase need {needed / 2**20:.0f} MiB; free space or use another '
                     '--workdir')


def restore_latest(manager: ocp.CheckpointManager, template: Any) -> Any | None:
  """The latest complete checkpoint shaped (and sharded) like `template`, or None."""
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises many types; all mean "unreadable"
    raise KdjaxError(f'checkpoint {manager.directory}/{step} cannot be restored '
                     f'({type(e).__name__}: {str(e)[:200]}); it does not match this config '
                     'or is damaged: use another --workdir or delete that step') from None
