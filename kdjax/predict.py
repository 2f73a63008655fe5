"""`python -m kdjax.predict MODEL_DIR --input FILE [--output FILE]`: one JSON line
per input row, `{"label": name, "probs": {name: p, ...}}` (classification) or
`{"score": x}` (regression).

Input: a CSV, TSV, JSON (a list of objects) or JSONL file, or `-` for stdin
with one text per line. Output: stdout, or --output.
"""
from __future__ import annotations

import json
import sys

from kdjax import model_cli


def _predict(args) -> None:
  texts_a, texts_b, _ = model_cli.read_rows(args.input, args)
  from kdjax import inference  # imports jax: after the input is checked
  classifier = inference.load_classifier(args.model_dir, args.max_length,
                                         'bfloat16' if args.bf16 else 'float32')
  outputs = inference.predict(classifier, texts_a, texts_b, args.batch_size, desc='predict')
  if classifier.regression:
    lines = [{'score': float(o[0])} for o in outputs]
  else:
    names = classifier.label_names
    lines = [{'label': names[int(p.argmax())],
              'probs': {name: float(v) for name, v in zip(names, p)}}
             for p in inference.probabilities(outputs)]
  text = ''.join(json.dumps(line) + '\n' for line in lines)
  if args.output:
    model_cli.write_text(args.output, text)
  else:
    sys.stdout.write(text)


def main(argv: list[str] | None = None) -> None:
  p = model_cli.parser('kdjax.predict', 'Labels and probabilities (or scores) of a '
                       'fine-tuned classifier, one JSON line per input row.')
  p.add_argument('--input', required=True, metavar='FILE',
                 help='.csv, .tsv, .json or .jsonl; - for stdin, one text per line')
  p.add_argument('--output', metavar='FILE', help='JSON lines file (default: stdout)')
  args = model_cli.parse(p, argv)
  model_cli.run(_predict, args)


if __name__ == '__main__':
  main()
