"""Loss values and gradients against hand-computed references; masking."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import losses


def np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_hard_cross_entropy_value():
  logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
  got = losses.hard_cross_entropy(logits, jnp.array([0, 1]))
  expected = [-np.log(np.e ** 2 / (np.e ** 2 + 1)), np.log(2.0)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize('tau', [1.0, 2.0, 4.0])
def test_kd_cross_entropy_value_and_gradient(tau):
  zs = np.array([[1.0, -0.5, 0.3], [0.2, 0.1, -1.0]])
  zt = np.array([[2.0, 0.0, -1.0], [-0.3, 0.8, 0.1]])
  pt, ps = np_softmax(zt / tau), np_softmax(zs / tau)
  expected = -tau ** 2 * np.sum(pt * np.log(ps), -1)
  got = losses.kd_cross_entropy(jnp.asarray(zs), jnp.asarray(zt), tau)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # d/dz_S [tau^2 CE(p_T, softmax(z_S/tau))] = tau (p_S - p_T)
  grad = jax.grad(lambda z: losses.kd_cross_entropy(z, jnp.asarray(zt), tau).sum())(jnp.asarray(zs))
  np.testing.assert_allclose(grad, tau * (ps - pt), rtol=1e-5, atol=1e-6)
  # The teacher is a constant: no gradient flows into its logits.
  teacher_grad = jax.grad(lambda t: losses.kd_cross_entropy(jnp.asarray(zs), t, tau).sum())(
      jnp.asarray(zt))
  np.testing.assert_array_equal(teacher_grad, 0.0)


def test_distillation_loss_mixes_hard_and_soft():
  zs = jnp.array([[0.5, -0.5]])
  zt = jnp.array([[3.0, 0.0]])
  y = jnp.array([1])
  hard = float(losses.hard_cross_entropy(zs, y)[0])
  soft = float(losses.kd_cross_entropy(zs, zt, 2.0)[0])
  got = losses.distillation_loss(zs, y, zt, alpha=0.3, temperature=2.0, regression=False)
  np.testing.assert_allclose(got, [0.3 * hard + 0.7 * soft], rtol=1e-6)
  only_hard = losses.distillation_loss(zs, y, None, alpha=0.3, temperature=2.0, regression=False)
  np.testing.assert_allclose(only_hard, [hard], rtol=1e-6)


def test_regression_loss_value_and_gradient():
  s = jnp.array([[1.0], [2.5]])
  y = jnp.array([0.0, 3.0])
  t = jnp.array([[2.0], [2.0]])
  got = losses.distillation_loss(s, y, t, alpha=0.5, temperature=1.0, regression=True)
  np.testing.assert_allclose(got, [0.5 * 1 + 0.5 * 1, 0.5 * 0.25 + 0.5 * 0.25], rtol=1e-6)
  grad = jax.grad(lambda p: losses.distillation_loss(p, y, t, alpha=0.5, temperature=1.0,
                                                     regression=True).sum())(s)
  # d/ds [0.5 (s-y)^2 + 0.5 (s-t)^2] = (s-y) + (s-t)
  np.testing.assert_allclose(grad[:, 0], [1 + -1, -0.5 + 0.5], atol=1e-6)


def test_weighted_mean_masks_padding():
  per_example = jnp.array([1.0, 3.0, 1000.0])
  weights = jnp.array([1.0, 1.0, 0.0])
  assert float(losses.weighted_mean(per_example, weights)) == pytest.approx(2.0)
  # Padded rows get no gradient, whatever their value.
  logits = jnp.array([[1.0, 0.0], [0.0, 1.0], [50.0, -50.0]])
  labels = jnp.array([0, 0, 1])
  grad = jax.grad(lambda z: losses.weighted_mean(losses.hard_cross_entropy(z, labels),
                                                 weights))(logits)
  np.testing.assert_array_equal(grad[2], 0.0)
  assert np.abs(grad[:2]).sum() > 0
  assert float(losses.weighted_mean(per_example, jnp.zeros(3))) == 0.0
