"""The search step's latency control and expected latency (the penalty and warm-up: tests/test_objectives.py).

The proxyless search feeds the surrogate to the step as ``{'coef', 'bias'}``
(:meth:`unas_jax.latency.additive.AdditiveLatency.control_params`); RELAX's control is
``losses.latency_penalty(predict(params, arch))`` with :data:`unas_jax.latency.additive.predict`.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.latency import additive
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.objectives import losses
from unas_jax.spaces import proxyless as sp


def _model():
  rng = np.random.default_rng(0)
  table = {s.name: np.r_[rng.uniform(1, 2, 6), [0.0] * s.allows_zero] for s in sp.layer_specs()}
  return AdditiveLatency(table, 3.0)


def test_control_is_the_penalty_of_the_model_on_one_hot_architectures():
  model = _model()
  gs = sp.random_genotypes(0, 4)
  target = float(np.median(model.latencies(gs)))
  params = model.control_params()
  g = losses.latency_penalty(additive.predict(params, sp.genotype_to_arch(gs)), 0.1, target)
  np.testing.assert_allclose(g, 0.1 * np.maximum(model.latencies(gs) - target, 0), rtol=1e-5, atol=1e-6)


def test_one_prediction_is_the_per_layer_sum():
  """``predict(params, z) = flatten(z) . coef + b`` is ``b + sum_l z_l . t_l`` (the model's own table)."""
  model = _model()
  rng = np.random.default_rng(1)
  relaxed = {s.name: jnp.asarray(rng.dirichlet(np.ones(s.num_choices), (3, 2)), jnp.float32) for s in sp.layer_specs()}
  per_layer = model.bias + sum(np.tensordot(np.asarray(relaxed[n], np.float64), model.table[n], axes=([-1], [0]))
                               for n in sp.LAYER_NAMES)
  np.testing.assert_allclose(additive.predict(model.control_params(), relaxed), per_layer, rtol=1e-5)
  np.testing.assert_array_equal(model.predict(relaxed), additive.predict(model.control_params(), relaxed))


def test_expected_latency_is_exact_for_additive_models():
  model = _model()
  params = model.control_params()
  phi = sp.init_phi(jax.random.key(0), 1.0)
  probs = {k: np.asarray(jax.nn.softmax(v)) for k, v in phi.items()}
  want = model.bias + sum(probs[k] @ model.table[k] for k in probs)
  assert float(additive.predict.expected(params, phi, 0.0)) == pytest.approx(want, rel=1e-5)
  uniform = sp.init_phi()
  mc = model.latencies(sp.random_genotypes(1, 20000)).mean()
  assert float(additive.predict.expected(params, uniform, 0.0)) == pytest.approx(mc, rel=5e-3)
