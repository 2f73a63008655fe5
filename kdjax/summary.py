"""Sizes, inference speed and the final teacher-vs-student table."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from kdjax import loop, parallel
from kdjax.metrics import compute_metrics
from kdjax.models.bert import count_params
from kdjax.models.hf import export_hf_checkpoint


def inference_speed(predict: Callable, params, arrays: dict[str, np.ndarray],
                    batch_size: int, mesh: Mesh, repeats: int) -> float:
  """Examples per second of the jitted forward pass on one fixed batch.

  The first call (compilation) is excluded; `repeats` calls are timed and
  synchronised once at the end, as a serving loop would run.
  """
  rows = np.arange(batch_size) % len(arrays['input_ids'])
  batch = parallel.to_global({k: v[rows] for k, v in arrays.items()}, mesh)
  jax.block_until_ready(predict(params, batch))
  start = time.perf_counter()
  outs = [predict(params, batch) for _ in range(repeats)]
  jax.block_until_ready(outs)
  return batch_size * repeats / (time.perf_counter() - start)


# A classifier that gives one class to this share of the examples or more
# answers the same whatever it reads (e.g. a student whose states collapsed).
ONE_CLASS_SHARE = 0.99


def top_class_share(outputs: np.ndarray, regression: bool) -> float | None:
  """The share of examples given the most often predicted class (None for a
  regression score): 1.0 means the same answer for every input."""
  if regression:
    return None
  predicted = np.argmax(np.asarray(outputs), axis=-1)
  return float(np.bincount(predicted).max() / len(predicted))


def one_class_warning(summary: dict, role: str = 'student') -> str | None:
  """A warning line when `role` answers one class for (almost) every example
  of the final split while the teacher does not; None otherwise."""
  own = summary[role].get('top_class_share')
  teacher = summary['teacher'].get('top_class_share') or 0.0
  if own is None or own < ONE_CLASS_SHARE or teacher >= ONE_CLASS_SHARE:
    return None
  return (f"warning: the {role} gives one class to {100 * own:.1f}% of the "
          f"{summary['eval_split']} examples (the teacher: {100 * teacher:.1f}%): it has "
          "learned no more than a constant answer")


def describe_model(model_cfg, params, predict, inputs: dict, labels, spec, export_dir: str,
                   tokenizer_dir: str, config, mesh: Mesh, lengths: tuple[int, ...] = (),
                   outputs: np.ndarray | None = None) -> dict:
  """Metrics, size, speed and HF export of one classifier (teacher or student);
  evaluated in the length buckets `lengths` unless its `outputs` on `inputs`
  are given; its speed is timed at full length."""
  if outputs is None:
    outputs = loop.predict_all(predict, params, inputs, config.eval_batch_size, mesh,
                               lengths=lengths)
  metrics = compute_metrics(spec.metrics, outputs, labels, spec.regression)
  host_params = jax.device_get(params)
  if jax.process_index() == 0:
    export_hf_checkpoint(export_dir, model_cfg, host_params['bert'], host_params['classifier'],
                         spec.label_names, tokenizer_dir)
  return {
      'metrics': metrics, 'params': count_params(host_params),
      'top_class_share': top_class_share(outputs, spec.regression),
      'disk_bytes': file_size(os.path.join(export_dir, 'model.safetensors')),
      'examples_per_s': inference_speed(predict, params, inputs, config.eval_batch_size, mesh,
                                        config.speed_repeats),
      'export_dir': export_dir,
      'architecture': {'layers': model_cfg.num_layers, 'hidden': model_cfg.hidden_size,
                       'heads': model_cfg.num_heads, 'intermediate': model_cfg.intermediate_size,
                       'vocab': model_cfg.vocab_size},
  }


def compare(teacher: dict, student: dict, primary: str) -> dict:
  """Kept metric fraction and size / speed ratios of a student against its teacher."""
  return {
      'primary_metric': primary,
      'kept_fraction': student['metrics'][primary] / teacher['metrics'][primary]
      if teacher['metrics'][primary] else float('nan'),
      'param_ratio': teacher['params'] / student['params'],
      'disk_ratio': teacher['disk_bytes'] / max(student['disk_bytes'], 1),
      'speedup': student['examples_per_s'] / teacher['examples_per_s'],
  }


def file_size(path: str) -> int:
  return os.path.getsize(path) if os.path.exists(path) else 0


def align(rows: list[tuple[str, ...]]) -> list[str]:
  """Rows of cells as text lines with every column padded to its widest cell."""
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def format_table(summary: dict) -> str:
  """A short fixed-width table of teacher vs student for the terminal."""
  t, s = summary['teacher'], summary['student']
  metric_names = list(t['metrics'])
  rows = [('', 'teacher', 'student')]
  for name in metric_names:
    rows.append((f"{summary['eval_split']} {name}", f"{t['metrics'][name]:.4f}",
                 f"{s['metrics'][name]:.4f}"))
  rows += [
      ('parameters', f"{t['params'] / 1e6:.2f}M", f"{s['params'] / 1e6:.2f}M"),
      ('disk (fp32 safetensors)', f"{t['disk_bytes'] / 2**20:.1f} MiB",
       f"{s['disk_bytes'] / 2**20:.1f} MiB"),
      ('inference examples/s', f"{t['examples_per_s']:.1f}", f"{s['examples_per_s']:.1f}"),
  ]
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = ['  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths))) for r in rows]
  c = summary['comparison']
  lines.append(f"compression {c['param_ratio']:.1f}x parameters, {c['disk_ratio']:.1f}x disk; "
               f"speed-up {c['speedup']:.1f}x; student keeps "
               f"{100 * c['kept_fraction']:.1f}% of the teacher's {c['primary_metric']}")
  warning = one_class_warning(summary)
  return '\n'.join(lines + ([warning] if warning else []))


def hardware() -> dict:
  """What the run ran on, for result tables."""
  d = jax.devices()[0]
  return {'platform': d.platform, 'device_kind': d.device_kind,
          'device_count': jax.device_count(), 'process_count': jax.process_count(),
          'cpu_count': os.cpu_count(), 'cpus_usable': _usable_cpus(),
          'machine': platform.machine(),
          'jax': jax.__version__}




def _usable_cpus() -> int | None:
  """The cores this process may run on (its affinity), which XLA sizes its CPU
  thread pool by: float results on CPU can differ in the last bits between
  core counts, so a bit-exact rerun needs the same number."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):  # not every platform reports it
    return os.cpu_count()


def code_version() -> dict:
  """The commit of the kdjax source a run used and whether tracked files
  differed from it: with the config, what a run is reproduced from.

  Read once per process, at the first call (a run calls it as it begins): a
  process runs the code it imported, so a commit made while it trains must
  not relabel the runs it finishes later."""
  return dict(_code_version_at_first_call())


@functools.cache
def _code_version_at_first_call() -> dict:
  here = os.path.dirname(os.path.abspath(__file__))

  def git(*args: str) -> str | None:
    try:
      done = subprocess.run(['git', '-C', here, *args], capture_output=True, text=True,
                            timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
      return None
    return done.stdout.strip()

  commit = git('rev-parse', 'HEAD')
  if commit is None:  # an installed copy without its repository
    return {'commit': 'unknown', 'dirty': None}
  changes = git('status', '--porcelain', '--untracked-files=no')
  return {'commit': commit, 'dirty': None if changes is None else bool(changes)}
