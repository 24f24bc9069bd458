"""DARTS ops: parameter counts and outputs equal the PyTorch reference's; fast VJPs equal autodiff."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.nn import depthwise
from unas_jax.nn import fast_grad
from unas_jax.nn import ops

OP_NAMES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
            "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5")

# Parameter counts of the reference ops, obtained by running NVlabs/unas
# darts/operations.py (OPS[name](C, stride, affine), the DARTS ops plus
# sep_conv_7x7) with torch 2.13.0 in a scratch venv:
# sum(p.numel() for p in op.parameters()).
TORCH_PARAM_COUNTS = {
    # (C, stride, affine): counts in OP_NAMES order
    (16, 1, False): (0, 0, 0, 0, 800, 1312, 2080, 400, 656),
    (16, 1, True): (0, 0, 0, 0, 864, 1376, 2144, 432, 688),
    (16, 2, False): (0, 0, 0, 256, 800, 1312, 2080, 400, 656),
    (16, 2, True): (0, 0, 0, 288, 864, 1376, 2144, 432, 688),
    (36, 1, False): (0, 0, 0, 0, 3240, 4392, 6120, 1620, 2196),
    (36, 1, True): (0, 0, 0, 0, 3384, 4536, 6264, 1692, 2268),
    (36, 2, False): (0, 0, 0, 1296, 3240, 4392, 6120, 1620, 2196),
    (36, 2, True): (0, 0, 0, 1368, 3384, 4536, 6264, 1692, 2268),
}


@pytest.mark.parametrize("key", sorted(TORCH_PARAM_COUNTS))
def test_param_counts_equal_pytorch_reference(key):
  c, stride, affine = key
  got = tuple(ops.count_params(ops.make_op(name, c, stride, affine, rngs=nnx.Rngs(0))) for name in OP_NAMES)
  assert got == TORCH_PARAM_COUNTS[key]


def test_preprocessing_param_counts_equal_pytorch_reference():
  # ReLUConvBN(48, 16, 1, 1, 0, affine) and FactorizedReduce(64, 32, affine), same source.
  assert ops.count_params(ops.ReLUConvBN(48, 16, 1, 1, 0, affine=False, rngs=nnx.Rngs(0))) == 768
  assert ops.count_params(ops.ReLUConvBN(48, 16, 1, 1, 0, affine=True, rngs=nnx.Rngs(0))) == 800
  assert ops.count_params(ops.FactorizedReduce(64, 32, affine=False, rngs=nnx.Rngs(0))) == 2048
  assert ops.count_params(ops.FactorizedReduce(64, 32, affine=True, rngs=nnx.Rngs(0))) == 2112


# Outputs of the reference ops (NVlabs/unas darts/operations.py, torch 2.13.0)
# with C=4, input x[n, c, h, w] = sin(flat index) of shape [2, 4, 6, 6] (NCHW),
# the i-th tensor of op.parameters() filled with cos(0.7 * arange + i) in
# PyTorch's shape, affine BatchNorm: (sum y^2, sum y) in training mode, then the
# same in eval mode (running statistics after that one training step).
TORCH_GOLDEN = {
    ("sep_conv_3x3", 1): (271.394348, -40.300858, 148.490265, -36.214451),
    ("sep_conv_3x3", 2): (67.847832, -10.075213, 38.845562, -8.086452),
    ("sep_conv_7x7", 1): (271.395905, -40.300858, 1297.732910, -38.773094),
    ("sep_conv_7x7", 2): (67.848175, -10.075215, 64.881561, -9.455769),
    ("dil_conv_5x5", 1): (301.844543, -127.256233, 235.758667, -125.815880),
    ("dil_conv_5x5", 2): (75.460991, -31.814058, 55.252716, -31.593124),
    ("skip_connect", 1): (143.776276, 0.869087, 143.776276, 0.869087),
    ("skip_connect", 2): (75.459808, -31.814056, 37.300850, -18.884338),
    ("avg_pool_3x3", 1): (78.619614, 1.743558, 78.619614, 1.743558),
    ("avg_pool_3x3", 2): (19.571262, 0.881548, 19.571262, 0.881548),
    ("max_pool_3x3", 1): (176.145599, 177.034042, 176.145599, 177.034042),
    ("max_pool_3x3", 2): (44.178238, 44.976860, 44.178238, 44.976860),
}


def _torch_ordered_params(op):
  """``(variable, PyTorch shape)`` in the order of the reference's ``op.parameters()``."""
  def conv(m):
    k = m.kernel
    kh, kw, cin, cout = k.shape
    return [(k, (cout, cin, kh, kw))]

  def bn(m):
    return [(m.scale, m.scale.shape), (m.bias, m.bias.shape)]

  if isinstance(op, ops.SepConv):
    return conv(op.dw1) + conv(op.pw1) + bn(op.bn1) + conv(op.dw2) + conv(op.pw2) + bn(op.bn2)
  if isinstance(op, ops.DilConv):
    return conv(op.dw) + conv(op.pw) + bn(op.bn)
  if isinstance(op, ops.FactorizedReduce):
    return conv(op.conv_1) + conv(op.conv_2) + bn(op.bn)
  return []


