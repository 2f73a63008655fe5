"""What `kdjax.predict` and `kdjax.evaluate` share: the model and input options,
reading the input rows, and one-line errors (`kdjax: error: ...`, exit 2)."""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable

from kdjax import torch_notice
from kdjax.data import sources
from kdjax.errors import KdjaxError
from kdjax.main import EXIT_INTERNAL, fail

# Text columns used when --text-columns is not given, the first the file has.
DEFAULT_TEXT_COLUMNS = (('sentence1', 'sentence2'), ('question', 'sentence'), ('text',),
                        ('sentence',))


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> None:  # one line, as every kdjax error
    fail(f'{message}; see python -m {self.prog} --help')


def parser(prog: str, description: str) -> argparse.ArgumentParser:
  """The options every model command takes (model, columns, header, batching)."""
  p = _Parser(prog=prog, description=description)
  p.add_argument('model_dir', metavar='MODEL_DIR',
                 help='HF BERT-family classifier, e.g. runs/defaults/export/student')
  p.add_argument('--text-columns', nargs='+', metavar='COLUMN',
                 help='one text column, or two for pairs (numbers from 0 without a header); '
                      'default: sentence1 sentence2, question sentence, text or sentence, '
                      'the first the file has (0 with --no-header)')
  p.add_argument('--no-header', action='store_true',
                 help='the CSV/TSV file has no header row: columns are 0, 1, ...')
  p.add_argument('--batch-size', type=int, default=32, help='rows per forward pass')
  p.add_argument('--max-length', type=int, default=128,
                 help='tokens per text (longer ones are truncated)')
  p.add_argument('--bf16', action='store_true', help='bfloat16 activations and matmuls')
  p.add_argument('--verbose', action='store_true', help='tracebacks on errors')
  return p


def read_rows(path: str, args: argparse.Namespace, label_column: str | None = None,
              labels: tuple[str, ...] = ()) -> tuple[list[str], list[str] | None, list[str]]:
  """(texts_a, texts_b or None, label cells or []) of every row of `path`; `-`
  reads stdin, one text per line. `labels` (known label names) help tell a
  header from data."""
  if path == '-':
    lines = sys.stdin.read().splitlines()
    if not lines:
      raise KdjaxError('stdin is empty; give one text per line')
    return lines, None, []
  header = 'no' if args.no_header else 'auto'
  columns = tuple(args.text_columns or (('0',) if args.no_header else ()))
  fix = '--no-header --text-columns 0' + ('' if label_column is None else ' --label-column 1')
  records = sources.read_records(path, columns, header, label_column, labels, fix)
  if not records:
    raise KdjaxError(f'{path} has no rows')
  if not columns:
    have = records[0] if isinstance(records[0], dict) else {}
    columns = next((c for c in DEFAULT_TEXT_COLUMNS if all(k in have for k in c)), ())
    if not columns:
      raise KdjaxError(f'{path} has none of the columns text, sentence (columns: '
                       f'{list(have)}); name the text column(s) with --text-columns, or, '
                       f'for a file without a header, {fix}')
  if len(columns) > 2:
    raise KdjaxError(f'--text-columns {list(columns)}: give one column, or two for pairs')
  wanted = (*columns, *(() if label_column is None else (label_column,)))
  sources.check_columns(records, wanted, path)
  cells = [[sources.cell(r, c, row, path) for row, r in enumerate(records, 1)] for c in wanted]
  texts = cells[:len(columns)]
  raw_labels = cells[len(columns)] if label_column is not None else []
  return texts[0], texts[1] if len(texts) > 1 else None, raw_labels


def write_text(path: str, text: str) -> None:
  try:
    with open(path, 'w', encoding='utf-8') as f:
      f.write(text)
  except OSError as e:
    raise KdjaxError(f'cannot write {path} ({e.strerror})') from None


def run(main: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
  """Runs `main(args)`; bad input ends in one line and exit 2, a bug in one line
  and exit 1 (with the traceback under --verbose)."""
  try:
    main(args)
  except KdjaxError as e:
    if args.verbose:
      traceback.print_exc()
    fail(str(e))
  except Exception as e:  # a bug, not bad input
    if args.verbose:
      traceback.print_exc()
    fail(f'internal error {type(e).__name__}: {e} (rerun with --verbose for the traceback)',
         EXIT_INTERNAL)


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
  """Parses `argv` (default sys.argv) after dropping the no-PyTorch notice,
  which transformers prints when it is first imported."""
  torch_notice.silence()
  args = p.parse_args(argv)
  if args.batch_size < 1 or args.max_length < 2:
    fail(f'--batch-size {args.batch_size} / --max-length {args.max_length}: give a batch '
         'of at least 1 and at least 2 tokens')
  return args
