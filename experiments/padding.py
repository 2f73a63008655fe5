"""How much of every batch is padding: at `max_length`, with per-batch dynamic
padding (what a PyTorch loop gets by padding each batch to its longest row), and
with kdjax's length buckets. Tokenization only, no training: seconds.

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/padding.py

Writes experiments/results/padding.{md,json}. The padded share is the share of
token positions in the training batches of one epoch that hold no token; the
matmuls of a forward pass scale with those positions.
"""
from __future__ import annotations

import datetime
import json
import os
import sys

import numpy as np

from common import RESULTS

# (task, max_length, batch size) as the shipped configs run them.
JOBS = (('sst2', 64, 32), ('mrpc', 64, 32), ('rte', 64, 32), ('cola', 64, 32),
        ('bbc', 128, 32))
BUCKET_SETS = ((8, 16, 24, 32, 48, 64, 96, 128),  # data.buckets, the default
               (16, 32, 64, 128))


def padded_shares(arrays: dict, max_length: int, batch_size: int, buckets: tuple[int, ...],
                  seed: int = 0) -> dict:
  from kdjax.data.batching import BucketedBatches, bucket_lengths
  tokens = arrays['attention_mask'].sum(1)
  n, real = len(tokens), float(tokens.sum())
  order = np.random.default_rng(seed).permutation(n)
  full_batches = [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
  dynamic = sum(len(b) * tokens[b].max() for b in full_batches)
  dynamic_real = sum(tokens[b].sum() for b in full_batches)
  lengths = bucket_lengths(buckets, max_length)
  bucketed = BucketedBatches(arrays, batch_size, seed=seed, lengths=lengths)
  positions = sum(batch_size * length for length, _ in bucketed.epoch_plan(0))
  return {'examples': n, 'mean_tokens': real / n, 'max_length': max_length,
          'buckets': list(lengths),
          'padded_at_max_length': 1 - real / (n * max_length),
          'padded_dynamic': 1 - dynamic_real / dynamic,
          'padded_buckets': 1 - real / positions,
          'positions_ratio_max_length_to_buckets': n * max_length / positions}


def main() -> None:
  from kdjax.data import sources
  from kdjax.data.tasks import get_task
  from kdjax.data.tokenize import encode, load_tokenizer
  from kdjax.teachers import bundled_teacher_dir
  glue_dir = os.environ.get('KDJAX_GLUE_DIR', '')
  tokenizer = load_tokenizer(bundled_teacher_dir())
  rows = {}
  for task, max_length, batch_size in JOBS:
    if task == 'bbc':
      examples = sources.load_bbc(sources.bbc_root(), 0, 0.1, 0.1)['train']
    else:
      if not glue_dir:
        sys.exit('kdjax: error: set KDJAX_GLUE_DIR for the GLUE tasks')
      examples = sources.load_glue_dir(get_task(task).name, glue_dir)['train']
    arrays = encode(tokenizer, examples, max_length)
    rows[task] = [padded_shares(arrays, max_length, batch_size, b) for b in BUCKET_SETS]
  record = {'command': 'python experiments/padding.py', 'date': datetime.date.today().isoformat(),
            'tokenizer': 'all-MiniLM-L6-v2 (bundled)', 'batch_size': 32, 'rows': rows}
  with open(os.path.join(RESULTS, 'padding.json'), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  lines = ['# Padding in training batches', '',
           f"Command: `{record['command']}` ({record['date']}); tokenizer of the bundled "
           'all-MiniLM-L6-v2; training sets in full; batches of 32; one epoch.', '',
           '| data | examples | mean tokens | max_length | padded at max_length | '
           'padded, per-batch dynamic | padded, buckets | positions max_length / buckets |',
           '|---|---|---|---|---|---|---|---|']
  for task, by_set in rows.items():
    for r in by_set:
      lines.append(f"| {task} | {r['examples']:,} | {r['mean_tokens']:.1f} | {r['max_length']} | "
                   f"{r['padded_at_max_length']:.1%} | {r['padded_dynamic']:.1%} | "
                   f"{r['padded_buckets']:.1%} (buckets {tuple(r['buckets'])}) | "
                   f"{r['positions_ratio_max_length_to_buckets']:.2f}x |")
  lines += ['', f"First row of each task: `data.buckets` = {BUCKET_SETS[0]} (the default), "
            'capped at max_length; second: the coarser '
            f'{BUCKET_SETS[1]}. Per-batch dynamic padding: batches of 32 in a random order, '
            'each padded to its longest row.']
  with open(os.path.join(RESULTS, 'padding.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
