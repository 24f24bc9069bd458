"""RELAX control and expected latency (the penalty and warm-up: tests/test_objectives.py)."""
import jax
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.latency import objective
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.spaces import proxyless as sp


def _model():
  rng = np.random.default_rng(0)
  table = {s.name: np.r_[rng.uniform(1, 2, 6), [0.0] * s.allows_zero] for s in sp.layer_specs()}
  return AdditiveLatency(table, 3.0)


def test_control_fn_and_unreachable_target():
  model = _model()
  gs = sp.random_genotypes(0, 4)
  target = float(np.median(model.latencies(gs)))
  g = objective.control_fn(model, target, 0.1)(sp.arch_to_onehot(gs))
  np.testing.assert_allclose(g, 0.1 * np.maximum(model.latencies(gs) - target, 0), rtol=1e-5, atol=1e-6)
  with pytest.raises(ConfigError, match="below the smallest reachable latency"):
    objective.control_fn(model, model.min_latency() - 1.0, 0.1)


def test_expected_latency_is_exact_for_additive_models():
  model = _model()
  phi = sp.init_phi(jax.random.key(0), 1.0)
  probs = {k: np.asarray(jax.nn.softmax(v)) for k, v in phi.items()}
  want = model.bias + sum(probs[k] @ model.table[k] for k in probs)
  assert float(objective.expected_latency(model, phi)) == pytest.approx(want, rel=1e-5)
  uniform = sp.init_phi()
  mc = model.latencies(sp.random_genotypes(1, 20000)).mean()
  assert float(objective.expected_latency(model, uniform)) == pytest.approx(mc, rel=5e-3)
