"""The search step's latency control and expected latency (the penalty and warm-up: tests/test_objectives.py).

The proxyless search feeds the surrogate to the step as ``{'coef', 'bias'}``
(:func:`unas_jax.search.proxyless.surrogate_params`); RELAX's control is
``losses.latency_penalty(predict(params, arch))``.
"""
import jax
import numpy as np
import pytest

from unas_jax.latency.additive import AdditiveLatency
from unas_jax.objectives import losses
from unas_jax.search import proxyless
from unas_jax.spaces import proxyless as sp


def _model():
  rng = np.random.default_rng(0)
  table = {s.name: np.r_[rng.uniform(1, 2, 6), [0.0] * s.allows_zero] for s in sp.layer_specs()}
  return AdditiveLatency(table, 3.0)


def test_control_is_the_penalty_of_the_model_on_one_hot_architectures():
  model = _model()
  gs = sp.random_genotypes(0, 4)
  target = float(np.median(model.latencies(gs)))
  params = proxyless.surrogate_params(model)
  g = losses.latency_penalty(proxyless.predict(params, sp.arch_to_onehot(gs)), 0.1, target)
  np.testing.assert_allclose(g, 0.1 * np.maximum(model.latencies(gs) - target, 0), rtol=1e-5, atol=1e-6)


def test_expected_latency_is_exact_for_additive_models():
  model = _model()
  params = proxyless.surrogate_params(model)
  phi = sp.init_phi(jax.random.key(0), 1.0)
  probs = {k: np.asarray(jax.nn.softmax(v)) for k, v in phi.items()}
  want = model.bias + sum(probs[k] @ model.table[k] for k in probs)
  assert float(proxyless.expected_latency(params, phi, 0.0)) == pytest.approx(want, rel=1e-5)
  uniform = sp.init_phi()
  mc = model.latencies(sp.random_genotypes(1, 20000)).mean()
  assert float(proxyless.expected_latency(params, uniform, 0.0)) == pytest.approx(mc, rel=5e-3)
