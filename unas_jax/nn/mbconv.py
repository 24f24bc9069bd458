r"""Mobile inverted bottleneck blocks (MobileNetV2; ProxylessNAS's ``MBInvertedConvLayer``).

``MBConv(K, E)`` with input ``x`` of ``C_in`` channels, hidden width ``E * C_in``::

    h = relu6(BN(conv1x1(x)))          # expand; absent when E == 1
    h = relu6(BN(depthwise_KxK(h, s))) # stride s, symmetric padding K // 2
    y = BN(conv1x1(h))                 # linear projection to C_out
    y = x + y   if residual            # residual when s == 1 and C_in == C_out

as in mit-han-lab/proxylessnas (``MobileInvertedResidualBlock``): BatchNorm
(:mod:`unas_jax.nn.batchnorm`) with ``eps = 1e-3`` and PyTorch momentum 0.1 (flax
``momentum = 0.9``), convolutions
without bias, He (fan-out) initialisation. Depthwise convolutions go through
:mod:`unas_jax.nn.depthwise` (shifted slices on CPU, grouped conv elsewhere).
"""
from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.nn import batchnorm
from unas_jax.nn.fast_grad import depthwise_conv  # hand-written backward pass: fast on XLA:CPU
from unas_jax.nn.precision import conv_out  # names conv outputs for the remat policy

BN_EPS = 1e-3  # ProxylessNAS bn_param; its momentum 0.1 is PyTorch's default (batchnorm.MOMENTUM)

def _host_init(sample_fn, fallback):
  """An initializer that draws on the host with numpy when the key is concrete.

  Eager ``jax.random`` compiles one kernel per distinct shape: building the
  GPU-width supernet (a few hundred shapes) took 35 s on 2 CPU cores, almost all
  of it compiling initialisers. Drawing with numpy (seeded from the key's bits)
  and ``jax.device_put`` compiles nothing. Under tracing (``nnx.eval_shape``,
  ``jit``) the key is abstract and ``fallback`` (same distribution) is used.
  """
  def init(key, shape, dtype=jnp.float32):
    if isinstance(key, jax.core.Tracer):
      return fallback(key, shape, dtype)
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    value = sample_fn(np.random.default_rng(seed), tuple(shape)).astype(np.dtype(dtype))
    return jax.device_put(value)
  return init


def he_fout_init(fan_out_axes: tuple[int, ...]):
  """ProxylessNAS ``he_fout``: ``N(0, 2 / fan_out)``, ``fan_out`` = product of ``shape[fan_out_axes]``.

  For a conv kernel ``[k, k, C_in, C_out]`` that is ``k * k * C_out``; for a depthwise
  kernel ``[k, k, 1, C]`` the reference divides by the groups, giving ``k * k``.
  """
  def sample(rng, shape):
    fan = int(np.prod([shape[a] for a in fan_out_axes]))
    return rng.normal(0.0, np.sqrt(2.0 / fan), shape)

  def fallback(key, shape, dtype):
    fan = int(np.prod([shape[a] for a in fan_out_axes]))
    return jnp.sqrt(2.0 / fan) * jax.random.normal(key, shape, dtype)
  return _host_init(sample, fallback)


