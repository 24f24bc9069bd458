"""BatchNorm (unas_jax/nn/batchnorm.py): PyTorch's semantics in both normalisation forms, mixed
precision, and the local/sync modes (the 8-device checks are in test_parallel.py)."""
import importlib.util
import os
import types

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.nn import batchnorm
from unas_jax.nn import mbconv
from unas_jax.nn import ops
from unas_jax.nn import proxyless_network as pn
from unas_jax.search import proxyless

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SMALL = (8, 8, 8, 8, 8, 8, 8, 8, 16)


def test_batch_norm_matches_pytorch_semantics():
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 2)) * 2.0 + 1.0
  bn = batchnorm.BatchNorm(2, affine=False)
  y = bn(x, train=True)
  n = 4 * 3 * 3
  mean, var = jnp.mean(x, axis=(0, 1, 2)), jnp.var(x, axis=(0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / jnp.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
  # Running averages: PyTorch momentum 0.1, unbiased variance.
  np.testing.assert_allclose(bn.mean[...], 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  y_eval = bn(x, train=False)
  np.testing.assert_allclose(y_eval, (x - bn.mean[...]) / jnp.sqrt(bn.var[...] + 1e-5), rtol=1e-5, atol=1e-5)
  assert ops.count_params(bn) == 0 and ops.count_params(batchnorm.BatchNorm(2)) == 4


def test_proxyless_batch_norm_follows_pytorch():
  bn = mbconv.proxyless_batch_norm(3, affine=True, dtype=None)
  assert (bn.epsilon, bn.momentum, bn.folded) == (1e-3, 0.9, True)
  x = jax.random.normal(jax.random.key(0), (4, 5, 5, 3)) * 2.0 + 1.0
  y = bn(x, train=True)
  np.testing.assert_allclose(jnp.mean(y, (0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, (0, 1, 2)), jnp.var(x, (0, 1, 2)) / (jnp.var(x, (0, 1, 2)) + 1e-3),
                             rtol=1e-4)
  np.testing.assert_allclose(bn.mean.get_value(), 0.1 * jnp.mean(x, (0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(bn.var.get_value(), 0.9 + 0.1 * jnp.var(x, (0, 1, 2), ddof=1), rtol=1e-5)
  y_eval = bn(x, train=False)
  np.testing.assert_allclose(y_eval, (x - bn.mean.get_value()) / jnp.sqrt(bn.var.get_value() + 1e-3), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_folded_and_centred_forms_compute_the_same_function(train):
  """``x a + (bias - mu a)`` and ``(x - mu) a + bias``: equal up to float32 rounding, statistics bitwise."""
  x = jax.random.normal(jax.random.key(1), (4, 3, 3, 5)) * 3.0 + 2.0
  mean = jax.random.normal(jax.random.key(2), (5,))
  var = jax.random.uniform(jax.random.key(3), (5,), minval=0.5, maxval=2.0)
  scale, bias = jnp.linspace(0.5, 1.5, 5), jnp.linspace(-1.0, 1.0, 5)
  folded = batchnorm.batch_norm(x, mean, var, scale, bias, train=train, folded=True)
  centred = batchnorm.batch_norm(x, mean, var, scale, bias, train=train, folded=False)
  # |y| ~ 1-3 with |x a| up to ~10: a few float32 ulps of the larger term.
  np.testing.assert_allclose(folded[0], centred[0], rtol=0, atol=1e-5)
  assert not np.array_equal(folded[0], centred[0])  # two forms, not one code path
  np.testing.assert_array_equal(folded[1], centred[1])
  np.testing.assert_array_equal(folded[2], centred[2])


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_mixed_precision_keeps_statistics_and_parameters_float32(dtype):
  """A bfloat16 input (or ``dtype=bfloat16``) gives a bfloat16 output; statistics and parameters stay float32."""
  bn = batchnorm.BatchNorm(4, dtype=dtype)
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  x_in = x if dtype is not None else x.astype(jnp.bfloat16)
  y = bn(x_in, train=True)
  assert y.dtype == jnp.bfloat16
  assert {v.dtype for v in jax.tree.leaves(nnx.state(bn))} == {jnp.dtype(jnp.float32)}
  # Normalised in float32, then rounded once: within bfloat16's half ulp of the float32 result.
  y32 = batchnorm.BatchNorm(4)(x_in.astype(jnp.float32), train=True)
  np.testing.assert_allclose(np.asarray(y, np.float32), y32, rtol=2 ** -8, atol=1e-6)


class _Foreign(nnx.Module):
  """A module with running statistics that is no synchronisable BatchNorm."""

  def __init__(self):
    self.bn = batchnorm.BatchNorm(2)
    self.stat = nnx.BatchStat(jnp.zeros((2,)))


def test_set_axis_name_reaches_every_batchnorm_and_refuses_others():
  net = pn.ProxylessNetwork("proxylessnas_gpu", SMALL, 10, rngs=nnx.Rngs(0))
  bns = [m for _, m in nnx.iter_graph(net) if isinstance(m, batchnorm.BatchNorm)]
  assert len(bns) > 40 and all(b.folded and b.axis_name is None for b in bns)
  assert batchnorm.set_axis_name(net, "data") == len(bns)
  assert all(b.axis_name == "data" for b in bns)
  batchnorm.apply_mode(net, "local", "data")
  assert all(b.axis_name is None for b in bns)
  foreign = _Foreign()
  assert batchnorm.set_axis_name(foreign, None) == 1  # local: nothing to synchronise
  with pytest.raises(ConfigError, match="_Foreign has no synchronised BatchNorm"):
    batchnorm.set_axis_name(foreign, "data")
  with pytest.raises(ConfigError, match="train.bn"):
    batchnorm.apply_mode(net, "global", "data", "train.bn")


def test_proxyless_search_space_accepts_sync_batch_norm():
  spec = importlib.util.spec_from_file_location("proxyless_latency", os.path.join(CONFIGS, "proxyless_latency.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("quick")
  config.model.widths = ",".join(map(str, SMALL))
  space = proxyless.ProxylessSearchSpace(config)
  supernet = space.build_supernet(config, types.SimpleNamespace(num_classes=10, image_shape=(32, 32, 3)), "data")
  bns = [m for _, m in nnx.iter_graph(supernet) if isinstance(m, batchnorm.BatchNorm)]
  assert bns and all(b.axis_name == "data" for b in bns)
