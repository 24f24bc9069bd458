"""Search objectives and the latency penalty."""
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.objectives import losses


def test_generalization_loss_per_example():
  l_train = jnp.array([1.0, 2.0, 0.5])
  l_val = jnp.array([1.5, 1.0, 0.5])
  np.testing.assert_allclose(losses.search_objective(l_train, l_val, "gen", 0.5), [1.25, 2.5, 0.5])
  np.testing.assert_allclose(losses.search_objective(l_train, l_val, "train"), l_train)
  np.testing.assert_allclose(losses.search_objective(l_train, l_val, "val"), l_val)
  with pytest.raises(ConfigError, match="objective"):
    losses.search_objective(l_train, l_val, "gap")


def test_per_sample_grouping():
  x = jnp.arange(6.0)
  np.testing.assert_allclose(losses.per_sample(x, 6), x)
  np.testing.assert_allclose(losses.per_sample(x, 1), [2.5])
  np.testing.assert_allclose(losses.per_sample(x, 2), [1.0, 4.0])


def test_latency_penalty_and_warmup():
  c = losses.latency_coefficient(jnp.array(5), 0.1, 10)
  np.testing.assert_allclose(c, 0.05)
  np.testing.assert_allclose(losses.latency_coefficient(jnp.array(50), 0.1, 10), 0.1)
  np.testing.assert_allclose(losses.latency_penalty(jnp.array([8.0, 12.0]), 0.1, 10.0), [0.0, 0.2], atol=1e-7)
  np.testing.assert_allclose(losses.latency_penalty(jnp.array([8.0]), 0.1, 10.0, "linear"), [0.8])


def test_latency_penalty_at_target_warmup_from_python_ints_and_unknown_kind():
  lat = jnp.array([8.0, 10.0, 12.0])
  np.testing.assert_allclose(losses.latency_penalty(lat, 0.1, 10.0), [0.0, 0.0, 0.2], atol=1e-7)
  np.testing.assert_allclose(losses.latency_penalty(lat, 0.1, 10.0, "linear"), [0.8, 1.0, 1.2], atol=1e-6)
  assert float(losses.latency_coefficient(50, 0.1, 100)) == pytest.approx(0.05)
  assert float(losses.latency_coefficient(500, 0.1, 100)) == pytest.approx(0.1)
  assert float(losses.latency_coefficient(0, 0.1, 0)) == pytest.approx(0.1)
  with pytest.raises(ConfigError, match="not one of"):
    losses.latency_penalty(lat, 0.1, 1.0, "square")


def test_cross_entropy_matches_log_softmax():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
  labels = jnp.array([0, 2])
  want = -np.log(np.exp([2.0, 0.0]) / np.exp(logits).sum(1))
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), want, rtol=1e-6)
