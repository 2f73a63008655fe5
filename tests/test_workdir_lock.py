"""One run per workdir: the lock names its holder and dies with it."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from kdjax import workdir_lock
from kdjax.errors import KdjaxError
from tests.conftest import REPO


def test_a_held_workdir_is_refused_naming_the_holder(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(KdjaxError) as e:
      with workdir_lock.hold(str(tmp_path)):
        pass
    assert f'is in use by pid {os.getpid()} on {socket.gethostname()} (started ' in str(e.value)
    with workdir_lock.hold(str(tmp_path), primary=False):  # other processes join the run
      pass
  assert os.listdir(tmp_path) == []  # released and removed
  with workdir_lock.hold(str(tmp_path)):
    pass


def test_the_lock_of_a_killed_run_is_free(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from kdjax import workdir_lock\n'
       'with workdir_lock.hold(sys.argv[1]):\n  print("held", flush=True); time.sleep(120)',
       str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(KdjaxError, match=f'pid {holder.pid} '):
      with workdir_lock.hold(str(tmp_path)):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert os.path.exists(tmp_path / '.lock')  # left behind by the kill, yet free
  with workdir_lock.hold(str(tmp_path)):
    pass
