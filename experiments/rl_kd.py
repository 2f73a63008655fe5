"""RL-KD: does a learned per-instance teacher selection beat equal weights and
the best single teacher?

  KDJAX_GLUE_DIR=../shared/data/glue python experiments/rl_kd.py \
      --workdir runs/rl_kd_exp [--tasks sst2,mrpc,qnli] [--seeds 0,1,2] [--config.KEY=VALUE ...]
  python experiments/rl_kd.py --quick     # RTE, tiny, 3 seeds: a smoke test
  python experiments/rl_kd.py --rewrite   # redo table, reading and plots from the saved JSON

Per task, the three teachers of configs/rl_kd.py are trained once (stored
under WORKDIR/teachers); then, for each seed, the same student (the first 3
pre-trained layers) with the same data and step budget is distilled by: each
single teacher, equal weights, and RL-KD with rewards R1, R2, R3 (with
--teacher-id also R1 with the teacher's identity as a policy feature).

Writes experiments/results/rl_kd{,_quick}.md and .json: the majority-class
baseline, the teachers, every variant's mean ± std over seeds, per-seed paired
differences of RL-KD minus equal weights and minus the best single teacher,
and how the policy's separation of the teachers evolved (when it settles: the
evidence for rl.pretrain_steps); PNG plots: metric per variant, the policy's
weights over training and by instance difficulty (seed 0), and the
separation curves of every reward and seed.

The full default is 3 tasks x 3 seeds x 7 students (plus 9 teachers): about
4.5 hours on 2 CPU cores (278 min summed over the runs' wall_seconds in
experiments/results/rl_kd.json).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time

import numpy as np

from common import (RESULTS, apply_overrides, check_same_setup, guarded, load_config,
                    load_saved_record, mean_std, prepare_runtime, run_method, write_markdown,
                    write_record)

REWARDS = ('R1', 'R2', 'R3')
STAGES = ('policy_pretrain', 'joint')
MEASURES = ('right_minus_wrong', 'spread', 'teacher_gap')


def variants(num_teachers: int, teacher_id: bool = False) -> list[tuple[str, dict]]:
  """(key, distill/rl overrides) of every compared student."""
  out = [(f'single{k}', {'weighting': 'single', 'single_teacher': k})
         for k in range(num_teachers)]
  out.append(('equal', {'weighting': 'equal'}))
  out += [(f'rl_{r}', {'weighting': 'policy', 'reward': r}) for r in REWARDS]
  if teacher_id:  # R1 with the teacher's identity among the features: a per-teacher preference
    out.append(('rl_R1_id', {'weighting': 'policy', 'reward': 'R1',
                             'extra_features': ('teacher_id',)}))
  return out


def run_all(config, workdir: str, tasks: list[str], seeds: list[int],
            teacher_id: bool = False) -> dict:
  runs = {}
  for task in tasks:
    runs[task] = {}
    for seed in seeds:
      for key, change in variants(len(config.teacher.member_names), teacher_id):
        c = config.copy_and_resolve_references()
        c.data.task, c.seed = task, seed
        c.data.source = 'bbc' if task == 'bbc' else config.data.source
        c.distill.weighting = change['weighting']
        c.distill.single_teacher = change.get('single_teacher', 0)
        c.rl.reward = change.get('reward', c.rl.reward)
        c.rl.extra_features = change.get('extra_features', c.rl.extra_features)
        run_dir = os.path.join(workdir, task, f'{key}-seed{seed}')
        result = run_method(c, run_dir)
        result['stage_end_dev'] = stage_end_dev(run_dir)
        runs[task].setdefault(key, []).append(result)
  return runs


def stage_end_dev(run_dir: str) -> dict[str, dict[str, float]]:
  """Per stage, the dev metrics of its last evaluation in the run's
  metrics.jsonl: where the student stood when the policy began to learn (the
  end of the warm-up) and after each later stage."""
  out = {}
  with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
    for line in f:
      entry = json.loads(line)
      dev = {k[len('dev_'):]: v for k, v in entry.items() if k.startswith('dev_')}
      if dev:  # a resumed run logs a stage again: the last entry is the final one
        out[entry['phase']] = dev
  return out


def with_saved_tasks(runs: dict, saved: dict, seeds: list[int], config: dict) -> dict:
  """`runs` with the saved record's runs of the tasks not run now (saved tasks
  first, in their order; a task run now replaces its saved runs). Refuses a
  record of other seeds or config values, so every task's students are the
  same experiment."""
  check_same_setup(saved, config, seeds, 'rerun every task')
  merged = {task: by_variant for task, by_variant in saved['runs'].items() if task not in runs}
  merged.update(runs)
  return merged


# ------------------------------------------------------------------ table

def clearly_above(scores: list[float], baseline: float) -> bool:
  """Above a baseline by more than 0.01 and by more than twice the seed std."""
  mean, std = mean_std(scores)
  return mean - baseline > max(0.01, 2.0 * std)


def separation_over_seeds(results: list[dict]) -> dict:
  """Per stage and measure: plateau and settling step, mean over seeds (the
  settling step over the seeds where the measure grew, with their count)."""
  out = {}
  for stage in STAGES:
    for measure in MEASURES:
      found = [r['policy']['separation'].get(stage, {}).get(measure) for r in results]
      found = [f for f in found if f is not None]
      if not found:
        continue
      settled = [f['step'] for f in found if f['step'] is not None]
      out.setdefault(stage, {})[measure] = {
          'plateau': float(np.nanmean([f['plateau'] for f in found])),
          'start': float(np.nanmean([f['start'] for f in found])),
          'settling_step': float(np.mean(settled)) if settled else None,
          'settled_seeds': len(settled), 'seeds': len(found)}
    probs = [r['policy']['separation'].get(stage, {}).get('mean_prob') for r in results]
    probs = [p for p in probs if p is not None]
    if probs:
      collapsed = [p['collapse_step'] for p in probs if p['collapse_step'] is not None]
      out.setdefault(stage, {})['mean_prob'] = {
          'start': float(np.mean([p['start'] for p in probs])),
          'end': float(np.mean([p['end'] for p in probs])),
          'collapsed_seeds': len(collapsed), 'seeds': len(probs),
          'collapse_step': float(np.mean(collapsed)) if collapsed else None}
  return out


def build_table(runs: dict) -> dict:
  """Per task: majority baseline, teachers, each variant's metrics mean ± std,
  per-seed primary scores and paired differences, and the policies' behaviour."""
  table = {}
  for task, by_variant in runs.items():
    first = next(iter(by_variant.values()))[0]
    metrics = list(first['student']['metrics'])
    primary = metrics[0]
    rows = {key: {m: mean_std([r['student']['metrics'][m] for r in results]) for m in metrics}
            for key, results in by_variant.items()}
    scores = {key: [r['student']['metrics'][primary] for r in results]
              for key, results in by_variant.items()}
    singles = [k for k in by_variant if k.startswith('single')]
    best_single = max(singles, key=lambda k: rows[k][primary][0])
    # Runs of one seed share the student's initial head, data order and
    # dropout stream: the paired difference removes that shared noise.
    paired = {key: {'minus_equal': [a - b for a, b in zip(scores[key], scores['equal'])],
                    'minus_best_single': [a - b for a, b in zip(scores[key],
                                                                scores[best_single])]}
              for key in by_variant if key.startswith('rl_')}
    policy = {}
    for key, results in by_variant.items():
      if not key.startswith('rl_'):
        continue
      difficulty = [r['policy']['by_difficulty'] for r in results]
      entry = {'mean_prob': np.mean([r['policy']['final_mean_prob'] for r in results],
                                    axis=0).tolist(),
               'by_bin': np.nanmean([np.mean(d['prob_by_bin'], axis=1) for d in difficulty],
                                    axis=0).tolist(),
               'separation': separation_over_seeds(results)}
      if 'prob_when_right' in difficulty[0]:
        entry['right'] = np.nanmean([d['prob_when_right'] for d in difficulty], 0).tolist()
        entry['wrong'] = np.nanmean([d['prob_when_wrong'] for d in difficulty], 0).tolist()
      warmup_end = [r.get('stage_end_dev', {}).get('student_warmup', {}).get(primary)
                    for r in results]
      if all(v is not None for v in warmup_end):
        entry['warmup_end'] = mean_std(warmup_end)
      policy[key] = entry
    majority = first['majority'][primary]
    table[task] = {
        'metrics': metrics, 'primary': primary, 'majority': first['majority'],
        'teachers': [{k: t[k] for k in ('name', 'layers', 'epochs', 'dropout',
                                        'train_fraction', 'metrics')} for t in first['teachers']],
        'teachers_above_majority': [t['metrics'][primary] - majority > 0.01
                                    for t in first['teachers']],
        'teacher_overlap': first.get('teacher_overlap'),
        'rows': rows, 'scores': scores, 'best_single': best_single, 'paired': paired,
        'above_majority': {k: clearly_above(v, majority) for k, v in scores.items()},
        'policy': policy,
        'train_size': first['data_sizes']['train'],
        'heldout_size': first['data_sizes']['heldout'],
        'eval_split': first['eval_split'],
        'eval_size': first['data_sizes'][first['eval_split']]}
  return table


