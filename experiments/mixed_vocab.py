"""Mixed-vocabulary distillation: how small does the student get, and what does
it keep?

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/mixed_vocab.py \
      --workdir runs/mixed_exp --tasks sst2,mrpc --seeds 0,1,2 [--config.KEY=VALUE ...]
  python experiments/mixed_vocab.py --quick     # RTE, tiny: a smoke test
  python experiments/mixed_vocab.py --rewrite   # redo the table from the saved JSON

One student vocabulary and one Stage I + II pre-training on the corpus
(configs/mixed_vocab.py, shared by every task and seed: WORKDIR/shared), one
fine-tuned teacher per task (WORKDIR/teachers); then per task and seed three
students of the same size and vocabulary: trained on the task alone
('no distillation'), Stages I-II then the task without KD, and Stages I-III
with task KD. Writes experiments/results/mixed_vocab{,_quick}.md and .json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

from common import (RESULTS, apply_overrides, guarded, load_config, mean_std, prepare_runtime,
                    run_method)

VARIANTS = {  # key: (label, mixed.pretrain, distill.alpha or None for the config's)
    'task_only': ('same student, no distillation', False, 1.0),
    'mixed_no_kd': ('Stages I-II, task without KD', True, 1.0),
    'mixed': ('Stages I-III (mixed vocabulary + task KD)', True, None),
}


def run_all(config, workdir: str, tasks: list[str], seeds: list[int]) -> dict:
  runs = {task: {} for task in tasks}
  for seed in seeds:  # seed-major: a run stopped early has whole seeds of every task
    for task in tasks:
      for key, (_, pretrain, alpha) in VARIANTS.items():
        c = config.copy_and_resolve_references()
        c.data.task, c.seed = task, seed
        c.data.source = 'bbc' if task == 'bbc' else config.data.source
        c.mixed.pretrain = pretrain
        if alpha is not None:
          c.distill.alpha = alpha
        runs[task].setdefault(key, []).append(
            run_method(c, os.path.join(workdir, task, f'{key}-seed{seed}')))
  return runs


def build_table(runs: dict) -> dict:
  table = {}
  for task, by_variant in runs.items():
    first = next(iter(by_variant.values()))[0]
    metric = first['comparison']['primary_metric']
    teacher = first['teacher']
    rows = {}
    for key, results in by_variant.items():
      s = results[0]['student']
      rows[key] = {'metric': mean_std([r['student']['metrics'][metric] for r in results]),
                   'kept': mean_std([r['comparison']['kept_fraction'] for r in results]),
                   'speedup': mean_std([r['comparison']['speedup'] for r in results]),
                   'seeds': len(results),
                   'params': s['params'], 'disk_bytes': s['disk_bytes'],
                   'disk_bytes_fp16': s['disk_bytes_fp16'],
                   'vocab': s['architecture']['vocab']}
    table[task] = {'metric': metric, 'eval_split': first['eval_split'],
                   'teacher': {'metric': teacher['metrics'][metric],
                               'params': teacher['params'],
                               'disk_bytes': teacher['disk_bytes'],
                               'vocab': teacher['architecture']['vocab']},
                   'rows': rows, 'train_size': first['data_sizes']['train'],
                   'eval_size': first['data_sizes'][first['eval_split']],
                   'corpus_texts': first['corpus_texts']}
  return table


def reading(table: dict) -> list[str]:
  lines = []
  for task, t in table.items():
    mixed, base = t['rows']['mixed'], t['rows']['task_only']
    no_kd = t['rows']['mixed_no_kd']
    mb = mixed['disk_bytes'] / 1e6
    delta = mixed['metric'][0] - base['metric'][0]
    noise = max(mixed['metric'][1], base['metric'][1])
    lines.append(
        f"{task}: the mixed-vocabulary student is {mb:.2f} MB on disk (fp32; "
        f"{'under' if mb < 7 else 'over'} 7 MB), {t['teacher']['disk_bytes'] / mixed['disk_bytes']:.1f}x "
        f"smaller than the teacher, and keeps {mixed['kept'][0]:.1%} of its {t['metric']} "
        f"({mixed['metric'][0]:.4f} vs {t['teacher']['metric']:.4f}).")
    spread = (f"{'beyond' if abs(delta) > noise else 'within'} the seed std {noise:.4f}"
              if mixed['seeds'] > 1 else 'one seed, so no spread is measured')
    lines.append(
        f"{task}: against the same student without distillation ({base['metric'][0]:.4f}) "
        f"the mixed-vocabulary student is {delta:+.4f} ({spread}); Stages I-II without task "
        f"KD give {no_kd['metric'][0]:.4f}.")
  return lines


def write_results(name: str, record: dict) -> None:
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f'{name}.json'), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  c, hw = record['config'], record['hardware']
  st = c['student']
  lines = [f"# Mixed-vocabulary distillation ({record['variant']})", '',
           f"Command: `{record['command']}`  ",
           f"Seeds: {record['seeds']} (Stage III; the vocabulary and Stages I-II are trained "
           f"once, seed {c['mixed']['pretrain_seed']}); wall clock {record['wall_minutes']:.1f} min; "
           f"hardware: {hw['cpu_count']} CPU cores, {hw['device_count']} {hw['platform']} "
           f"device(s), jax {hw['jax']}; date {record['date']}.  ",
           f"Teacher: all-MiniLM-L6-v2 fine-tuned {c['teacher']['epochs']:g} epochs per task. "
           f"Student: {st['num_layers']} layers x {st['hidden_size']}, "
           f"{c['mixed']['vocab_size']}-token WordPiece vocabulary trained on the "
           f"'{c['mixed']['corpus']}' corpus; Stage I {c['stage1']['steps']} steps (p_SV to "
           f"{c['stage1']['p_student']}), Stage II {c['stage2']['steps']} steps (projection "
           f"{c['stage2']['projection']}), Stage III {c['distill']['epochs']:g} epochs "
           f"(KD alpha {c['distill']['alpha']}). Max length {c['data']['max_length']}.", '']
  for task, t in record['table'].items():
    m = t['metric']
    lines += [f'## {task}', '',
              f"Task training examples {t['train_size']}; evaluated on {t['eval_size']} "
              f"{t['eval_split']} examples; corpus {t['corpus_texts']} texts.", '',
              f'| model | {m} | kept | vocabulary | parameters | fp32 safetensors | '
              'fp16 safetensors | compression (fp32) | speed-up |',
              '|---|---|---|---|---|---|---|---|---|',
              f"| teacher | {t['teacher']['metric']:.4f} | 100% | {t['teacher']['vocab']:,} | "
              f"{t['teacher']['params']:,} | {t['teacher']['disk_bytes'] / 1e6:.2f} MB | - | "
              "1x | 1x |"]
    for key, row in t['rows'].items():
      lines.append(
          f"| {VARIANTS[key][0]} | {row['metric'][0]:.4f} ± {row['metric'][1]:.4f} | "
          f"{row['kept'][0]:.1%} | {row['vocab']:,} | {row['params']:,} | "
          f"{row['disk_bytes'] / 1e6:.2f} MB | {row['disk_bytes_fp16'] / 1e6:.2f} MB | "
          f"{t['teacher']['disk_bytes'] / row['disk_bytes']:.1f}x | {row['speedup'][0]:.1f}x |")
    lines.append('')
  lines += ['## Reading', ''] + [f'- {line}' for line in record['reading']]
  with open(os.path.join(RESULTS, f'{name}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/mixed_exp')
  parser.add_argument('--tasks', default='sst2,mrpc')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--rewrite', action='store_true',
                      help='rebuild the table and reading from the saved JSON')
  args, overrides = parser.parse_known_args()
  name = 'mixed_vocab_quick' if args.quick else 'mixed_vocab'
  if args.rewrite:
    with open(os.path.join(RESULTS, f'{name}.json')) as f:
      record = json.load(f)
    record['table'] = build_table(record['runs'])
    record['reading'] = reading(record['table'])
    write_results(name, record)
    return
  prepare_runtime()
  from kdjax.summary import hardware

  started = time.time()
  config = load_config('mixed_vocab', 'quick' if args.quick else None)
  apply_overrides(config, overrides)
  tasks = ['rte'] if args.quick and args.tasks == 'sst2,mrpc' else args.tasks.split(',')
  seeds = [0] if args.quick and args.seeds == '0,1,2' else [int(s) for s in
                                                            args.seeds.split(',')]
  if not config.data.glue_dir and any(t != 'bbc' for t in tasks):
    sys.exit('kdjax: error: set KDJAX_GLUE_DIR or --config.data.glue_dir')
  config.teacher.store_dir = os.path.abspath(os.path.join(args.workdir, 'teachers'))
  config.mixed.shared_dir = os.path.abspath(os.path.join(args.workdir, 'shared'))
  runs = run_all(config, args.workdir, tasks, seeds)  # finished runs resume instantly
  table = build_table(runs)
  record = {'name': name, 'variant': 'quick' if args.quick else 'full',
            'command': 'python experiments/mixed_vocab.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(), 'seeds': seeds, 'tasks': tasks,
            'config': config.to_dict(), 'hardware': hardware(),
            'wall_minutes': (time.time() - started) / 60, 'table': table, 'runs': runs}
  record['reading'] = reading(table)
  write_results(name, record)


if __name__ == '__main__':
  guarded(main)
