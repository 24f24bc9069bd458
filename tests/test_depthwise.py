"""The two depthwise-convolution implementations agree."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.nn.depthwise import depthwise_conv


@pytest.mark.parametrize("k,stride,dilation", [(3, 1, 1), (5, 2, 1), (3, 1, 2), (5, 2, 2), (7, 1, 1), (7, 2, 1)])
def test_slices_equal_xla_grouped_conv(k, stride, dilation):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 5))
  kernel = jax.random.normal(jax.random.key(1), (k, k, 1, 5))
  got = depthwise_conv(x, kernel, stride=stride, dilation=dilation, impl="slices")
  want = depthwise_conv(x, kernel, stride=stride, dilation=dilation, impl="xla")
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unknown_impl_is_rejected():
  with pytest.raises(ValueError, match="unknown depthwise impl"):
    depthwise_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 1, 2)), impl="winograd")