def in_table_order(keys) -> list[str]:
  """Equal weights, the RL-KD rewards, then the single teachers: one order for
  every task, whether its runs are new or come from a saved record."""
  def rank(key: str) -> tuple[int, str]:
    return (0 if key == 'equal' else 1 if key.startswith('rl_') else 2, key)
  return sorted(keys, key=rank)


def variant_label(key: str, teacher_names: list[str]) -> str:
  if key.startswith('single'):
    return f'single teacher: {teacher_names[int(key[len("single"):])]}'
  if key == 'equal':
    return 'equal weights'
  if key.endswith('_id'):
    return f'RL-KD {key[3:-3]} + teacher id'
  return f'RL-KD {key[3:]}'


def beats(diffs: list[float], a: tuple[float, float], b: tuple[float, float]) -> bool:
  """a beats b by more than the seed std: the mean difference exceeds both
  variants' seed std and every seed agrees on its sign."""
  return (np.mean(diffs) > max(a[1], b[1])) and all(d > 0 for d in diffs)


# ------------------------------------------------------------------ reading

def reading(table: dict) -> list[str]:
  """The verdict per task and overall, and what the policies did, from the numbers."""
  lines, wins = [], {}
  for task, t in table.items():
    m, rows, names = t['primary'], t['rows'], [x['name'] for x in t['teachers']]
    best = t['best_single']
    weak = [n for n, ok in zip(names, t['teachers_above_majority']) if not ok]
    below = [variant_label(k, names) for k, ok in t['above_majority'].items() if not ok]
    lines.append(
        f"{task} ({m}): majority class {t['majority'][m]:.4f}; teachers "
        + ', '.join(f"{x['name']} {x['metrics'][m]:.4f}" for x in t['teachers'])
        + (f"; not clearly above the majority class: {', '.join(weak)}" if weak else
           ', all above the majority class')
        + '; students ' + ('all clearly above it.' if not below else
                           f"not clearly above it: {', '.join(below)}."))
    for key, diffs in t['paired'].items():
      d_eq, d_best = diffs['minus_equal'], diffs['minus_best_single']
      won = (beats(d_eq, rows[key][m], rows['equal'][m])
             and beats(d_best, rows[key][m], rows[best][m]))
      wins.setdefault(key, []).append(task if won else None)
      lines.append(
          f"{task}, {variant_label(key, names)}: {rows[key][m][0]:.4f} ± {rows[key][m][1]:.4f}; "
          f"minus equal weights {np.mean(d_eq):+.4f} (per seed "
          f"{', '.join(f'{d:+.4f}' for d in d_eq)}), minus the best single teacher "
          f"({variant_label(best, names)}) {np.mean(d_best):+.4f} (per seed "
          f"{', '.join(f'{d:+.4f}' for d in d_best)})"
          + ('; beats both beyond the seed std.' if won else '.'))
  lines += overall(table, wins)
  lines += policy_behaviour(table)
  return lines


