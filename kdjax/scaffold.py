"""What every run shares, whatever its method: the checks before it starts, its
workdir, teacher, device mesh, metrics log, config.json, phases, timing and
summary.json.

`launch(config, workdir)` is the one way in, for the CLI and for experiment
scripts alike: it checks the config and the workdir, starts the distributed
runtime and the compilation cache, installs the stop handlers, and calls the
method's `run(config, workdir)`, which builds its pipeline on `begin`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any, Callable

import jax
from jax.sharding import Mesh

from kdjax import (atomic, compile_cache, config_check, distributed, interrupt, parallel, teachers,
                   trained_by, workdir_lock)
from kdjax.data.batching import bucket_lengths
from kdjax.errors import KdjaxError
from kdjax.loop import Cadence, Phase, run_phase
from kdjax.methods import get_method
from kdjax.models.hf import HFCheckpoint
from kdjax.observe import MetricsLog
from kdjax.steps import Start, State
from kdjax.summary import code_version, hardware


def ensure_writable(workdir: str) -> None:
  """Fails before any work if `workdir` cannot be created or written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write-test-{os.getpid()}')  # one per process
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise KdjaxError(f'workdir {workdir!r} is not writable ({e.strerror}); choose '
                     'another --workdir') from None


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


def launch(config, workdir: str) -> tuple[Any, dict]:
  """Checks `config` (a ConfigDict) and `workdir`, prepares the runtime and runs
  the method that `config.method` names; returns (method module, summary)."""
  config_dict = config.to_dict()
  config_check.check(config_dict)
  distributed.initialize()
  compile_cache.enable()
  method = get_method(config_dict.get('method', 'kd'))
  with workdir_lock.hold(workdir, primary=jax.process_index() == 0):  # one run per workdir
    check_same_config(workdir, config_dict)
    finished = finished_summary(workdir)
    if finished is not None:
      return method, finished
    interrupt.install()
    return method, method.run(config, workdir)


def finished_summary(workdir: str) -> dict | None:
  """The summary of a finished run in `workdir` (its config already checked
  the same), or None. summary.json is written last, once every phase is done,
  so its presence means the run is finished: rerunning it returns that summary
  at once instead of re-evaluating, re-exporting and relabelling it. Single
  process only: hosts of a multi-host run resume together (each may not see the
  file), so they take the full path."""
  path = os.path.join(workdir, 'summary.json')
  if jax.process_count() != 1 or not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class Teacher:
  """The teacher checkpoint a run starts from, opened and checked."""
  dir: str
  checkpoint: HFCheckpoint
  tokenizer: Any


@dataclasses.dataclass
class Run:
  """One method run in `workdir`: made by `begin`, used by the method's pipeline."""
  config: Any
  workdir: str
  teacher: Teacher
  mesh: Mesh
  started: float
  log: MetricsLog | None = None
  best: dict[str, dict] = dataclasses.field(default_factory=dict)  # phase -> best evaluation
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # part -> wall time
  journals: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # phase -> trained_by

  @contextlib.contextmanager
  def timed(self, part: str):
    """Adds the wall time of the block to `part` in summary.json's
    `part_seconds` (where a run's time went; parts on two threads overlap)."""
    started = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started

  @property
  def cadence(self) -> Cadence:
    return Cadence.of(self.config)

  @property
  def lengths(self) -> tuple[int, ...]:
    """The sequence lengths of the length buckets (`data.buckets`); () = none."""
    return bucket_lengths(self.config.data.buckets, self.config.data.max_length)

  def open_log(self) -> MetricsLog:
    """Inputs are valid: writes config.json (what a resumed run is checked
    against) and opens the metrics log. Called once the data has loaded, so a
    run refused for bad input leaves no config behind."""
    if jax.process_index() == 0:
      atomic.write_json(self.path('config.json'), self.config.to_dict())
    self.log = MetricsLog(self.workdir)
    return self.log

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def train(self, name: str, start: Start, batches, total_steps: int, eval_fn: Callable,
            *, phase_id: int, seed: int, checkpoint_dir: str | None = None,
            best_metric: str | None = None) -> State:
    """Runs one resumable phase from `start`; returns its final state.

    `phase_id` (kdjax.seeds) is folded into `seed` for the phase's dropout and
    sampling stream; checkpoints go to `checkpoint_dir` (default
    WORKDIR/checkpoints/NAME). With `best_metric` the phase ends with the params
    of its best dev evaluation, recorded in summary.json's `best_checkpoints`."""
    checkpoint_dir = checkpoint_dir or self.path('checkpoints', name)
    phase = Phase(name, start.train_step, batches, total_steps, checkpoint_dir, eval_fn,
                  self.cadence, best_metric)
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), phase_id)

    def note_training(from_step: int) -> None:
      if jax.process_index() == 0:
        trained_by.record(checkpoint_dir, from_step, code_version())

    state, best = run_phase(phase, start.state, rng, self.mesh, self.log, note_training)
    self.journals[name] = trained_by.read(checkpoint_dir)
    if best is not None:
      self.best[name] = best
    return state

  def finish(self, result: dict) -> dict:
    """Adds hardware, code version and wall time to `result`, closes the log and writes
    summary.json; returns `result`.

    `code_version` is the code that trained last (this process's if no phase
    kept a journal); `trained_by` has, per phase, each invocation's version and
    the step it trained from, so a run resumed across commits says so."""
    result.setdefault('hardware', hardware())
    journals = {name: entries for name, entries in self.journals.items() if entries}
    if journals:
      result['trained_by'] = journals
    result.setdefault('code_version', trained_by.latest(journals) or code_version())
    result['teacher_checkpoint'] = self.teacher.dir
    if self.best:  # the dev evaluations whose params each phase ended with
      result['best_checkpoints'] = self.best
    result['wall_seconds'] = time.time() - self.started
    if self.seconds:
      result['part_seconds'] = dict(self.seconds)
    self.log.close()
    if jax.process_index() == 0:
      atomic.write_json(self.path('summary.json'), result)
    return result


def begin(config, workdir: str, teacher_seed: int | None = None) -> Run:
  """Starts a run: checks that `workdir` is writable, opens the teacher (failing
  before anything is written on a missing or mismatched checkpoint) and builds
  the device mesh. `teacher_seed` (default `config.seed`) seeds a missing pooler."""
  started = time.time()
  code_version()  # the code this process runs, before anything can change it
  ensure_writable(workdir)
  seed = config.seed if teacher_seed is None else teacher_seed
  teacher = Teacher(*teachers.open_teacher(teachers.checkpoints_of(config.teacher)[0],
                                           config.data.max_length, seed, config.compute_dtype))
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
  run = Run(config, workdir, teacher, mesh, started)
  if 'buckets' in config.data:
    run.lengths  # a bad data.buckets fails here, before anything is written
  return run
