"""Run observability: metrics.jsonl, TensorBoard events, progress bars."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
from tqdm.auto import tqdm

from kdjax import atomic


class MetricsLog:
  """Appends `{"phase", "step", ...}` lines to metrics.jsonl and TensorBoard scalars.

  Only process 0 writes, so multi-host runs produce one log.
  """

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.tb_dir = os.path.join(workdir, 'tensorboard')
    self._writers = {}

  def write(self, phase: str, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in metrics.items()}
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(json.dumps({'phase': phase, 'step': step, 'time': time.time(), **clean}) + '\n')
    writer = self._writer(phase)
    for k, v in clean.items():
      if math.isfinite(v):
        writer.add_scalar(k, v, step)
    writer.flush()

  def rewind(self, phase: str, step: int) -> None:
    """Drops `phase`'s lines after `step` (a resumed run logs them again)."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path, encoding='utf-8') as f:
      lines = f.readlines()
    kept = [l for l in lines if not _after(l, phase, step)]
    if len(kept) == len(lines):
      return
    atomic.write_text(self.path, ''.join(kept))

  def _writer(self, phase: str):
    if phase not in self._writers:
      from tensorboardX import SummaryWriter  # writes events without TensorFlow
      self._writers[phase] = SummaryWriter(os.path.join(self.tb_dir, phase))
    return self._writers[phase]

  def close(self) -> None:
    for w in self._writers.values():
      w.close()
    self._writers = {}


def _after(line: str, phase: str, step: int) -> bool:
  try:
    record = json.loads(line)
  except json.JSONDecodeError:  # a line cut short by a kill: drop it
    return True
  return record.get('phase') == phase and record.get('step', 0) > step


def progress(total: int, desc: str, initial: int = 0, unit: str = 'step') -> tqdm:
  """A progress bar with rate and ETA on stderr (silent on non-zero processes)."""
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
              disable=jax.process_index() != 0, file=sys.stderr, leave=True)