def overall(table: dict, wins: dict) -> list[str]:
  n = len(table)
  counts = {key: [t for t in tasks if t] for key, tasks in wins.items()}
  best_key = max(counts, key=lambda k: len(counts[k])) if counts else None
  supported = best_key is not None and len(counts[best_key]) >= 2
  parts = ', '.join(f"{k[3:]} on {len(v)} ({', '.join(v) or 'none'})" for k, v in counts.items())
  return [f'Across {n} task(s), RL-KD beats both equal weights and the best single teacher '
          f'(mean paired difference above the seed std, every seed the same sign): {parts}. '
          + ('The claim is supported here (one reward on >= 2 tasks).' if supported else
             'The claim (beating both on >= 2 tasks) is not reproduced at this scale; the '
             'policy behaviour below says why.')]


def describe_growth(v: dict, short: bool = False) -> str:
  """'start -> plateau' and when it settles, of `separation_over_seeds`."""
  if not np.isfinite(v['plateau']):
    return 'too few logged points'
  text = f"{v['start']:.2f} -> {v['plateau']:.2f}"
  if v['settling_step'] is None:
    return text + ' (no growth)' if short else text + ' (does not grow)'
  if short:
    return text + f" @ {v['settling_step']:.0f}"
  return text + (f" (settles at step {v['settling_step']:.0f}, {v['settled_seeds']}/"
                 f"{v['seeds']} seeds)")


