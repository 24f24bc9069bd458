"""The w update's gradient from the estimator's relaxed forward (``search.w_gradient``).

``relaxed_forward`` takes w's gradient from the same forward as phi's (one ``jax.vjp``,
two cotangents); ``own_forward`` runs a forward of its own on the train batch with the
same relaxed sample. Both must give the same step: the relaxed forward's value is
``zeta~``, equal to ``zeta`` with tied noise up to float32 rounding.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from search_toys import ToySupernet, step_config, toy_data, toy_search_step  # noqa: E402

from unas_jax import estimators as est  # noqa: E402
from unas_jax.errors import ConfigError  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402


def _steps(estimator, w_gradient, steps=2):
  mesh, state, step = toy_search_step(step_config(estimator=estimator, w_gradient=w_gradient))
  for i in range(steps):
    x, y = toy_data(jax.random.key(i), 16)
    state, metrics = step(state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
                          mesh_lib.put_global(jnp.zeros(8), mesh), jnp.zeros(()))
  return jax.device_get((state.phi, state.w, state.stats, metrics))


@pytest.mark.parametrize("estimator", ["rebar", "gumbel_softmax"])
def test_relaxed_forward_w_gradient_equals_own_forward(estimator):
  own, shared = _steps(estimator, "own_forward"), _steps(estimator, "relaxed_forward")
  # float32, values of order 0.1-1: the two differ only by the rounding of zeta~ vs zeta.
  for a, b in zip(jax.tree.leaves(own[:3]), jax.tree.leaves(shared[:3])):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  for k in ("w_loss", "w_acc", "w_grad_norm"):
    np.testing.assert_allclose(own[3][k], shared[3][k], rtol=1e-5)
  assert float(np.max(np.abs(own[1]["head"]["kernel"] - ToySupernet(rngs=nnx.Rngs(0)).head.kernel[...]))) > 1e-3


def test_estimator_params_gradient_is_the_relaxed_loss_gradient():
  """``rebar(..., params=w)``: phi's estimate unchanged; ``params_grads`` = d/dw at the relaxed sample."""
  phi = {"a": jnp.array([[0.3, -0.2, 0.1], [0.0, 0.5, -0.4]])}
  w = {"v": jnp.array([1.0, -2.0, 0.5])}
  key = est.per_sample_keys(jax.random.key(3), jnp.arange(4))

  def loss_fn(arch, w):
    x = jnp.einsum("sjk,k->sj", arch["a"], w["v"])
    value = jnp.sum(jnp.sin(x) + x ** 2, -1)
    return value, {"params_loss": jnp.mean(jnp.cos(x))}

  plain = est.rebar(phi, key, lambda a: loss_fn(a, w), has_aux=True, sample_shape=(4,))
  shared = est.rebar(phi, key, loss_fn, has_aux=True, sample_shape=(4,), params=w)
  np.testing.assert_allclose(shared.grads["a"], plain.grads["a"], rtol=1e-6, atol=1e-7)
  expected = jax.grad(lambda w: loss_fn(plain.sample.zeta, w)[1]["params_loss"])(w)
  np.testing.assert_allclose(shared.params_grads["v"], expected["v"], rtol=1e-5, atol=1e-6)
  gs = est.gumbel_softmax(phi, key, loss_fn, has_aux=True, sample_shape=(4,), params=w)
  np.testing.assert_allclose(gs.params_grads["v"], expected["v"], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="has_aux"):
    est.rebar(phi, key, lambda a, w: loss_fn(a, w)[0], sample_shape=(4,), params=w)


def test_unknown_w_gradient_is_a_config_error():
  with pytest.raises(ConfigError, match="search.w_gradient"):
    step_config(w_gradient="both")
