r"""The DARTS operations as Flax NNX modules (docs/design.md section 5).

Shapes, padding and parameter counts follow the PyTorch DARTS reference
(``operations.py`` of DARTS and of UNAS) exactly, so that a network built from
these ops has the reference's parameter count:

* every convolution has ``bias=False``; kernels are stored HWIO
  (``[k, k, C_in, C_out]``; depthwise ``[k, k, 1, C]``), PyTorch stores OIHW;
* padding is symmetric (PyTorch's), never XLA's ``SAME``;
* BatchNorm (:mod:`unas_jax.nn.batchnorm`): ``eps = 1e-5``, running averages
  with PyTorch momentum 0.1 (here written the Flax way, ``momentum = 0.9``:
  ``stat <- 0.9 stat + 0.1 batch``), the running variance updated with the
  *unbiased* batch variance as PyTorch does; ``affine=False`` (search
  supernet) has no scale/bias, ``affine=True`` (evaluation networks) has both;
* initialisation as PyTorch's defaults (conv and linear weights
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, BatchNorm scale 1, bias 0).

Ops, all NHWC and called as ``op(x, train=...)``:

=================  ==========================================================
``none``           :class:`Zero` (stride-aware zeros)
``max_pool_3x3``   :class:`MaxPool` 3x3, padding 1
``avg_pool_3x3``   :class:`AvgPool` 3x3, padding 1, ``count_include_pad=False``
``skip_connect``   :class:`Identity`, or :class:`FactorizedReduce` at stride 2
``sep_conv_KxK``   :class:`SepConv`: (ReLU, dw KxK, pw 1x1, BN) twice, the
                   first depthwise conv carries the stride (K = 3, 5, 7)
``dil_conv_KxK``   :class:`DilConv`: ReLU, dw KxK dilation 2, pw 1x1, BN
=================  ==========================================================

Each module's math is a pure function of this file (``depthwise_conv``,
``pointwise_conv``, ``max_pool``, ``avg_pool``; ``batchnorm.batch_norm``) that also
accepts ``E`` channel blocks side by side with one kernel per block, which is how
the search supernet evaluates all edges that read the same input at once
(``unas_jax/nn/darts_supernet.py``).
"""
from __future__ import annotations

import math

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from unas_jax.errors import ConfigError
from unas_jax.nn.batchnorm import BatchNorm
from unas_jax.nn import depthwise as _depthwise
from unas_jax.nn import fast_grad
from unas_jax.nn import precision

# --------------------------------------------------------------------------- #
# Pure functions.
# --------------------------------------------------------------------------- #


def depthwise_conv(x: jax.Array, kernel: jax.Array, *, stride: int = 1, dilation: int = 1,
                   padding: int | None = None, impl: str = "auto") -> jax.Array:
  """Depthwise convolution ``[N, H, W, C] * [k, k, 1, C]`` (see ``unas_jax/nn/fast_grad.py``), in ``x``'s dtype."""
  return precision.conv_out(fast_grad.depthwise_conv(x, kernel.astype(x.dtype), stride=stride,
                                                     dilation=dilation, padding=padding, impl=impl))


def pointwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """1x1 convolution without bias; ``kernel`` is ``[1, 1, C, D]`` or ``[E, C, D]`` (E blocks)."""
  if stride > 1:
    x = x[:, ::stride, ::stride]
  if kernel.ndim == 4:
    kernel = kernel[0, 0][None]
  return precision.conv_out(fast_grad.pointwise_conv(x, kernel.astype(x.dtype)))


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1, padding: int = 0,
           dilation: int = 1) -> jax.Array:
  """Dense convolution ``[N, H, W, C] * [k, k, C, D]`` with PyTorch's symmetric padding."""
  if kernel.shape[0] == 1 and kernel.shape[1] == 1 and padding == 0:
    return pointwise_conv(x, kernel, stride)
  return precision.conv_out(lax.conv_general_dilated(
      x, kernel.astype(x.dtype), window_strides=(stride, stride), padding=((padding, padding), (padding, padding)),
      rhs_dilation=(dilation, dilation), dimension_numbers=("NHWC", "HWIO", "NHWC")))