def policy_behaviour(table: dict) -> list[str]:
  """What the learned policies did: how far they separate teachers, when that
  settles, and whether the teachers left room for a choice."""
  lines = []
  for task, t in table.items():
    names = [x['name'] for x in t['teachers']]
    overlap = t.get('teacher_overlap')
    if overlap:
      lines.append(
          f"{task}: on the training rows the teachers are right "
          + ', '.join(f'{n} {a:.2f}' for n, a in zip(names, overlap['accuracy']))
          + f"; they give the same class on {overlap['all_agree']:.2f} of the rows, all are "
          f"right on {overlap['all_right']:.2f} and at least one on {overlap['any_right']:.2f}: "
          f"a per-instance choice can change the targets of at most "
          f"{1 - overlap['all_agree']:.2f} of the rows.")
    for key, p in t['policy'].items():
      text = (f"{task}, {variant_label(key, names)}: final mean π "
              + ', '.join(f'{n} {w:.2f}' for n, w in zip(names, p['mean_prob'])))
      if 'right' in p:
        text += ('; π when the teacher is right / wrong: '
                 + ', '.join(f'{n} {r:.2f}/{w:.2f}' for n, r, w in
                             zip(names, p['right'], p['wrong'])))
      text += (f"; easiest vs hardest fifth of the instances {p['by_bin'][0]:.2f} vs "
               f"{p['by_bin'][-1]:.2f}")
      if 'warmup_end' in p:
        text += (f"; the student's dev {t['primary']} when the policy began (end of the "
                 f"warm-up) {p['warmup_end'][0]:.4f} ± {p['warmup_end'][1]:.4f}, majority "
                 f"class {t['majority'][t['primary']]:.4f}")
      for stage in STAGES:
        sep = {k: v for k, v in p['separation'].get(stage, {}).items() if k in MEASURES}
        if sep:
          text += f'; {stage}: ' + ', '.join(f'{measure} {describe_growth(v)}'
                                             for measure, v in sep.items())
        mean_prob = p['separation'].get(stage, {}).get('mean_prob')
        if mean_prob:
          text += (f", mean π {mean_prob['start']:.2f} -> {mean_prob['end']:.2f}"
                   + (f", all or none of the teachers chosen from step "
                      f"{mean_prob['collapse_step']:.0f} in {mean_prob['collapsed_seeds']}/"
                      f"{mean_prob['seeds']} seeds" if mean_prob['collapse_step'] is not None
                      else ''))
      lines.append(text + '.')
  pre = [(task, key, p['separation']['policy_pretrain']['right_minus_wrong'])
         for task, t in table.items() for key, p in t['policy'].items()
         if 'right_minus_wrong' in p['separation'].get('policy_pretrain', {})
         and np.isfinite(p['separation']['policy_pretrain']['right_minus_wrong']['plateau'])]
  settled = [v['settling_step'] for _, _, v in pre if v['settling_step'] is not None]
  if pre:
    lines.append(
        f'Policy pre-training (rl.pretrain_steps steps): the right-minus-wrong separation '
        f'settles in {len(settled)} of {len(pre)} (task, reward) pairs'
        + (f', at step {min(settled):.0f} to {max(settled):.0f}' if settled else '')
        + '; a setting that settles late or not at all argues for more pre-training steps '
        'or a larger policy learning rate (experiments/rl_kd_policy_steps.py measures both).')
  return lines


