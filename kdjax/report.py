"""A self-contained HTML report of one or several runs, side by side.

  python -m kdjax.report WORKDIR [WORKDIR ...] [--out DIR]

Reads each run's config.json, summary.json, metrics.jsonl (and, for RL-KD,
policy_weights.json) and writes DIR/report.html with the PNG plots embedded,
plus the PNG files themselves: learning curves (training loss and dev metrics
per phase), teacher vs student metrics per task, size and speed, and the
RL-KD policy's teacher weights. DIR defaults to WORKDIR/report for one run and
./kdjax-report for several.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
from collections import defaultdict

from kdjax import atomic, plots
from kdjax.errors import KdjaxError


def load_run(workdir: str) -> dict:
  """The files of one finished (or partly finished) run."""
  if not os.path.isdir(workdir):
    raise KdjaxError(f'{workdir} is not a directory')
  run = {'name': os.path.basename(os.path.normpath(workdir)), 'dir': workdir}
  for key, name in (('config', 'config.json'), ('summary', 'summary.json'),
                    ('policy', 'policy_weights.json')):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      try:
        with open(path, encoding='utf-8') as f:
          run[key] = json.load(f)
      except (OSError, ValueError) as e:
        raise KdjaxError(f'{path} cannot be read ({e})') from None
  if 'config' not in run:
    raise KdjaxError(f'{workdir} holds no run (no config.json)')
  run['metrics'] = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  return run


def read_metrics(path: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
  """{phase: {metric: [(step, value), ...]}}; a step logged twice keeps the last value."""
  points = defaultdict(dict)
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue  # a line cut short by a crash
        for key, value in row.items():
          if key not in ('phase', 'step', 'time') and isinstance(value, (int, float)):
            points[(row['phase'], key)][row['step']] = float(value)
  curves = defaultdict(dict)
  for (phase, key), by_step in points.items():
    curves[phase][key] = sorted(by_step.items())
  return dict(curves)


def model_rows(summary: dict) -> list[dict]:
  """One row per model of a run's summary: role, metrics, params, bytes, speed."""
  rows = []
  method = summary.get('method', 'kd')
  if method == 'mtdnn_kd':
    for task, info in summary['tasks'].items():
      if 'ensemble' in info:
        rows.append({'model': f'{task}: teacher ensemble', 'metrics': info['ensemble']})
      rows.append({'model': f'{task}: student', 'metrics': info['student']})
    return rows
  for t in summary.get('teachers', []):  # RL-KD: several teachers
    rows.append({'model': f"teacher {t['name']}", 'metrics': t['metrics']})
  for role in ('teacher', 'student'):
    if role in summary:
      m = summary[role]
      label = role if role == 'teacher' else f"student ({summary.get('variant', method)})"
      rows.append({'model': label, 'metrics': m['metrics'], 'params': m.get('params'),
                   'disk_bytes': m.get('disk_bytes'),
                   'examples_per_s': m.get('examples_per_s')})
  return rows


def learning_curves(runs: list[dict], out_dir: str) -> list[str]:
  """One PNG per phase: its training loss and dev metrics, a line per run."""
  phases = sorted({p for r in runs for p in r['metrics'] if not p.endswith('_final')})
  written = []
  for phase in phases:
    keys = sorted({k for r in runs for k in r['metrics'].get(phase, {})
                   if k == 'loss' or k.startswith('dev_')})
    if not keys:
      continue
    series = {key: {r['name']: r['metrics'][phase][key] for r in runs
                    if key in r['metrics'].get(phase, {})} for key in keys}
    path = os.path.join(out_dir, f'curves_{phase}.png')
    plots.curves(phase, series, path)
    written.append(path)
  return written


def _img(path: str) -> str:
  with open(path, 'rb') as f:
    data = base64.b64encode(f.read()).decode('ascii')
  return f'<img alt="{html.escape(os.path.basename(path))}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]]) -> str:
  head = ''.join(f'<th>{html.escape(h)}</th>' for h in header)
  body = ''.join('<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in row) + '</tr>'
                 for row in rows)
  return f'<table><tr>{head}</tr>{body}</table>'


