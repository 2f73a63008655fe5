"""Task specifications: text columns, labels (or regression) and metrics."""
from __future__ import annotations

import dataclasses

import numpy as np

from kdjax.errors import KdjaxError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One text classification or regression task.

  `label_names=None` marks a regression task (one score per example).
  The first metric is the one checkpoints and summaries lead with.
  """
  name: str
  text_columns: tuple[str, ...]          # one (single sentence) or two (pair)
  label_names: tuple[str, ...] | None
  metrics: tuple[str, ...]
  score_range: tuple[float, float] | None = None  # regression: the scores a file may hold

  @property
  def regression(self) -> bool:
    return self.label_names is None

  @property
  def num_outputs(self) -> int:
    return 1 if self.label_names is None else len(self.label_names)

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2


@dataclasses.dataclass
class Examples:
  """Raw examples of one split. labels: int32 [N] class ids or float32 [N] scores.

  `origin` says where the rows come from (a file, a carved share of one), for
  summaries that must tell which data each figure measures.
  """
  texts_a: list[str]
  texts_b: list[str] | None
  labels: np.ndarray
  origin: str = ''

  def __len__(self) -> int:
    return len(self.texts_a)

  def subset(self, indices) -> 'Examples':
    return Examples([self.texts_a[i] for i in indices],
                    None if self.texts_b is None else [self.texts_b[i] for i in indices],
                    self.labels[np.asarray(indices, dtype=np.int64)], self.origin)


BBC_LABELS = ('business', 'entertainment', 'politics', 'sports', 'tech')

GLUE_TASKS: dict[str, TaskSpec] = {
    'cola': TaskSpec('cola', ('sentence',), ('0', '1'), ('mcc', 'accuracy')),  # MCC is GLUE's
    'sst2': TaskSpec('sst2', ('sentence',), ('0', '1'), ('accuracy',)),
    'mrpc': TaskSpec('mrpc', ('sentence1', 'sentence2'), ('0', '1'), ('accuracy', 'f1')),
    'stsb': TaskSpec('stsb', ('sentence1', 'sentence2'), None, ('pearson', 'spearman'),
                     score_range=(0.0, 5.0)),
    'rte': TaskSpec('rte', ('sentence1', 'sentence2'), ('entailment', 'not_entailment'),
                    ('accuracy',)),
    'wnli': TaskSpec('wnli', ('sentence1', 'sentence2'), ('0', '1'), ('accuracy',)),
    'qnli': TaskSpec('qnli', ('question', 'sentence'), ('entailment', 'not_entailment'),
                     ('accuracy',)),
}

TASKS: dict[str, TaskSpec] = {
    'bbc': TaskSpec('bbc', ('text',), BBC_LABELS, ('accuracy', 'f1')),
    **GLUE_TASKS,
}


def get_task(name: str) -> TaskSpec:
  key = name.lower().replace('-', '')
  if key not in TASKS:
    raise KdjaxError(f'unknown task {name!r}; choose one of {sorted(TASKS)} or '
                     "set --config.data.source=file with your own columns")
  return TASKS[key]


def label_ids(raw_labels: list[str], spec: TaskSpec, where: str) -> np.ndarray:
  """Maps label strings to class ids (or floats for regression), naming bad rows."""
  if spec.regression:
    try:
      scores = np.asarray([float(x) for x in raw_labels], np.float64)
    except ValueError as e:
      raise KdjaxError(f'{where}: regression label is not a number ({e})') from None
    low, high = spec.score_range or (-np.inf, np.inf)
    bad = np.flatnonzero(~np.isfinite(scores) | (scores < low) | (scores > high))
    if bad.size:
      allowed = f'in [{low}, {high}]' if spec.score_range else 'finite'
      raise KdjaxError(f'{where}: row {bad[0] + 1} has score {raw_labels[bad[0]]!r}; scores '
                       f'must be {allowed}')
    return scores.astype(np.float32)
  index = {name: i for i, name in enumerate(spec.label_names)}
  ids = np.empty(len(raw_labels), np.int32)
  for row, label in enumerate(raw_labels):
    if label not in index:
      raise KdjaxError(f'{where}: row {row + 1} has label {label!r}, outside the task '
                       f'labels {list(spec.label_names)}; fix the file or the label names')
    ids[row] = index[label]
  return ids
