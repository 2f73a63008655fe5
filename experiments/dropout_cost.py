"""What dropout costs in the student's train step, with flax's Dropout and with
kdjax's (kdjax.models.dropout: two 16-bit draws per 32-bit random word).

  python experiments/dropout_cost.py [--lengths 64,128] [--rounds 5]

The default 4 x 256 student's KD train step (batch 32, random ids at full
length) compiled three times in one process: with kdjax's Dropout, with
`flax.linen.Dropout` swapped into the model (the baseline), and with no dropout
(rates as configured, but the layer returns its input: the floor). Timed
calls alternate the three programs, rounds of 5 calls each; the median call
per program. Writes experiments/results/dropout_cost.{md,json}.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import time

import numpy as np

from common import default_student_step, write_markdown, write_record

VARIANTS = ('kdjax', 'flax', 'none')


class _NoDropout:
  """Stands in for a dropout layer class: returns the input."""

  def __init__(self, rate):
    del rate

  def __call__(self, x, deterministic):
    return x


@contextlib.contextmanager
def dropout_layer(variant: str):
  """Swaps the dropout class the encoder and the task head build while a step is traced."""
  import flax.linen as nn
  from kdjax.models import bert, heads
  replacement = {'kdjax': bert.Dropout, 'flax': nn.Dropout, 'none': _NoDropout}[variant]
  saved = bert.Dropout, heads.Dropout
  bert.Dropout = heads.Dropout = replacement
  try:
    yield
  finally:
    bert.Dropout, heads.Dropout = saved


def time_variants(length: int, rounds: int) -> dict:
  import jax
  programs = {}
  for variant in VARIANTS:
    with dropout_layer(variant):
      step, state, batch = default_student_step(length)
      compiled = step.lower(state, batch, jax.random.PRNGKey(0)).compile()
      programs[variant] = [compiled, state, batch]
  times = {v: [] for v in VARIANTS}
  for r in range(rounds + 1):  # round 0 warms up
    for variant in VARIANTS:
      step, _, batch = programs[variant]
      for k in range(5):
        started = time.perf_counter()  # the step donates its state: keep the new one
        programs[variant][1], metrics = step(programs[variant][1], batch, jax.random.PRNGKey(k))
        jax.block_until_ready(metrics)
        if r:
          times[variant].append(time.perf_counter() - started)
  median = {v: float(np.median(t)) for v, t in times.items()}
  return {'median_step_s': median, 'calls': {v: len(t) for v, t in times.items()},
          'flax_over_kdjax': median['flax'] / median['kdjax'],
          'dropout_share_flax': (median['flax'] - median['none']) / median['flax'],
          'dropout_share_kdjax': (median['kdjax'] - median['none']) / median['kdjax']}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--lengths', default='64,128')
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  import jax
  lengths = [int(x) for x in args.lengths.split(',')]
  record = {'command': 'python experiments/dropout_cost.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(),
            'hardware': f'{platform.machine()}, {os.cpu_count()} CPU cores, '
                        f'{jax.device_count()} {jax.default_backend()} device(s)',
            'jax': jax.__version__, 'batch': 32, 'student': '4 x 256, feed-forward 1024',
            'by_length': {str(n): time_variants(n, args.rounds) for n in lengths}}
  lines = ['# Dropout in the student\'s train step', '',
           f"Command: `{record['command']}` ({record['date']}); {record['hardware']}; "
           f"jax {record['jax']}. The default 4 x 256 student's KD train step, batch 32 at "
           'full length, compiled with each dropout layer in one process; calls alternate '
           'the programs; median of the timed calls.', '',
           '| length | kdjax Dropout (ms) | flax Dropout (ms) | no dropout (ms) | flax / kdjax '
           '| dropout share of the step, flax | kdjax |', '|---|---|---|---|---|---|---|']
  for n, r in record['by_length'].items():
    m = r['median_step_s']
    lines.append(f"| {n} | {m['kdjax'] * 1e3:.1f} | {m['flax'] * 1e3:.1f} | "
                 f"{m['none'] * 1e3:.1f} | {r['flax_over_kdjax']:.2f}x | "
                 f"{r['dropout_share_flax']:.0%} | {r['dropout_share_kdjax']:.0%} |")
  write_record('dropout_cost', record)
  write_markdown('dropout_cost', lines)
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