def torch_linear_init(fan_in: int):
  """PyTorch's ``nn.Linear`` default: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (kernel and bias)."""
  bound = 1.0 / np.sqrt(fan_in)

  def sample(rng, shape):
    return rng.uniform(-bound, bound, shape)

  def fallback(key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return _host_init(sample, fallback)


_he_fout = he_fout_init((0, 1, 3))
_he_depthwise = he_fout_init((0, 1))


def relu6(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0.0, 6.0)


def proxyless_batch_norm(num_features: int, *, affine: bool, dtype) -> batchnorm.BatchNorm:
  """ProxylessNAS's BatchNorm: ``eps = 1e-3``, PyTorch momentum 0.1; ``affine=False`` drops scale and bias.

  ``folded``: ``y = x a + b`` (:func:`unas_jax.nn.batchnorm.batch_norm`), the form these
  blocks were first written with, so their outputs stay bit for bit those of before.
  """
  return batchnorm.BatchNorm(num_features, affine=affine, epsilon=BN_EPS, folded=True, dtype=dtype)


def conv(c_in: int, c_out: int, kernel_size: int, stride: int = 1, *, dtype, rngs: nnx.Rngs) -> nnx.Conv:
  """Bias-free convolution with symmetric padding ``k // 2`` (PyTorch's, not XLA's 'SAME')."""
  p = kernel_size // 2
  return nnx.Conv(c_in, c_out, (kernel_size, kernel_size), (stride, stride), padding=((p, p), (p, p)),
                  use_bias=False, kernel_init=_he_fout, dtype=dtype, rngs=rngs)


class ConvBN(nnx.Module):
  """``relu6(BN(conv(x)))`` (the stem and the feature-mix layer)."""

  def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, *, bn_affine: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = conv(c_in, c_out, kernel_size, stride, dtype=dtype, rngs=rngs)
    self.bn = proxyless_batch_norm(c_out, affine=bn_affine, dtype=dtype)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return relu6(self.bn(self.conv(x), train=train))


class MBConv(nnx.Module):
  """Mobile inverted bottleneck with optional residual (see the module docstring)."""

  def __init__(self, c_in: int, c_out: int, *, kernel_size: int, expansion: int, stride: int = 1,
               residual: bool | None = None, bn_affine: bool = True, depthwise_impl: str = "auto",
               dtype=jnp.float32, rngs: nnx.Rngs):
    """Args:
      residual: add the input; default ``stride == 1 and c_in == c_out``.
      bn_affine: BatchNorm with scale and bias (ProxylessNAS and UNAS: True, also in search).
      depthwise_impl: see :func:`unas_jax.nn.depthwise.depthwise_conv`.
    """
    self.c_in, self.c_out = c_in, c_out
    self.kernel_size, self.expansion, self.stride = kernel_size, expansion, stride
    self.residual = (stride == 1 and c_in == c_out) if residual is None else residual
    if self.residual and (stride != 1 or c_in != c_out):
      raise ValueError(f"residual MBConv needs stride 1 and c_in == c_out (got {stride}, {c_in}->{c_out})")
    self.depthwise_impl = depthwise_impl
    self.dtype = dtype
    hidden = round(c_in * expansion)
    self.hidden = hidden
    if expansion > 1:
      self.expand = conv(c_in, hidden, 1, dtype=dtype, rngs=rngs)
      self.expand_bn = proxyless_batch_norm(hidden, affine=bn_affine, dtype=dtype)
    else:
      self.expand = None
      self.expand_bn = None
    self.dw_kernel = nnx.Param(_he_depthwise(rngs.params(), (kernel_size, kernel_size, 1, hidden), jnp.float32))
    self.dw_bn = proxyless_batch_norm(hidden, affine=bn_affine, dtype=dtype)
    self.project = conv(hidden, c_out, 1, dtype=dtype, rngs=rngs)
    self.project_bn = proxyless_batch_norm(c_out, affine=bn_affine, dtype=dtype)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    h = x
    if self.expand is not None:
      h = relu6(self.expand_bn(conv_out(self.expand(h)), train=train))
    kernel = self.dw_kernel[...].astype(h.dtype)
    h = conv_out(depthwise_conv(h, kernel, stride=self.stride, impl=self.depthwise_impl))
    h = relu6(self.dw_bn(h, train=train))
    y = self.project_bn(conv_out(self.project(h)), train=train)
    return x + y if self.residual else y


def mbconv_macs(c_in: int, c_out: int, kernel_size: int, expansion: int, h_in: int, stride: int) -> int:
  """Multiply-adds of one MBConv at input size ``h_in`` (ProxylessNAS ``count_conv_flop``).

  ``E C_in * C_in h^2 + K^2 E C_in h'^2 + E C_in C_out h'^2`` with ``h' = ceil(h / s)``
  (BatchNorm, activations and the residual add are not counted, as in the reference).
  """
  hidden = round(c_in * expansion)
  h_out = -(-h_in // stride)
  macs = 0
  if expansion > 1:
    macs += c_in * hidden * h_in * h_in
  macs += kernel_size * kernel_size * hidden * h_out * h_out
  macs += hidden * c_out * h_out * h_out
  return macs


def mbconv_params(c_in: int, c_out: int, kernel_size: int, expansion: int, bn_affine: bool = True) -> int:
  """Trainable parameters of one MBConv (BatchNorm scale and bias counted when affine)."""
  hidden = round(c_in * expansion)
  bn = 2 if bn_affine else 0
  n = 0
  if expansion > 1:
    n += c_in * hidden + bn * hidden
  n += kernel_size * kernel_size * hidden + bn * hidden
  n += hidden * c_out + bn * c_out
  return n