def _fmt(value, kind: str = 'metric') -> str:
  if value is None:
    return '-'
  if kind == 'bytes':
    return f'{value / 2 ** 20:.2f} MiB'
  if kind == 'int':
    return f'{value:,}'
  return f'{value:.4f}' if kind == 'metric' else f'{value:.1f}'


def render(runs: list[dict], out_dir: str) -> str:
  """Writes out_dir/report.html (and the PNGs); returns the HTML path."""
  os.makedirs(out_dir, exist_ok=True)
  parts = ['<h1>kdjax report</h1>',
           '<p>Runs: ' + ', '.join(html.escape(f"{r['name']} ({r['dir']})") for r in runs)
           + '</p>']
  overview = []
  for r in runs:
    s, c = r.get('summary', {}), r['config']
    overview.append([r['name'], c.get('method', 'kd'), str(s.get('task', c.get('data', {})
                                                                 .get('task', '-'))),
                     str(c.get('seed', '-')),
                     f"{s['wall_seconds'] / 60:.1f} min" if 'wall_seconds' in s else
                     'unfinished'])
  parts += ['<h2>Runs</h2>', _table(['run', 'method', 'task', 'seed', 'wall clock'],
                                    overview)]
  parts.append('<h2>Models: metrics, size and speed</h2>')
  for r in runs:
    rows = model_rows(r['summary']) if 'summary' in r else []
    if not rows:
      parts.append(f"<p>{html.escape(r['name'])}: no summary.json yet (unfinished run)</p>")
      continue
    metric_names = sorted({m for row in rows for m in row['metrics']})
    parts.append(f"<h3>{html.escape(r['name'])}</h3>")
    parts.append(_table(
        ['model', *metric_names, 'parameters', 'fp32 size', 'examples/s'],
        [[row['model'], *(_fmt(row['metrics'].get(m)) for m in metric_names),
          _fmt(row.get('params'), 'int'), _fmt(row.get('disk_bytes'), 'bytes'),
          _fmt(row.get('examples_per_s'), 'speed')] for row in rows]))
  parts.append('<h2>Learning curves</h2>')
  parts += [_img(p) for p in learning_curves(runs, out_dir)]
  policy_runs = [r for r in runs if 'policy' in r]
  if policy_runs:
    parts.append("<h2>RL-KD: the policy's teacher weights</h2>")
    for r in policy_runs:
      over = os.path.join(out_dir, f"policy_{r['name']}.png")
      by = os.path.join(out_dir, f"policy_difficulty_{r['name']}.png")
      plots.policy_over_training(r['policy'], over)
      plots.policy_by_difficulty(r['policy'], by)
      parts += [f"<h3>{html.escape(r['name'])}</h3>", _img(over), _img(by)]
  style = ('body{font-family:sans-serif;max-width:1100px;margin:2em auto}'
           'table{border-collapse:collapse;margin:0.5em 0}'
           'td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}'
           'td:first-child,th:first-child{text-align:left}img{max-width:100%}')
  page = (f'<!doctype html><html><head><meta charset="utf-8"><title>kdjax report</title>'
          f'<style>{style}</style></head><body>{"".join(parts)}</body></html>')
  path = os.path.join(out_dir, 'report.html')
  atomic.write_text(path, page)
  return path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m kdjax.report', description=__doc__.split(
      '\n')[0])
  parser.add_argument('workdirs', nargs='+', metavar='WORKDIR')
  parser.add_argument('--out', default='', help='output directory')
  args = parser.parse_args(argv)
  try:
    runs = [load_run(w) for w in args.workdirs]
    out = args.out or (os.path.join(args.workdirs[0], 'report') if len(runs) == 1
                       else 'kdjax-report')
    path = render(runs, out)
  except KdjaxError as e:
    print(f'kdjax: error: {e}', file=sys.stderr)
    return 2
  print(f'report: {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
