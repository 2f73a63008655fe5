"""One run per workdir: an exclusive lock on WORKDIR/.lock for the whole run.

The lock is `fcntl.flock`, which the kernel drops when its holder exits, so a
killed run never leaves a stale lock behind. The file names the holder (host,
pid, start time) for the refusal message and is removed on release. On several
processes only process 0 takes it: the others join the same run.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

from kdjax.errors import KdjaxError


@contextlib.contextmanager
def hold(workdir: str, primary: bool = True) -> Iterator[None]:
  """Holds the lock of `workdir` while the block runs (only if `primary`)."""
  if not primary:
    yield
    return
  fd = _acquire(workdir)
  try:
    yield
  finally:
    # Unlink before unlocking: a run that opens the file meanwhile sees it
    # gone after taking the lock and starts over on a fresh one.
    with contextlib.suppress(OSError):
      os.remove(os.path.join(workdir, '.lock'))
    os.close(fd)


def _acquire(workdir: str) -> int:
  from kdjax.scaffold import ensure_writable  # the same check and message as the run's
  ensure_writable(workdir)
  path = os.path.join(workdir, '.lock')
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise KdjaxError(f'{workdir} is in use by {holder}; wait for it or use another '
                       '--workdir') from None
    try:
      same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:  # released and removed between our open and lock
      same_file = False
    if same_file:
      break
    os.close(fd)
  holder = {'pid': os.getpid(), 'host': socket.gethostname(),
            'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds')}
  os.ftruncate(fd, 0)
  os.write(fd, json.dumps(holder).encode())
  return fd


def _read_holder(fd: int) -> str:
  """'pid N on HOST (started T)' from the lock file, as far as it was written."""
  try:
    holder = json.loads(os.pread(fd, 4096, 0).decode())
    return f"pid {holder['pid']} on {holder['host']} (started {holder['started']})"
  except (OSError, ValueError, KeyError, TypeError):  # its holder is still writing it
    return 'another run'