# ------------------------------------------------------------------ plots

def smoothed(values: list[float], window: int = 5) -> np.ndarray:
  """Trailing mean over `window` points, NaNs skipped (per-batch points are noisy)."""
  values = np.asarray(values, np.float64)
  out = np.full(len(values), np.nan)
  for i in range(len(values)):
    part = values[max(0, i - window + 1):i + 1]
    if np.isfinite(part).any():
      out[i] = np.nanmean(part)
  return out


def draw_plots(table: dict, runs: dict, workdir: str, name: str) -> list[str]:
  """Per task: the primary metric per variant (with the majority class), the
  seed-0 R1 policy plots, and the separation curves of every RL variant."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  written = []
  for task, t in table.items():
    names = [x['name'] for x in t['teachers']]
    keys, m = list(t['rows']), t['primary']
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    means = [t['rows'][k][m][0] for k in keys]
    ax.bar(range(len(keys)), means, yerr=[t['rows'][k][m][1] for k in keys], capsize=3,
           color=['tab:gray' if k.startswith('single') else 'tab:blue' if k == 'equal'
                  else 'tab:orange' for k in keys])
    ax.axhline(t['majority'][m], color='black', linestyle='--', linewidth=1,
               label='majority class')
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([variant_label(k, names).replace('single teacher: ', '')
                        for k in keys], rotation=25, ha='right', fontsize=8)
    low = min(means + [t['majority'][m]]) - 3 * max(t['rows'][k][m][1] for k in keys) - 0.02
    ax.set_ylim(max(0.0, low) if m != 'mcc' else low, min(1.0, max(means) + 0.05))
    ax.set_ylabel(f"student {t['eval_split']} {m}")
    ax.set_title(f'{task}: same student, data and steps')
    ax.legend(fontsize=8)
    written.append(_save(fig, f'{name}_{task}_variants.png'))
    for plot in ('policy_weights', 'policy_by_difficulty'):
      source = os.path.join(workdir, task, 'rl_R1-seed0', f'{plot}.png')
      if os.path.exists(source):
        target = os.path.join(RESULTS, f'{name}_{task}_{plot}.png')
        shutil.copyfile(source, target)
        written.append(target)
    fig, axes = plt.subplots(1, len(STAGES), figsize=(10, 3.2), squeeze=False)
    for ax, stage in zip(axes[0], STAGES):
      for key, results in runs[task].items():
        if not key.startswith('rl_'):
          continue
        for seed_index, r in enumerate(results):
          points = [p for p in r['policy']['over_training'] if p['phase'] == stage]
          if not points or 'right' not in points[0]:
            continue
          gap = [np.nanmean(np.subtract(p['right'], p['wrong']))
                 if np.isfinite(np.subtract(p['right'], p['wrong'])).any() else np.nan
                 for p in points]
          ax.plot([p['step'] for p in points], smoothed(gap), alpha=0.8,
                  color=f'C{list(runs[task]).index(key) % 10}',
                  label=variant_label(key, names) if seed_index == 0 else None)
      ax.axhline(0.0, color='gray', linewidth=0.8)
      ax.set_title({'policy_pretrain': 'policy pre-training (student frozen)',
                    'joint': 'joint training'}[stage], fontsize=9)
      ax.set_xlabel('step')
    axes[0][0].set_ylabel('π right − π wrong\n(mean over teachers, 5-point mean)')
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f'{task}: how far the policy tells right from wrong teachers, every seed')
    written.append(_save(fig, f'{name}_{task}_separation.png'))
  return written


def _save(fig, filename: str) -> str:
  import matplotlib.pyplot as plt
  path = os.path.join(RESULTS, filename)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
  return path


# ------------------------------------------------------------------ results

def teacher_text(x: dict) -> str:
  return (f"{x['layers'] or 'all'} layers, {x['epochs']:g} ep, dropout {x['dropout']:g}, "
          + ('all rows' if x['train_fraction'] >= 1 else f"{x['train_fraction']:.0%} of rows"))


def run_minutes(runs: dict) -> float:
  """The minutes the runs themselves took (each summary's wall_seconds)."""
  return sum(r.get('wall_seconds', 0.0) for by_variant in runs.values()
             for results in by_variant.values() for r in results) / 60


def write_results(name: str, record: dict) -> None:
  write_record(name, record)
  c, hw = record['config'], record['hardware']
  s, rl = c['student'], c['rl']
  lines = [f"# RL-KD: learned teacher selection vs equal weights vs single teachers "
           f"({record['variant']})", '',
           f"Command: `{record['command']}`  ",
           f"Seeds: {record['seeds']}; wall clock {record['wall_minutes']:.1f} min of this "
           f"invocation (finished runs return at once), {run_minutes(record['runs']):.0f} min "
           "summed over the runs' own wall_seconds (teachers inside their task's first run); "
           f"hardware: "
           f"{hw['cpu_count']} CPU cores, {hw['device_count']} {hw['platform']} device(s), "
           f"jax {hw['jax']}; date {record['date']}.  ",
           f"Student: {s['num_layers']} layers x {s['hidden_size']} (init {s['init']}, "
           f"layer choice {s['layer_choice']}), {c['distill']['epochs']:g} epochs, batch "
           f"{c['distill']['batch_size']}, learning rate {c['distill']['learning_rate']:g}, "
           f"alpha {c['distill']['alpha']}, temperature {c['distill']['temperature']}, best dev "
           f"evaluation kept: the same student steps for every variant. RL-KD: "
           f"{rl['selection']} selection, "
           + (f"MLP {tuple(rl['hidden_sizes'])} " if rl['hidden_sizes'] else 'linear ')
           + f"policy on [pooled student [CLS]; teacher probabilities; teacher loss], Adam "
           f"{rl['learning_rate']:g}, baseline {rl['baseline']}, warm-up "
           f"{rl['warmup_fraction']:g} of the student steps with equal weights, "
           f"{rl['pretrain_steps']} policy pre-training steps, then joint training. Max "
           f"length {c['data']['max_length']}; training sets subsampled to "
           f"{c['data']['max_train_examples']} rows (split seed {c['data']['split_seed']}). "
           f"Teachers (seed {c['teacher']['seed']}, learning rate "
           f"{c['teacher']['learning_rate']:g}, batch {c['teacher']['batch_size']}), each "
           'fine-tuned from all-MiniLM-L6-v2 once per task and shared by every student.', '']
  for task, t in record['table'].items():
    names = [x['name'] for x in t['teachers']]
    metrics = t['metrics']
    lines += [f'## {task}', '',
              f"Training examples {t['train_size']} (plus {t['heldout_size']} held out for "
              f"R3 rewards, unused by the other variants); evaluated on {t['eval_size']} "
              f"{t['eval_split']} examples.", '',
              '| model | ' + ' | '.join(metrics) + ' |', '|---|' + '---|' * len(metrics),
              '| majority class (constant answer) | '
              + ' | '.join(f"{t['majority'][m]:.4f}" for m in metrics) + ' |']
    for x in t['teachers']:
      lines.append(f"| teacher {x['name']} ({teacher_text(x)}) | "
                   + ' | '.join(f"{x['metrics'][m]:.4f}" for m in metrics) + ' |')
    for key in in_table_order(t['rows']):
      row = t['rows'][key]
      mark = ' (best single)' if key == t['best_single'] else ''
      lines.append(f"| student, {variant_label(key, names)}{mark} | "
                   + ' | '.join(f'{row[m][0]:.4f} ± {row[m][1]:.4f}' for m in metrics) + ' |')
    m = t['primary']
    lines += ['', f'Paired differences of the {m}, seed by seed (seeds {record["seeds"]}):', '',
              '| RL-KD variant | minus equal weights | minus best single teacher |',
              '|---|---|---|']
    for key, diffs in t['paired'].items():
      lines.append(f"| {variant_label(key, names)} | "
                   + ' | '.join(f"{np.mean(d):+.4f} ({', '.join(f'{x:+.4f}' for x in d)})"
                                for d in (diffs['minus_equal'], diffs['minus_best_single']))
                   + ' |')
    lines += ['', 'Policy separation (start -> plateau, and the step it settles at, mean over '
              'seeds; right_minus_wrong: mean π when a teacher is right minus when it is '
              'wrong; spread: per-instance max − min π; teacher_gap: largest difference of '
              'two teachers\' mean π):', '',
              '| RL-KD variant | stage | ' + ' | '.join(MEASURES)
              + ' | mean π (all or none chosen from step) |',
              '|---|---|' + '---|' * (len(MEASURES) + 1)]
    for key, p in t['policy'].items():
      for stage in STAGES:
        sep = p['separation'].get(stage)
        if not sep:
          continue
        cells = []
        for measure in MEASURES:
          v = sep.get(measure)
          cells.append('' if v is None else describe_growth(v, short=True))
        mp = sep.get('mean_prob')
        cells.append('' if mp is None else f"{mp['start']:.2f} -> {mp['end']:.2f}"
                     + (f" ({mp['collapse_step']:.0f}, {mp['collapsed_seeds']}/{mp['seeds']} "
                        'seeds)' if mp['collapse_step'] is not None else ''))
        lines.append(f'| {variant_label(key, names)} | {stage} | ' + ' | '.join(cells) + ' |')
    lines += ['', f'![{task} variants]({record["name"]}_{task}_variants.png)',
              f'![{task} separation]({record["name"]}_{task}_separation.png)',
              f'![{task} policy weights]({record["name"]}_{task}_policy_weights.png)',
              f'![{task} policy by difficulty]({record["name"]}_{task}_policy_by_difficulty.png)',
              '']
  lines += ['## Reading', ''] + [f'- {line}' for line in record['reading']]
  write_markdown(name, lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='runs/rl_kd_exp')
  parser.add_argument('--tasks', default=None, help='default sst2,mrpc,qnli (--quick: rte)')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--teacher-id', action='store_true',
                      help='also RL-KD R1 with the teacher\'s identity as a policy feature')
  parser.add_argument('--rewrite', action='store_true',
                      help='rebuild table, reading and plots from the saved JSON')
  parser.add_argument('--keep-saved', action='store_true',
                      help="take the other tasks' runs from the saved results JSON")
  args, overrides = parser.parse_known_args()
  name = 'rl_kd_quick' if args.quick else 'rl_kd'
  saved = load_saved_record(name) if args.keep_saved else None
  if args.rewrite:
    record = load_saved_record(name, '--rewrite')
    record['table'] = build_table(record['runs'])
    record['reading'] = reading(record['table'])
    draw_plots(record['table'], record['runs'], record['workdir'], name)
    write_results(name, record)
    return
  prepare_runtime()
  from kdjax.summary import hardware

  started = time.time()
  config = load_config('rl_kd', 'quick' if args.quick else None)
  apply_overrides(config, overrides)
  tasks = (args.tasks or ('rte' if args.quick else 'sst2,mrpc,qnli')).split(',')
  seeds = [int(s) for s in args.seeds.split(',')]
  if not config.data.glue_dir and any(t != 'bbc' for t in tasks):
    sys.exit('kdjax: error: set KDJAX_GLUE_DIR or --config.data.glue_dir')
  config.teacher.store_dir = os.path.abspath(os.path.join(args.workdir, 'teachers'))
  runs = run_all(config, args.workdir, tasks, seeds, args.teacher_id)  # finished runs resume
  if saved is not None:
    runs = with_saved_tasks(runs, saved, seeds, config.to_dict())
  table = build_table(runs)
  record = {'name': name, 'variant': 'quick' if args.quick else 'full',
            'command': 'python experiments/rl_kd.py ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(), 'seeds': seeds, 'tasks': list(runs),
            'workdir': os.path.abspath(args.workdir), 'config': config.to_dict(),
            'hardware': hardware(), 'wall_minutes': (time.time() - started) / 60,
            'table': table, 'runs': runs}
  record['reading'] = reading(table)
  draw_plots(table, runs, args.workdir, name)
  write_results(name, record)


if __name__ == '__main__':
  guarded(main)
