"""Task metrics against values computed by hand."""
import numpy as np
import pytest

from kdjax import metrics


def test_accuracy_f1_mcc_binary():
  y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
  p = np.array([1, 1, 0, 0, 0, 1, 0, 1])
  # tp=3 fp=1 fn=1 tn=3
  assert metrics.accuracy(p, y) == pytest.approx(6 / 8)
  assert metrics.f1(p, y) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
  assert metrics.matthews_corrcoef(p, y) == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))


def test_mcc_degenerate_and_multiclass():
  assert metrics.matthews_corrcoef(np.zeros(4, int), np.array([0, 1, 0, 1])) == 0.0
  y = np.array([0, 1, 2, 0, 1, 2])
  assert metrics.matthews_corrcoef(y, y, 3) == pytest.approx(1.0)
  assert metrics.f1(y, y, 3) == pytest.approx(1.0)


def test_pearson_spearman():
  x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
  assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
  assert metrics.spearman(x, x ** 3) == pytest.approx(1.0)
  # Hand computed: ranks of y are [2, 1, 4, 3, 5]; d^2 sum = 4; rho = 1 - 6*4/(5*24)
  y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
  assert metrics.spearman(x, y) == pytest.approx(1 - 6 * 4 / 120)
  assert metrics.pearson(x, y) == pytest.approx(0.8)


def test_a_constant_answer_correlates_zero():
  """A constant prediction (the regression baseline: the training mean, whose
  float32 std is a rounding error above 0 here) has correlation 0, not NaN."""
  answer = np.full(64, np.float32(2.6069045), np.float32)
  assert np.std(answer) > 0  # the case a std test gets wrong
  labels = np.linspace(0.0, 5.0, 64)
  assert metrics.pearson(answer, labels) == 0.0 and metrics.spearman(answer, labels) == 0.0
  baseline = metrics.constant_baseline(('pearson', 'spearman'), np.array([2.5, 2.7139]),
                                       labels, True, 1)
  assert baseline == {'pearson': 0.0, 'spearman': 0.0}


def test_compute_metrics_dispatch():
  logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
  out = metrics.compute_metrics(('accuracy', 'f1'), logits, np.array([1, 0, 0]), False)
  assert out == {'accuracy': pytest.approx(2 / 3), 'f1': pytest.approx(2 / 3)}
  reg = metrics.compute_metrics(('pearson',), np.array([[1.0], [2.0], [3.0]]),
                                np.array([1.0, 2.0, 3.5]), True)
  assert reg['pearson'] > 0.98


def test_constant_baseline_answers_the_training_majority():
  # Training majority is class 2 (3 of 5), though class 0 leads on the eval rows.
  train = np.array([2, 0, 2, 1, 2])
  evaluated = np.array([0, 0, 2, 1])
  got = metrics.constant_baseline(('accuracy', 'f1', 'mcc'), train, evaluated, False, 3)
  # Macro F1 over 3 classes: class 2 has tp=1, fp=3 -> 2/5; classes 0 and 1: 0.
  assert got == {'accuracy': pytest.approx(1 / 4), 'f1': pytest.approx((2 / 5) / 3),
                 'mcc': 0.0}
  binary = metrics.constant_baseline(('accuracy', 'f1'), np.array([1, 1, 0]),
                                     np.array([1, 0, 0, 0]), False, 2)
  assert binary == {'accuracy': pytest.approx(1 / 4), 'f1': pytest.approx(2 / 5)}
  scores = metrics.constant_baseline(('pearson', 'spearman'), np.array([1.0, 3.0]),
                                     np.array([0.5, 2.0, 4.0]), True, 1)
  assert scores == {'pearson': 0.0, 'spearman': 0.0}
