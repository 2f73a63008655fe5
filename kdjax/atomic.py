"""Write-then-rename: a file or directory appears complete or not at all.

Every artefact another run may read (checkpoint exports, cached teacher
outputs, vocabularies, summaries, plots) is written under a temporary name
beside its final path and renamed when complete, so a kill mid-write never
leaves a half-written file that a later run would load.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Iterator


def _remove(path: str) -> None:
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.exists(path):
    os.remove(path)


@contextlib.contextmanager
def replacing(path: str, suffix: str = '') -> Iterator[str]:
  """Yields a temporary path beside `path` to write to; on success it replaces
  `path` (a file, or a directory, whose old copy is removed first); on failure
  it is removed. `suffix` keeps an extension that a writer insists on (np.savez
  appends '.npz', matplotlib picks the format from it)."""
  tmp = f'{path.rstrip(os.sep)}.tmp-{os.getpid()}{suffix}'
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  try:
    yield tmp
    if os.path.isdir(tmp) and os.path.isdir(path):
      shutil.rmtree(path)
    os.replace(tmp, path)
  except BaseException:
    _remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  with replacing(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)


def write_json(path: str, data) -> None:
  """JSON with sorted keys and indentation (result files are read by people too)."""
  write_text(path, json.dumps(data, indent=2, sort_keys=True))