def max_pool(x: jax.Array, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> jax.Array:
  """``torch.nn.MaxPool2d(kernel_size, stride, padding)``: padding never wins (-inf).

  The maximum of ``k*k`` shifted slices (one fused loop on XLA:CPU) with a
  gather-form backward pass (``unas_jax/nn/fast_grad.py``).
  """
  return fast_grad.max_pool(x, kernel_size, stride, padding)


def avg_pool(x: jax.Array, kernel_size: int = 3, stride: int = 1, padding: int = 1,
             count_include_pad: bool = False) -> jax.Array:
  """``torch.nn.AvgPool2d``; with ``count_include_pad=False`` (DARTS) padding is not counted."""
  return fast_grad.avg_pool(x, kernel_size, stride, padding, count_include_pad)


def _torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
  """PyTorch's default conv/linear init: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


# --------------------------------------------------------------------------- #
# Layers.
# --------------------------------------------------------------------------- #


class Conv2d(nnx.Module):
  """``torch.nn.Conv2d(C_in, C_out, k, stride, padding, dilation, bias=False)``; kernel ``[k, k, C_in, C_out]``."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
               padding: int = 0, dilation: int = 1, rngs: nnx.Rngs):
    self.stride, self.padding, self.dilation = stride, padding, dilation
    fan_in = in_channels * kernel_size * kernel_size
    self.kernel = nnx.Param(_torch_uniform(
        rngs.params(), (kernel_size, kernel_size, in_channels, out_channels), fan_in))

  def __call__(self, x: jax.Array) -> jax.Array:
    return conv2d(x, self.kernel[...], stride=self.stride, padding=self.padding,
                  dilation=self.dilation)


class DepthwiseConv2d(nnx.Module):
  """``torch.nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=False)``; kernel ``[k, k, 1, C]``."""

  def __init__(self, channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
               dilation: int = 1, impl: str = "auto", rngs: nnx.Rngs):
    self.stride, self.padding, self.dilation, self.impl = stride, padding, dilation, impl
    fan_in = kernel_size * kernel_size
    self.kernel = nnx.Param(_torch_uniform(
        rngs.params(), (kernel_size, kernel_size, 1, channels), fan_in))

  def __call__(self, x: jax.Array) -> jax.Array:
    return depthwise_conv(x, self.kernel[...], stride=self.stride, dilation=self.dilation,
                          padding=self.padding, impl=self.impl)


class Linear(nnx.Module):
  """``torch.nn.Linear(in, out)``: kernel ``[in, out]``, bias ``[out]``."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.kernel = nnx.Param(_torch_uniform(rngs.params(), (in_features, out_features), in_features))
    self.bias = nnx.Param(_torch_uniform(rngs.params(), (out_features,), in_features))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x @ self.kernel[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


# --------------------------------------------------------------------------- #
# DARTS operations.
# --------------------------------------------------------------------------- #


class Identity(nnx.Module):
  """``skip_connect`` at stride 1."""

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    return x


class Zero(nnx.Module):
  """``none``: zeros of the op's output shape (spatial size ``ceil(H / stride)``).

  The reference uses ``H // stride``; both agree on the even sizes DARTS
  networks use (and only ``ceil`` matches the other ops' shapes on odd sizes).
  """

  def __init__(self, stride: int = 1):
    self.stride = stride

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    if self.stride == 1:
      return jnp.zeros_like(x)
    n, h, w, c = x.shape
    s = self.stride
    return jnp.zeros((n, -(-h // s), -(-w // s), c), x.dtype)


class MaxPool(nnx.Module):
  """``max_pool_3x3``: ``torch.nn.MaxPool2d(3, stride, padding=1)``; no parameters."""

  def __init__(self, kernel_size: int = 3, stride: int = 1, padding: int = 1):
    self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    return max_pool(x, self.kernel_size, self.stride, self.padding)


class AvgPool(nnx.Module):
  """``avg_pool_3x3``: ``torch.nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)``."""

  def __init__(self, kernel_size: int = 3, stride: int = 1, padding: int = 1,
               count_include_pad: bool = False):
    self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
    self.count_include_pad = count_include_pad

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    return avg_pool(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)


class ReLUConvBN(nnx.Module):
  """ReLU, ``Conv2d(C_in, C_out, k, stride, padding, bias=False)``, BatchNorm."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
               *, affine: bool = True, rngs: nnx.Rngs):
    self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                       rngs=rngs)
    self.bn = BatchNorm(out_channels, affine=affine)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return self.bn(self.conv(jax.nn.relu(x)), train=train)


class SepConv(nnx.Module):
  """DARTS separable conv: (ReLU, depthwise kxk, pointwise 1x1, BN) twice.

  The first depthwise conv has the stride; the first pointwise conv keeps
  ``C_in`` channels, the second maps to ``C_out``. Parameters (affine):
  ``2 k^2 C_in + C_in^2 + C_in C_out + 2 C_in + 2 C_out``.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
               *, affine: bool = True, depthwise_impl: str = "auto", rngs: nnx.Rngs):
    self.dw1 = DepthwiseConv2d(in_channels, kernel_size, stride=stride, padding=padding,
                               impl=depthwise_impl, rngs=rngs)
    self.pw1 = Conv2d(in_channels, in_channels, 1, rngs=rngs)
    self.bn1 = BatchNorm(in_channels, affine=affine)
    self.dw2 = DepthwiseConv2d(in_channels, kernel_size, stride=1, padding=padding,
                               impl=depthwise_impl, rngs=rngs)
    self.pw2 = Conv2d(in_channels, out_channels, 1, rngs=rngs)
    self.bn2 = BatchNorm(out_channels, affine=affine)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = self.bn1(self.pw1(self.dw1(jax.nn.relu(x))), train=train)
    return self.bn2(self.pw2(self.dw2(jax.nn.relu(x))), train=train)


class DilConv(nnx.Module):
  """DARTS dilated separable conv: ReLU, depthwise kxk (dilation d), pointwise 1x1, BN."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
               dilation: int, *, affine: bool = True, depthwise_impl: str = "auto", rngs: nnx.Rngs):
    self.dw = DepthwiseConv2d(in_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, impl=depthwise_impl, rngs=rngs)
    self.pw = Conv2d(in_channels, out_channels, 1, rngs=rngs)
    self.bn = BatchNorm(out_channels, affine=affine)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return self.bn(self.pw(self.dw(jax.nn.relu(x))), train=train)


