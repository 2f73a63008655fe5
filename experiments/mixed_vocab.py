"""Mixed-vocabulary distillation: how small does the student get, what does it
keep, and what do Stages I-II add beyond the teacher-derived initialisation?

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/mixed_vocab.py \
      --workdir runs/mixed_exp [--tasks sst2,bbc,stsb --seeds 0,1,2] [--config.KEY=VALUE ...]
  python experiments/mixed_vocab.py --quick     # BBC and STS-B, tiny, one seed: a smoke test
  python experiments/mixed_vocab.py --rewrite   # redo the table from the saved JSON
  python experiments/mixed_vocab.py --sizes     # the student's size, and the trades for 7 MB

One student vocabulary and one Stage I + II pre-training on the corpus
(configs/mixed_vocab.py, shared by every task and seed: WORKDIR/shared), one
fine-tuned teacher per task (WORKDIR/teachers); then per task and seed six
students of the same size and vocabulary (ARMS): trained on the task alone from
random embeddings, trained on the task alone from the teacher-derived
embeddings Stage I starts from (the control arm), Stages I-II then the task
without KD, Stages I-III, Stages I-III whose task KD also covers a transfer
set (teacher-labelled perturbed copies of the training set), and Stages I-III
trained as many steps as that one on the training set alone (and, where
--arms names it, Stages I-III with a four times larger transfer set). Runs live in
WORKDIR/<task>/<arm>-seed<k>: a stopped experiment started again resumes, and
finished runs return at once.

  python experiments/mixed_vocab.py --arms stages_1_3,stages_1_3_transfer --keep-saved

runs only the named arms and takes the others' runs from the saved results
JSON (an arm added later need not rerun the rest; with --tasks, the saved
tasks not named keep all their runs): every run records its code
version, the table names the versions it mixes, and an arm both run now and
saved is compared seed by seed, so the table says whether the saved runs
reproduce under the code that runs now.
Writes experiments/results/mixed_vocab{,_quick}.md and .json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from common import (RESULTS, apply_overrides, check_same_setup, guarded, load_config,
                    load_saved_record, mean_std, prepare_runtime, run_method, write_markdown,
                    write_record)
from kdjax import trained_by

TRANSFER_COPIES = 4  # perturbed copies per training example in the transfer-set arm
LARGE_TRANSFER_COPIES = 16  # the larger transfer set: does more of the teacher's function help?
# key: (label, mixed.pretrain, mixed.embedding_init, distill.alpha or None for
# the config's, distill.augment_copies, factor on distill.epochs)
ARMS = {
    'task_random': ('task only, random embeddings', False, 'random', 1.0, 0, 1),
    'task_teacher': ('task only, teacher-derived embeddings', False, 'teacher', 1.0, 0, 1),
    'stages_1_2': ('Stages I-II, then the task without KD', True, 'teacher', 1.0, 0, 1),
    'stages_1_3': ('Stages I-III (task KD)', True, 'teacher', None, 0, 1),
    'stages_1_3_transfer': (f'Stages I-III, task KD with a transfer set (x{TRANSFER_COPIES})',
                            True, 'teacher', None, TRANSFER_COPIES, 1),
    # The transfer set's arm takes 1 + TRANSFER_COPIES times the steps: this arm
    # takes as many on the training set alone, so the pair tells the copies'
    # effect from that of longer training.
    'stages_1_3_long': (f'Stages I-III, {1 + TRANSFER_COPIES}x the epochs', True, 'teacher',
                        None, 0, 1 + TRANSFER_COPIES),
    # Four times the copies (and so ~3.4x the steps of the x4 arm): not among
    # the default arms, it runs on the tasks named with it.
    'stages_1_3_transfer16': (
        f'Stages I-III, task KD with a transfer set (x{LARGE_TRANSFER_COPIES})', True, 'teacher',
        None, LARGE_TRANSFER_COPIES, 1),
}
DEFAULT_ARMS = tuple(a for a in ARMS if a != 'stages_1_3_transfer16')
# Per-seed paired differences (arm - arm): runs of one seed share the vocabulary,
# the classifier head's initial weights and the data order, so the pairing
# removes that shared noise.
DIFFERENCES = (
    ('stages_1_2', 'task_teacher'),  # pre-training beyond the initialisation, no KD in either
    ('stages_1_3', 'task_teacher'),  # pre-training and task KD beyond the initialisation
    ('task_teacher', 'task_random'),  # the initialisation alone
    ('stages_1_3_transfer', 'stages_1_3'),  # the transfer set
    ('stages_1_3_long', 'stages_1_3'),  # longer training alone
    ('stages_1_3_transfer', 'stages_1_3_long'),  # the copies at the same number of steps
    ('stages_1_3_transfer16', 'stages_1_3_transfer'),  # four times the copies
)
FULL_TASKS, QUICK_TASKS = 'sst2,bbc,stsb', 'bbc,stsb'
FULL_SEEDS, QUICK_SEEDS = '0,1,2', '0'
KEPT_TARGET = 0.9  # of the teacher's metric
SIZE_TARGET = 7e6  # bytes of fp32 weights


def arm_config(config, task: str, seed: int, arm: str):
  _, pretrain, embedding_init, alpha, copies, epochs_factor = ARMS[arm]
  c = config.copy_and_resolve_references()
  c.data.task, c.seed = task, seed
  c.data.source = 'bbc' if task == 'bbc' else config.data.source
  c.mixed.pretrain, c.mixed.embedding_init = pretrain, embedding_init
  c.distill.augment_copies = copies
  c.distill.epochs = config.distill.epochs * epochs_factor
  if alpha is not None:
    c.distill.alpha = alpha
  return c


def run_all(config, workdir: str, tasks: list[str], seeds: list[int],
            arms: list[str] = DEFAULT_ARMS) -> dict:
  runs = {task: {arm: [] for arm in arms} for task in tasks}
  for seed in seeds:  # seed-major: a run stopped early has whole seeds of every task
    for task in tasks:
      for arm in arms:
        runs[task][arm].append(run_method(arm_config(config, task, seed, arm),
                                          os.path.join(workdir, task, f'{arm}-seed{seed}')))
  return runs


def with_saved_arms(runs: dict, saved: dict, seeds: list[int],
                    config: dict) -> tuple[dict, dict]:
  """`runs` completed by the saved record's runs of the arms and tasks not run
  now (an arm run on some tasks only leaves the others' saved runs), and
  the reproduction checks: per task and arm trained anew now and also saved,
  the new minus the saved metric seed by seed (0 everywhere: the saved runs
  reproduce under the code that runs now), with both code versions; checks the
  saved record carries over for arms not trained anew. A run that only resumed
  the saved one (same workdir, same summary) is no check. Refuses a record of
  other seeds or config values (paths aside; keys added since the record was
  written are not compared)."""
  check_same_setup(saved, config, seeds, 'rerun every arm')
  merged = {}
  reproduction = {task: dict(by_arm) for task, by_arm in saved.get('reproduction', {}).items()}
  commits = lambda r: {v.get('commit', 'unknown') for v in trained_by.versions_of(r)}
  # the saved tasks in their order, then the tasks new to the record
  saved_tasks = saved.get('tasks', list(saved['runs']))  # the JSON's runs are key-sorted
  for task in saved_tasks + [t for t in runs if t not in saved_tasks]:
    by_arm, saved_arms = runs.get(task, {}), saved['runs'].get(task, {})
    merged[task] = {arm: by_arm.get(arm) or saved_arms.get(arm) for arm in ARMS
                    if by_arm.get(arm) or saved_arms.get(arm)}
    for arm in (a for a in by_arm if saved_arms.get(a)):
      pairs = list(zip(by_arm[arm], saved_arms[arm]))
      if all(new == old for new, old in pairs):
        continue  # resumed, not trained again
      metric = by_arm[arm][0]['comparison']['primary_metric']
      reproduction.setdefault(task, {})[arm] = {
          'diffs': [new['student']['metrics'][metric] - old['student']['metrics'][metric]
                    for new, old in pairs],
          'rerun_code': sorted(set().union(*(commits(new) for new, _ in pairs))),
          'saved_code': sorted(set().union(*(commits(old) for _, old in pairs)))}
  return merged, reproduction


def code_versions(runs: dict) -> dict:
  """commit -> the arms whose runs it trained (a record may mix versions)."""
  out = {}
  for by_arm in runs.values():
    for arm, results in ((a, by_arm[a]) for a in ARMS if a in by_arm):  # JSON: key-sorted
      for version in (v for r in results for v in trained_by.versions_of(r)):
        key = version.get('commit', 'unknown') + (' (with local changes)'
                                                  if version.get('dirty') else '')
        out.setdefault(key, [])
        if arm not in out[key]:
          out[key].append(arm)
  return out


def clearly_above(values: list[float], baseline: float) -> bool:
  """Above a baseline by more than 1 point and more than twice the seed std."""
  mean, std = mean_std(values)
  return mean - baseline > max(0.01, 2.0 * std)


def build_table(runs: dict) -> dict:
  table = {}
  for task, by_arm in runs.items():
    # the teacher and data as the first arm (in ARMS order) recorded them
    first = next(by_arm[a][0] for a in ARMS if by_arm.get(a))
    metric = first['comparison']['primary_metric']
    teacher = first['teacher']
    majority = first['majority'][metric]
    rows = {}
    # in ARMS order, also when read back from the (key-sorted) JSON; a record
    # written before an arm existed lacks it
    for arm in (a for a in ARMS if by_arm.get(a)):
      results = by_arm[arm]
      s = results[0]['student']
      values = [r['student']['metrics'][metric] for r in results]
      rows[arm] = {'metric': mean_std(values), 'per_seed': values,
                   'kept': mean_std([r['comparison']['kept_fraction'] for r in results]),
                   'speedup': mean_std([r['comparison']['speedup'] for r in results]),
                   'examples_per_s': mean_std([r['student']['examples_per_s'] for r in results]),
                   'above_majority': clearly_above(values, majority),
                   'seeds': len(results), 'params': s['params'],
                   'disk_bytes': s['disk_bytes'], 'disk_bytes_fp16': s['disk_bytes_fp16'],
                   'vocab': s['architecture']['vocab']}
    paired = {}
    for a, b in (d for d in DIFFERENCES if d[0] in rows and d[1] in rows):
      diffs = [x - y for x, y in zip(rows[a]['per_seed'], rows[b]['per_seed'])]
      paired[f'{a} - {b}'] = {'per_seed': diffs, 'mean_std': mean_std(diffs),
                              'wins': sum(d > 0 for d in diffs)}
    table[task] = {'metric': metric, 'eval_split': first['eval_split'],
                   'majority': majority,
                   'teacher': {'metric': teacher['metrics'][metric], 'params': teacher['params'],
                               'disk_bytes': teacher['disk_bytes'],
                               'examples_per_s': teacher['examples_per_s'],
                               'vocab': teacher['architecture']['vocab']},
                   'rows': rows, 'paired': paired,
                   'data_sizes': {k: first['data_sizes'][k] for k in ('train', 'dev', 'test')
                                  if k in first['data_sizes']},
                   'corpus_texts': first['corpus_texts'], 'student_vocab': first['student_vocab']}
  return table


def reading(table: dict, reproduction: dict | None = None) -> list[str]:
  """The verdicts, computed from the numbers."""
  lines = []
  for task, by_arm in ((t, reproduction[t]) for t in table if t in (reproduction or {})):
    for arm, check in ((a, by_arm[a]) for a in ARMS if a in by_arm):
      diffs = check['diffs']
      largest = max(abs(d) for d in diffs)
      lines.append(f"{task}, {ARMS[arm][0]}: trained again under "
                   f"{', '.join(c[:7] for c in check['rerun_code'])}, the runs of "
                   f"{', '.join(c[:7] for c in check['saved_code'])} "
                   + ('reproduce exactly on every seed.' if largest == 0 else
                      f"differ by up to {largest:.4f} (per seed "
                      f"{', '.join(f'{d:+.4f}' for d in diffs)})."))
  small = lambda row: row['disk_bytes'] < SIZE_TARGET
  keeps = [arm for arm in ARMS if all(
      arm in t['rows'] and small(t['rows'][arm]) and t['rows'][arm]['kept'][0] >= KEPT_TARGET
      for t in table.values())]
  kept = '; '.join(f"{task} " + ', '.join(f"{ARMS[a][0]} {row['kept'][0]:.1%}"
                                          for a, row in t['rows'].items())
                   for task, t in table.items())
  lines.append(
      (f"A student under {SIZE_TARGET / 1e6:g} MB keeps >= {KEPT_TARGET:.0%} of the teacher's "
       f"metric on every task: {', '.join(ARMS[a][0] for a in keeps)}." if keeps else
       f"No one arm's student under {SIZE_TARGET / 1e6:g} MB keeps >= {KEPT_TARGET:.0%} of "
       "the teacher's metric on every task.") + f" Kept (mean over seeds): {kept}.")
  # The best arm may differ by task (an arm may run on some tasks only).
  best = {task: max((a for a, row in t['rows'].items() if small(row)),
                    key=lambda a: t['rows'][a]['kept'][0]) for task, t in table.items()}
  short = [task for task, a in best.items() if table[task]['rows'][a]['kept'][0] < KEPT_TARGET]
  lines.append(f"Best student under {SIZE_TARGET / 1e6:g} MB per task: " + '; '.join(
      f"{task} {ARMS[a][0]} {table[task]['rows'][a]['kept'][0]:.1%}" for task, a in best.items())
      + (f"; below {KEPT_TARGET:.0%} on {', '.join(short)}." if short else
         f"; >= {KEPT_TARGET:.0%} on every task."))
  for task, t in table.items():
    below = [ARMS[a][0] for a, row in t['rows'].items() if not row['above_majority']]
    if below:
      lines.append(f"{task}: not clearly above the majority baseline {t['majority']:.4f} "
                   f"(by > 1 point and > 2 seed std): {', '.join(below)}.")
  for a, b in DIFFERENCES:
    key = f'{a} - {b}'
    parts = []
    for task, t in ((task, t) for task, t in table.items() if key in t['paired']):
      p = t['paired'][key]
      mean, std = p['mean_std']
      noise = max(t['rows'][a]['metric'][1], t['rows'][b]['metric'][1])
      n = len(p['per_seed'])
      # Beyond the noise: larger than either arm's seed std and than two
      # standard errors of the paired mean.
      verdict = (('beyond' if abs(mean) > max(noise, 2 * std / np.sqrt(n)) else 'within')
                 + ' the noise') if n > 1 else 'one seed: no spread measured'
      parts.append(f"{task} {mean:+.4f} ± {std:.4f} (per seed "
                   f"{', '.join(f'{d:+.4f}' for d in p['per_seed'])}; {p['wins']} of {n} "
                   f"positive; {verdict})")
    if parts:
      lines.append(f"{ARMS[a][0]} minus {ARMS[b][0]}: " + '; '.join(parts) + '.')
  return lines


def arms_named(table: dict) -> str:
  """The arms in the table, each named with the tasks it ran on where not all."""
  names = []
  for arm in ARMS:
    tasks = [task for task, t in table.items() if arm in t['rows']]
    if tasks:
      names.append(f"'{ARMS[arm][0]}'" + ('' if len(tasks) == len(table)
                                          else f" ({', '.join(tasks)} only)"))
  return '; '.join(names)


def write_results(name: str, record: dict) -> None:
  write_record(name, record)
  c, hw = record['config'], record['hardware']
  st = c['student']
  versions = code_versions(record['runs'])
  lines = [f"# Mixed-vocabulary distillation ({record['variant']})", '',
           f"Command: `{record['command']}`  ",
           *(["Earlier commands whose runs it keeps: "
              + '; '.join(f'`{c}`' for c in record['earlier_commands']) + '  ']
             if record.get('earlier_commands') else []),
           'Code: ' + ('; '.join(f"{commit} ({', '.join(arms)})"
                                for commit, arms in versions.items())
                      if len(versions) > 1 else next(iter(versions))) + '; '
           f"seeds {record['seeds']} (Stage III; the vocabulary and Stages I-II are trained "
           f"once, seed {c['mixed']['pretrain_seed']}, and shared by every task and seed); "
           f"wall clock {record['wall_minutes']:.1f} min (this invocation: runs it resumed count "
           f"only their remaining part); hardware: {hw['cpu_count']} CPU cores, "
           f"{hw['device_count']} {hw['platform']} device(s), jax {hw['jax']}; "
           f"date {record['date']}.  ",
           f"Teacher: all-MiniLM-L6-v2 fine-tuned for {c['teacher']['epochs']:g} epoch(s) per task "
           f"(seed {c['teacher']['seed']}). Student: {st['num_layers']} layers x "
           f"{st['hidden_size']}, feed-forward {st['intermediate_size']}, "
           f"{st['max_positions']} positions, {c['mixed']['vocab_size']}-token WordPiece "
           f"vocabulary trained on the '{c['mixed']['corpus']}' corpus (at most "
           f"{c['mixed']['max_corpus_texts']} texts); Stage I {c['stage1']['steps']} steps of "
           f"{c['stage1']['batch_size']} (p_SV to {c['stage1']['p_student']}), Stage II "
           f"{c['stage2']['steps']} steps of {c['stage2']['batch_size']} (projection "
           f"{c['stage2']['projection']}), Stage III {c['distill']['epochs']:g} epoch(s) (KD "
           f"alpha {c['distill']['alpha']} in Stages I-III, 1 elsewhere; best dev evaluation "
           f"kept: {c['distill']['keep_best']}). Max length {c['data']['max_length']}; at most "
           f"{c['data']['max_train_examples']} training examples per task (split seed "
           f"{c['data']['split_seed']}). Full config in the JSON file.  ",
           'Arms: ' + arms_named(record['table'])
           + '. The majority '
           "row always answers the training set's most frequent class (regression: its mean "
           'score, correlation 0).', '']
  for task, t in record['table'].items():
    m, sizes = t['metric'], t['data_sizes']
    lines += [f'## {task}', '',
              f"Examples: {', '.join(f'{k} {v}' for k, v in sizes.items())}; evaluated on "
              f"{sizes[t['eval_split']]} {t['eval_split']} examples; corpus "
              f"{t['corpus_texts']} texts; student vocabulary {t['student_vocab']:,} tokens.", '',
              f'| model | {m} (mean ± std) | per seed | kept | parameters | fp32 | fp16 | '
              'compression (fp32) | examples/s | speed-up |',
              '|---|---|---|---|---|---|---|---|---|---|',
              f"| majority class | {t['majority']:.4f} | | | | | | | | |",
              f"| teacher | {t['teacher']['metric']:.4f} | | 100% | {t['teacher']['params']:,} | "
              f"{t['teacher']['disk_bytes'] / 1e6:.2f} MB | | 1x | "
              f"{t['teacher']['examples_per_s']:.0f} | 1x |"]
    for arm, row in t['rows'].items():
      lines.append(
          f"| {ARMS[arm][0]} | {row['metric'][0]:.4f} ± {row['metric'][1]:.4f} | "
          f"{', '.join(f'{v:.4f}' for v in row['per_seed'])} | {row['kept'][0]:.1%} | "
          f"{row['params']:,} | {row['disk_bytes'] / 1e6:.2f} MB | "
          f"{row['disk_bytes_fp16'] / 1e6:.2f} MB | "
          f"{t['teacher']['disk_bytes'] / row['disk_bytes']:.1f}x | "
          f"{row['examples_per_s'][0]:.0f} | {row['speedup'][0]:.1f}x |")
    lines += ['', f'Paired differences of {m}, seed by seed:', '',
              '| difference | mean ± std | per seed |', '|---|---|---|']
    for key, p in t['paired'].items():
      a, b = key.split(' - ')
      lines.append(f"| {ARMS[a][0]} minus {ARMS[b][0]} | {p['mean_std'][0]:+.4f} ± "
                   f"{p['mean_std'][1]:.4f} | "
                   f"{', '.join(f'{d:+.4f}' for d in p['per_seed'])} |")
    lines.append('')
  lines += ['## Reading', ''] + [f'- {line}' for line in record['reading']]
  write_markdown(name, lines)


def print_sizes(config) -> None:
  """Parameters and fp32 / fp16 weight bytes of the configured student with a
  full `mixed.vocab_size` vocabulary and a two-class head, beside the
  variants that trade depth, feed-forward, width or positions for size."""
  import jax
  from kdjax.methods.mixed_vocab.pipeline import student_bert_config
  from kdjax.models.heads import BertClassifier
  s = config.student
  variants = [('configured', {}), ('feed-forward 512', {'intermediate_size': 512}),
              ('feed-forward 448', {'intermediate_size': 448}),
              ('feed-forward 448, 64 positions', {'intermediate_size': 448, 'max_positions': 64}),
              ('width 112, feed-forward 448', {'hidden_size': 112, 'intermediate_size': 448}),
              ('4 layers, feed-forward 512', {'num_layers': 4, 'intermediate_size': 512})]
  ids = np.zeros((1, 8), np.int32)
  print(f"{'student':34} {'layers':>6} {'width':>5} {'ff':>4} {'pos':>4} {'parameters':>11} "
        f"{'fp32 MB':>8} {'fp16 MB':>8}")
  for label, change in variants:
    c = config.copy_and_resolve_references()
    c.student.update(change)
    model = BertClassifier(student_bert_config(c, c.mixed.vocab_size), 2)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids, ids,
                                               np.ones_like(ids)))
    n = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
    st = c.student
    print(f'{label:34} {st.num_layers:>6} {st.hidden_size:>5} {st.intermediate_size:>4} '
          f'{st.max_positions:>4} {n:>11,} {4 * n / 1e6:>8.2f} {2 * n / 1e6:>8.2f}')
  print(f'(vocabulary {config.mixed.vocab_size:,} tokens, {s.num_heads} heads; '
        'weights only: a safetensors file adds a few kB of header)')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/mixed_exp')
  parser.add_argument('--tasks', default=None, help=f'default {FULL_TASKS} ({QUICK_TASKS} '
                      'with --quick)')
  parser.add_argument('--seeds', default=None, help=f'default {FULL_SEEDS} ({QUICK_SEEDS} '
                      'with --quick)')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--arms', default=','.join(DEFAULT_ARMS),
                      help=f'the arms to run (default {",".join(DEFAULT_ARMS)}; also: '
                      f'{",".join(a for a in ARMS if a not in DEFAULT_ARMS)})')
  parser.add_argument('--keep-saved', action='store_true',
                      help="take the other arms' runs from the saved results JSON")
  parser.add_argument('--rewrite', action='store_true',
                      help='rebuild the table and reading from the saved JSON')
  parser.add_argument('--sizes', action='store_true',
                      help="print the student's size and the trades for 7 MB, then stop")
  args, overrides = parser.parse_known_args()
  if args.sizes:
    config = load_config('mixed_vocab')
    apply_overrides(config, overrides)
    print_sizes(config)
    return
  name = 'mixed_vocab_quick' if args.quick else 'mixed_vocab'
  if args.rewrite:
    record = load_saved_record(name, '--rewrite')
    record['table'] = build_table({t: record['runs'][t] for t in record['tasks']})
    record['reading'] = reading(record['table'], record.get('reproduction'))
    write_results(name, record)
    return
  arms = args.arms.split(',')
  unknown = [a for a in arms if a not in ARMS]
  if unknown:
    sys.exit(f"kdjax: error: unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
  saved = None
  if args.keep_saved:
    saved = load_saved_record(name)
  prepare_runtime()
  from kdjax.summary import code_version, hardware

  started = time.time()
  version = code_version()  # of the code that runs, before anything can change it
  config = load_config('mixed_vocab', 'quick' if args.quick else None)
  apply_overrides(config, overrides)
  tasks = (args.tasks or (QUICK_TASKS if args.quick else FULL_TASKS)).split(',')
  seeds = [int(s) for s in (args.seeds or (QUICK_SEEDS if args.quick else FULL_SEEDS)).split(',')]
  if not config.data.glue_dir and any(t != 'bbc' for t in tasks):
    sys.exit('kdjax: error: set KDJAX_GLUE_DIR or --config.data.glue_dir')
  config.teacher.store_dir = os.path.abspath(os.path.join(args.workdir, 'teachers'))
  config.mixed.shared_dir = os.path.abspath(os.path.join(args.workdir, 'shared'))
  runs = run_all(config, args.workdir, tasks, seeds, arms)  # finished runs resume instantly
  reproduction = None
  if saved is not None:
    runs, reproduction = with_saved_arms(runs, saved, seeds, config.to_dict())
  table = build_table(runs)
  record = {'name': name, 'variant': 'quick' if args.quick else 'full',
            'command': 'python experiments/mixed_vocab.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(), 'seeds': seeds, 'tasks': tasks,
            'config': config.to_dict(), 'hardware': hardware(), 'code_version': version,
            'wall_minutes': (time.time() - started) / 60, 'table': table, 'runs': runs}
  if saved is not None:  # the invocations whose runs the record keeps, oldest first
    record['tasks'] = list(runs)
    record['earlier_commands'] = saved.get('earlier_commands', []) + [saved['command']]
    record['reproduction'] = reproduction
  record['reading'] = reading(table, reproduction)
  write_results(name, record)


if __name__ == '__main__':
  guarded(main)
