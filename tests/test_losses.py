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


def _hidden_states(rng, widths_and_count, shape=(2, 3)):
  width, count = widths_and_count
  return [rng.normal(size=shape + (width,)).astype(np.float32) for _ in range(count)]


def test_hidden_state_mse_against_hand_computed_values():
  rng = np.random.default_rng(2)
  teacher = _hidden_states(rng, (4, 4))   # embeddings + 3 layers, width 4
  student = _hidden_states(rng, (2, 3))   # embeddings + 2 layers, width 2
  mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  pairs = ((0, 0), (1, 1), (2, 3))
  ups = [rng.normal(size=(2, 4)).astype(np.float32) for _ in pairs]
  got = losses.hidden_state_mse(teacher, student, pairs, mask, ups)
  expected = sum((((student[s] @ w - teacher[t]) ** 2).mean(-1) * mask).sum(1) / mask.sum(1)
                 for (s, t), w in zip(pairs, ups))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # One shared matrix, the teacher side projected, and no projection at all.
  down = rng.normal(size=(4, 2)).astype(np.float32)
  got = losses.hidden_state_mse(teacher, student, pairs, mask, down, project='teacher')
  expected = sum((((teacher[t] @ down - student[s]) ** 2).mean(-1) * mask).sum(1) / mask.sum(1)
                 for s, t in pairs)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  same = _hidden_states(rng, (4, 3))
  got = losses.hidden_state_mse(teacher, same, pairs, mask)
  expected = sum((((same[s] - teacher[t]) ** 2).mean(-1) * mask).sum(1) / mask.sum(1)
                 for s, t in pairs)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  with pytest.raises(Exception, match='2 projections for 3 layer pairs'):
    losses.hidden_state_mse(teacher, student, pairs, mask, ups[:2])


def test_hidden_state_mse_ignores_padded_positions():
  rng = np.random.default_rng(3)
  teacher, student = _hidden_states(rng, (4, 2)), _hidden_states(rng, (4, 2))
  mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  pairs = ((0, 0), (1, 1))
  loss = lambda s: losses.hidden_state_mse(teacher, s, pairs, mask)
  moved = [x.copy() for x in student]
  for x in moved:
    x[mask == 0] += 100.0
  np.testing.assert_allclose(loss(moved), loss(student), rtol=1e-6)
  grads = jax.grad(lambda s: loss(s).sum())([jnp.asarray(x) for x in student])
  for g in grads:
    np.testing.assert_array_equal(np.asarray(g)[mask == 0], 0.0)
    assert np.abs(np.asarray(g)[mask == 1]).min() > 0
  # No gradient reaches the teacher's states.
  t_grads = jax.grad(lambda t: losses.hidden_state_mse(t, student, pairs, mask).sum())(
      [jnp.asarray(x) for x in teacher])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in t_grads)


def _attention(rng, heads, mask, length=4):
  """Softmax rows over the unmasked keys, [B, h, L, L]."""
  scores = rng.normal(size=(len(mask), heads, length, length))
  scores = np.where(mask[:, None, None, :] > 0, scores, -np.inf)
  e = np.exp(scores - scores.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _kl_rows(a_t, a_s):
  """KL per query row over the keys where a_t > 0 (padded keys hold 0): [.., L]."""
  with np.errstate(divide='ignore', invalid='ignore'):
    terms = np.where(a_t > 0, a_t * (np.log(a_t) - np.log(a_s)), 0.0)
  return terms.sum(-1)


def test_attention_kl_against_hand_computed_values():
  rng = np.random.default_rng(4)
  mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
  teacher = [_attention(rng, 4, mask) for _ in range(3)]
  student = [_attention(rng, 4, mask) for _ in range(2)]
  pairs = ((0, 1), (1, 2))
  got = losses.attention_kl(teacher, student, pairs, mask)
  expected = sum((_kl_rows(teacher[t], student[s]).mean(1) * mask).sum(1) / mask.sum(1)
                 for s, t in pairs)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert np.all(expected > 0)
  np.testing.assert_allclose(losses.attention_kl(teacher, teacher, ((0, 0), (2, 2)), mask),
                             0.0, atol=1e-6)
  # Another head count: both sides averaged over their heads first.
  fewer = [_attention(rng, 2, mask) for _ in range(2)]
  got = losses.attention_kl(teacher, fewer, pairs, mask)
  expected = sum((_kl_rows(teacher[t].mean(1), fewer[s].mean(1)) * mask).sum(1) / mask.sum(1)
                 for s, t in pairs)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_attention_kl_ignores_padded_queries_and_keys():
  rng = np.random.default_rng(5)
  mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
  teacher, student = [_attention(rng, 2, mask)], [_attention(rng, 2, mask)]
  loss = lambda s: losses.attention_kl(teacher, s, ((0, 0),), mask)
  reference = loss(student)
  assert np.all(np.isfinite(reference)) and np.all(reference > 0)
  # Rows of padded queries and (vanishing) mass on padded keys change nothing.
  moved = student[0].copy()
  moved[mask[:, None, :, None].repeat(4, -1).repeat(2, 1) == 0] = 0.25
  np.testing.assert_allclose(loss([moved]), reference, rtol=1e-6)
  grad = jax.grad(lambda a: loss([a]).sum())(jnp.asarray(student[0]))
  padded_rows = np.broadcast_to(mask[:, None, :, None] == 0, grad.shape)
  np.testing.assert_array_equal(np.asarray(grad)[padded_rows], 0.0)
  assert np.all(np.isfinite(grad))