def factorized_reduce(x: jax.Array, kernel_1: jax.Array, kernel_2: jax.Array) -> jax.Array:
  """The two halves of :class:`FactorizedReduce` before BN, for ``E`` channel blocks.

  ``y = concat(conv_1(relu x), conv_2(relu x[:, 1:, 1:]))`` per block, both 1x1
  stride 2; kernels ``[E, C_in, C_out / 2]`` (or ``[1, 1, C_in, C_out / 2]``).
  """
  x = jax.nn.relu(x)
  y1 = pointwise_conv(x, kernel_1, stride=2)
  y2 = pointwise_conv(x[:, 1:, 1:], kernel_2, stride=2)
  e = 1 if kernel_1.ndim == 4 else kernel_1.shape[0]
  half = y1.shape[-1] // e
  lead = y1.shape[:-1]
  y = jnp.concatenate([y1.reshape(*lead, e, half), y2.reshape(*lead, e, half)], axis=-1)
  return y.reshape(*lead, e * 2 * half)


class FactorizedReduce(nnx.Module):
  """Halves the resolution: ReLU, two 1x1 stride-2 convs (``C_out/2`` each, the
  second on the input shifted by one pixel), concatenated, BN.

  Requires even ``C_out`` and even input height/width (as the reference).
  """

  def __init__(self, in_channels: int, out_channels: int, *, affine: bool = True, rngs: nnx.Rngs):
    if out_channels % 2:
      raise ConfigError(f"FactorizedReduce needs an even number of output channels, got {out_channels}")
    self.conv_1 = Conv2d(in_channels, out_channels // 2, 1, stride=2, rngs=rngs)
    self.conv_2 = Conv2d(in_channels, out_channels // 2, 1, stride=2, rngs=rngs)
    self.bn = BatchNorm(out_channels, affine=affine)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ConfigError(f"FactorizedReduce needs an even height and width, got {x.shape[1]}x{x.shape[2]}; "
                        "use an input resolution divisible by 4 (two reduction cells)")
    return self.bn(factorized_reduce(x, self.conv_1.kernel[...], self.conv_2.kernel[...]), train=train)


# Op name -> (kind, kernel size, dilation).
_CONV_OPS = {
    "sep_conv_3x3": ("sep", 3, 1),
    "sep_conv_5x5": ("sep", 5, 1),
    "sep_conv_7x7": ("sep", 7, 1),
    "dil_conv_3x3": ("dil", 3, 2),
    "dil_conv_5x5": ("dil", 5, 2),
}
OP_NAMES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
            "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5")


def conv_op_spec(name: str) -> tuple[str, int, int, int]:
  """``(kind, kernel_size, dilation, padding)`` of a ``sep_conv_*`` / ``dil_conv_*`` op."""
  kind, k, d = _CONV_OPS[name]
  return kind, k, d, _depthwise.same_padding(k, d)


def make_op(name: str, channels: int, stride: int, affine: bool, *, rngs: nnx.Rngs,
            depthwise_impl: str = "auto") -> nnx.Module:
  """The DARTS op ``name`` on ``channels`` channels (in == out), as the reference's ``OPS``.

  Raises:
    ConfigError: unknown op name (the message lists the valid ones).
  """
  if name == "none":
    return Zero(stride)
  if name == "max_pool_3x3":
    return MaxPool(3, stride, 1)
  if name == "avg_pool_3x3":
    return AvgPool(3, stride, 1, count_include_pad=False)
  if name == "skip_connect":
    return Identity() if stride == 1 else FactorizedReduce(channels, channels, affine=affine, rngs=rngs)
  if name in _CONV_OPS:
    kind, k, d, pad = conv_op_spec(name)
    if kind == "sep":
      return SepConv(channels, channels, k, stride, pad, affine=affine, depthwise_impl=depthwise_impl,
                     rngs=rngs)
    return DilConv(channels, channels, k, stride, pad, d, affine=affine, depthwise_impl=depthwise_impl,
                   rngs=rngs)
  raise ConfigError(f"unknown DARTS op {name!r}; valid ops: {', '.join(OP_NAMES)}")


def count_params(module: nnx.Module) -> int:
  """Number of trainable parameters (``nnx.Param`` entries; BatchNorm statistics excluded)."""
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))
