"""Task metrics on host numpy arrays: accuracy, F1, MCC, Pearson, Spearman."""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(predictions == labels))


def f1(predictions: np.ndarray, labels: np.ndarray, num_classes: int = 2) -> float:
  """Binary F1 of class 1 (GLUE's MRPC F1); macro-averaged F1 for more classes."""
  classes = [1] if num_classes == 2 else range(num_classes)
  scores = []
  for c in classes:
    tp = np.sum((predictions == c) & (labels == c))
    fp = np.sum((predictions == c) & (labels != c))
    fn = np.sum((predictions != c) & (labels == c))
    scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
  return float(np.mean(scores))


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray,
                      num_classes: int = 2) -> float:
  """Multi-class MCC (Gorodkin 2004), equal to the binary formula for 2 classes."""
  confusion = np.zeros((num_classes, num_classes), np.float64)
  np.add.at(confusion, (labels.astype(int), predictions.astype(int)), 1)
  t, p = confusion.sum(1), confusion.sum(0)
  c, s = np.trace(confusion), confusion.sum()
  denom = np.sqrt(s * s - p @ p) * np.sqrt(s * s - t @ t)
  return 0.0 if denom == 0 else float((c * s - t @ p) / denom)


def _constant(values: np.ndarray) -> bool:
  # Exact: the std of a constant float32 array can come out a rounding error
  # above 0, which would make the correlation NaN instead of 0.
  values = np.asarray(values)
  return values.size == 0 or bool(np.all(values == values.flat[0]))


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
  if _constant(predictions) or _constant(labels):
    return 0.0
  return float(stats.pearsonr(predictions, labels)[0])


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
  if _constant(predictions) or _constant(labels):
    return 0.0
  return float(stats.spearmanr(predictions, labels)[0])


CLASSIFICATION_METRICS: dict[str, Callable[..., float]] = {
    'accuracy': accuracy, 'f1': f1, 'mcc': matthews_corrcoef}
REGRESSION_METRICS: dict[str, Callable[..., float]] = {
    'pearson': pearson, 'spearman': spearman}


def compute_metrics(names: tuple[str, ...], outputs: np.ndarray, labels: np.ndarray,
                    regression: bool) -> dict[str, float]:
  """Metrics named in `names` for model outputs ([N, C] logits or [N, 1] scores)."""
  if regression:
    scores = outputs.reshape(-1)
    return {n: REGRESSION_METRICS[n](scores, labels) for n in names}
  predictions = outputs.argmax(-1)
  num_classes = outputs.shape[-1]
  result = {}
  for n in names:
    fn = CLASSIFICATION_METRICS[n]
    result[n] = fn(predictions, labels) if n == 'accuracy' else fn(predictions, labels, num_classes)
  return result


# The metrics the GLUE leaderboard scores each task by; a task with two metrics
# scores their mean, and the GLUE score is the mean over tasks (x100).
GLUE_SCORE_METRICS = {
    'cola': ('mcc',), 'sst2': ('accuracy',), 'mrpc': ('accuracy', 'f1'),
    'stsb': ('pearson', 'spearman'), 'qnli': ('accuracy',), 'rte': ('accuracy',),
    'wnli': ('accuracy',), 'mnli': ('accuracy',), 'qqp': ('accuracy', 'f1'),
}


def glue_task_score(task: str, task_metrics: dict[str, float]) -> float:
  return 100.0 * float(np.mean([task_metrics[m] for m in GLUE_SCORE_METRICS[task]]))


def glue_average(per_task: dict[str, dict[str, float]]) -> float:
  """The leaderboard's average over the tasks given (x100)."""
  return float(np.mean([glue_task_score(t, m) for t, m in per_task.items()]))


def constant_baseline(names: tuple[str, ...], train_labels: np.ndarray,
                      eval_labels: np.ndarray, regression: bool,
                      num_classes: int) -> dict[str, float]:
  """Metrics of always giving one answer: the training set's most frequent class
  (its accuracy is the majority-class rate; MCC 0), or for regression its mean
  score (correlations 0). A model that learned anything is clearly above it."""
  n = len(eval_labels)
  if regression:
    outputs = np.full((n, 1), float(np.mean(train_labels)), np.float32)
  else:
    majority = int(np.bincount(np.asarray(train_labels, np.int64), minlength=num_classes).argmax())
    outputs = np.zeros((n, num_classes), np.float32)
    outputs[:, majority] = 1.0
  return compute_metrics(names, outputs, eval_labels, regression)
