"""`python -m kdjax.evaluate MODEL_DIR --data FILE [--output metrics.json]`: the
task metrics of a fine-tuned classifier on a labelled file.

Classification: accuracy and F1 (of class 1 with 2 classes, macro-averaged with
more), MCC with --mcc; regression (one-score models): Pearson and Spearman.
Labels in the file are the model's label names (config.json id2label) or class ids.
"""
from __future__ import annotations

import json

import numpy as np

from kdjax import model_cli
from kdjax.data.tasks import TaskSpec, label_ids
from kdjax.errors import KdjaxError


def class_ids(raw: list[str], label_names: tuple[str, ...], where: str) -> np.ndarray:
  """Class ids [N] of label cells that are all label names, or all class ids."""
  index = {name: i for i, name in enumerate(label_names)}
  if all(r in index for r in raw):
    return np.asarray([index[r] for r in raw], np.int32)
  ids = [int(r) if r.strip().isdigit() else -1 for r in raw]
  bad = next((row for row, i in enumerate(ids) if not 0 <= i < len(label_names)), None)
  if bad is not None:
    raise KdjaxError(f'{where}: row {bad + 1} has label {raw[bad]!r}, neither one of the '
                     f"model's labels {list(label_names)} nor a class id 0..{len(label_names) - 1}")
  return np.asarray(ids, np.int32)


def _evaluate(args) -> None:
  from kdjax import inference, summary  # import jax: after the options are checked
  from kdjax.metrics import compute_metrics
  classifier = inference.load_classifier(args.model_dir, args.max_length,
                                         'bfloat16' if args.bf16 else 'float32')
  label_column = args.label_column or ('1' if args.no_header else 'label')
  texts_a, texts_b, raw = model_cli.read_rows(args.data, args, label_column,
                                              classifier.label_names or ())
  if classifier.regression:
    spec = TaskSpec('evaluate', (), None, ('pearson', 'spearman'))
    labels = label_ids(raw, spec, args.data)
  else:
    spec = TaskSpec('evaluate', (), classifier.label_names,
                    ('accuracy', 'f1') + (('mcc',) if args.mcc else ()))
    labels = class_ids(raw, classifier.label_names, args.data)
  outputs = inference.predict(classifier, texts_a, texts_b, args.batch_size, desc='evaluate')
  metrics = compute_metrics(spec.metrics, outputs, labels, spec.regression)
  print('\n'.join(summary.align([(name, f'{value:.4f}') for name, value in metrics.items()])))
  if args.output:
    model_cli.write_text(args.output, json.dumps(
        {'metrics': metrics, 'examples': len(labels), 'model': args.model_dir,
         'data': args.data}, indent=2, sort_keys=True) + '\n')


def main(argv: list[str] | None = None) -> None:
  p = model_cli.parser('kdjax.evaluate', 'Task metrics of a fine-tuned classifier on a '
                       'labelled file.')
  p.add_argument('--data', required=True, metavar='FILE', help='.csv, .tsv, .json or .jsonl')
  p.add_argument('--label-column', metavar='COLUMN',
                 help='label (or score) column; default label (1 with --no-header)')
  p.add_argument('--mcc', action='store_true', help="also Matthews' correlation coefficient")
  p.add_argument('--output', metavar='FILE', help='write the metrics as JSON')
  args = model_cli.parse(p, argv)
  model_cli.run(_evaluate, args)


if __name__ == '__main__':
  main()