@pytest.mark.parametrize("name,stride", sorted(TORCH_GOLDEN))
def test_outputs_equal_pytorch_reference(name, stride):
  c = 4
  op = ops.make_op(name, c, stride, True, rngs=nnx.Rngs(0))
  for i, (var, torch_shape) in enumerate(_torch_ordered_params(op)):
    value = np.cos(np.arange(np.prod(torch_shape)) * 0.7 + i).reshape(torch_shape).astype(np.float32)
    if len(torch_shape) == 4:  # OIHW -> HWIO
      value = value.transpose(2, 3, 1, 0)
    var[...] = jnp.asarray(value)
  x = np.sin(np.arange(2 * c * 6 * 6, dtype=np.float64)).reshape(2, c, 6, 6).astype(np.float32)
  x = jnp.asarray(x.transpose(0, 2, 3, 1))
  y_train = op(x, train=True)
  y_eval = op(x, train=False)
  got = (float(jnp.sum(y_train ** 2)), float(jnp.sum(y_train)), float(jnp.sum(y_eval ** 2)), float(jnp.sum(y_eval)))
  np.testing.assert_allclose(got, TORCH_GOLDEN[(name, stride)], rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("stride", [1, 2])
def test_output_shapes(name, stride):
  op = ops.make_op(name, 6, stride, False, rngs=nnx.Rngs(0))
  y = op(jnp.ones((2, 8, 8, 6)), train=True)
  assert y.shape == (2, 8 // stride, 8 // stride, 6)


def test_unknown_op_lists_valid_names():
  with pytest.raises(ConfigError, match="unknown DARTS op 'conv_9x9'.*sep_conv_3x3"):
    ops.make_op("conv_9x9", 4, 1, False, rngs=nnx.Rngs(0))


def test_avg_pool_does_not_count_padding_and_max_pool_ignores_it():
  x = -jnp.ones((1, 4, 4, 1))  # all -1: padding zeros must neither average in nor win the max
  np.testing.assert_array_equal(ops.avg_pool(x, 3, 1, 1), x)
  np.testing.assert_array_equal(ops.max_pool(x, 3, 1, 1), x)
  y = ops.avg_pool(x, 3, 1, 1, count_include_pad=True)
  assert float(y[0, 0, 0, 0]) == pytest.approx(-4 / 9)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_multi_depthwise_vjp_equals_autodiff_of_library_conv(shared, stride):
  c = 3
  specs = [(stride, 1, 1), (stride, 1, 2), (stride, 1, 3), (stride, 2, 2)]  # sep3, sep5, sep7, dil3
  ks = [3, 5, 7, 3]
  kernels = [jax.random.normal(jax.random.key(i), (k, k, 1, c)) for i, k in enumerate(ks)]
  x = jax.random.normal(jax.random.key(9), (2, 10, 10, c if shared else 4 * c))
  w = jax.random.normal(jax.random.key(8), (2, 10 // stride, 10 // stride, 4 * c))

  def reference(x, kernels):
    xs = [x] * 4 if shared else jnp.split(x, 4, axis=-1)
    return jnp.concatenate([depthwise.depthwise_conv(xi, k, stride=s, dilation=d, padding=p, impl="xla")
                            for xi, k, (s, d, p) in zip(xs, kernels, specs)], axis=-1)

  def fast(x, kernels):
    return fast_grad.depthwise_conv_multi(x, kernels, specs, shared_input=shared, impl="slices")

  loss = lambda f: (lambda x, kernels: jnp.sum(jnp.sin(f(x, kernels)) * w))
  np.testing.assert_allclose(jax.jit(fast)(x, kernels), reference(x, kernels), rtol=1e-5, atol=1e-5)
  got = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))(x, kernels)
  want = jax.grad(loss(reference), argnums=(0, 1))(x, kernels)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("stride", [1, 2])
def test_pool_vjps_equal_autodiff_of_reduce_window(stride):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  w = jax.random.normal(jax.random.key(1), (2, 8 // stride, 8 // stride, 3))
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))

  def max_ref(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)

  def avg_ref(x):
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, stride, stride, 1), pad)
    n = jax.lax.reduce_window(jnp.ones_like(x), 0.0, jax.lax.add, (1, 3, 3, 1), (1, stride, stride, 1), pad)
    return s / n

  for fast, ref in [(lambda x: ops.max_pool(x, 3, stride, 1), max_ref),
                    (lambda x: ops.avg_pool(x, 3, stride, 1), avg_ref)]:
    np.testing.assert_allclose(fast(x), ref(x), rtol=1e-6, atol=1e-6)
    g_fast = jax.jit(jax.grad(lambda x: jnp.sum(fast(x) * w)))(x)
    g_ref = jax.grad(lambda x: jnp.sum(ref(x) * w))(x)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blocks,c", [(1, 5), (3, 4), (32, 8), (6, 16)])
def test_blockwise_pointwise_conv_and_vjp(blocks, c):
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, blocks * c))
  kernel = jax.random.normal(jax.random.key(1), (blocks, c, c + 1))
  w = jax.random.normal(jax.random.key(2), (2, 3, 3, blocks * (c + 1)))

  def reference(x, kernel):
    xr = x.reshape(2, 3, 3, blocks, c)
    return jnp.einsum("nhwec,ecd->nhwed", xr, kernel).reshape(2, 3, 3, blocks * (c + 1))

  np.testing.assert_allclose(ops.pointwise_conv(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda x, k: jnp.sum(f(x, k) * w))
  got = jax.grad(loss(ops.pointwise_conv), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_factorized_reduce_rejects_odd_sizes():
  op = ops.FactorizedReduce(4, 4, affine=False, rngs=nnx.Rngs(0))
  with pytest.raises(ConfigError, match="even height and width"):
    op(jnp.ones((1, 5, 5, 4)), train=True)
