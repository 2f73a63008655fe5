"""Turns a finished run's summary.json into a results table (markdown + JSON).

  python experiments/record_run.py runs/defaults default_bbc "python -m kdjax.main"

Writes experiments/results/<name>.md and .json with the exact command, the
config, data sizes, seed and hardware recorded by the run itself.
"""
import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def main(workdir: str, name: str, command: str, wall_clock: str = '') -> None:
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  import ml_collections
  from common import majority_baseline
  baseline = majority_baseline(ml_collections.ConfigDict(config['data']))
  record = {'command': command, 'wall_clock': wall_clock, 'config': config,
            'majority_baseline': baseline, **summary}
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f'{name}.json'), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  t, s, c, hw = summary['teacher'], summary['student'], summary['comparison'], summary['hardware']
  arch = lambda a: f"{a['layers']}L x {a['hidden']}H"
  lines = [
      f"# {summary['task']}: teacher vs distilled student", '',
      f'Command: `{command}`' + (f' (wall clock {wall_clock})' if wall_clock else ''), '',
      f"Data: {summary['data_sizes']} examples; reported split: {summary['eval_split']}; "
      f"seed {config['seed']}; max_length {config['data']['max_length']}; length buckets "
      f"{tuple(config['data'].get('buckets', ())) or 'none'}.  ",
      f"Hardware: {hw['cpu_count']} CPU cores ({hw['machine']}), {hw['device_count']} "
      f"{hw['platform']} device(s), jax {hw['jax']}.", '',
      '| | teacher | student |', '|---|---|---|',
      f"| architecture | {arch(t['architecture'])} | {arch(s['architecture'])} |",
  ]
  for m in t['metrics']:
    lines.append(f"| {summary['eval_split']} {m} | {t['metrics'][m]:.4f} | {s['metrics'][m]:.4f} |")
  lines.append(f"| majority class ({baseline['class']}), {baseline['split']} accuracy | "
               f"{baseline['accuracy']:.4f} | |")
  lines += [
      f"| parameters | {t['params']:,} | {s['params']:,} |",
      f"| fp32 safetensors | {t['disk_bytes'] / 2**20:.1f} MiB | {s['disk_bytes'] / 2**20:.1f} MiB |",
      f"| inference examples/s | {t['examples_per_s']:.1f} | {s['examples_per_s']:.1f} |", '',
      f"Compression {c['param_ratio']:.2f}x (parameters), {c['disk_ratio']:.2f}x (disk); "
      f"speed-up {c['speedup']:.2f}x; the student keeps {100 * c['kept_fraction']:.1f}% of "
      f"the teacher's {c['primary_metric']}.",
  ]
  lines.append('One run, seed 0: a demonstration of the pipeline, not a comparison '
               'between students (that needs >= 3 seeds).')
  for phase, best in summary.get('best_checkpoints', {}).items():
    lines.append(f"The {phase}'s weights are those of its best {summary.get('dev_split', 'dev')} "
                 f"{best['metric']} ({best['value']:.4f}, step {best['step']}).")
  with open(os.path.join(RESULTS, f'{name}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main(*sys.argv[1:])
