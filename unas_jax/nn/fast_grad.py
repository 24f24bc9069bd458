r"""Depthwise and pointwise convolutions with backward passes that are fast on CPU.

The forward passes are :func:`unas_jax.nn.depthwise.depthwise_conv` and a
matrix product; only the vector-Jacobian products are written by hand, because
the ones JAX derives are slow on XLA:CPU (measured here on 2 cores, input
``[32, 32, 32, 64]``, 7x7 kernel: forward 13 ms, autodiff gradient w.r.t. the
input 68 ms and w.r.t. input and kernel 540 ms):

* Depthwise, gradient w.r.t. the input: the transposed convolution, i.e. the
  same depthwise convolution (shifted slices) of the stride-dilated, padded
  cotangent with the spatially flipped kernel,
  ``dx[m] = sum_a g_dil[m + (k-1)d - p - a d] k[a]``; as fast as the forward.
* Depthwise, gradient w.r.t. the kernel, a sum of ``k*k`` full-size products
  ``dk[a, b, c] = sum_{n,i,j} x_pad[n, i s + a d, j s + b d, c] g[n, i, j, c]``,
  is a cross-correlation of ``x`` with the dilated cotangent summed over the
  batch; it is computed with real FFTs of size ``L >= H + p`` (no wrap-around
  reaches the lags ``a d - p``), so its cost does not grow with ``k*k`` (7x7:
  70 ms instead of 500 ms under load). The FFT of an input is the same array for
  every op that reads it (XLA's CSE merges them), because ``L`` depends only on
  the input size. Float32 round-off of the FFT is about 1e-7 of the largest
  term, far below the gradient noise of SGD.
* Pointwise (1x1) convolution of ``E`` independent channel blocks ``[N, H, W,
  E*C]`` (one block per supernet edge): forward and input gradient as one
  block-diagonal matrix product (one large GEMM is faster on CPU than ``E``
  small ones), kernel gradient per block (no wasted off-diagonal products).

On GPU/TPU (``impl='xla'``) autodiff of the library kernels is used unchanged.
"""
from __future__ import annotations

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from unas_jax.nn import depthwise


def _fft_len(n: int) -> int:
  """Smallest 5-smooth integer >= n (sizes that FFT libraries handle fast)."""
  m = n
  while True:
    r = m
    for p in (2, 3, 5):
      while r % p == 0:
        r //= p
    if r == 1:
      return m
    m += 1


def _out_len(n: int, k: int, stride: int, dilation: int, padding: int) -> int:
  return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _dx(g: jax.Array, kernel: jax.Array, in_hw: tuple[int, int], stride: int, dilation: int,
        padding: int) -> jax.Array:
  """Input gradient of a depthwise convolution: a depthwise convolution itself."""
  k = kernel.shape[0]
  pads = [(0, 0, 0)]
  for size_in, size_out in zip(in_hw, g.shape[1:3]):
    lo = (k - 1) * dilation - padding
    hi = size_in + padding - (size_out - 1) * stride - 1
    pads.append((lo, hi, stride - 1))
  pads.append((0, 0, 0))
  g_pad = lax.pad(g, jnp.zeros((), g.dtype), pads)
  return depthwise.depthwise_conv(g_pad, kernel[::-1, ::-1], stride=1, dilation=dilation, padding=0,
                                  impl="slices")


def _dk(x: jax.Array, g: jax.Array, k: int, stride: int, dilation: int, padding: int) -> jax.Array:
  """Kernel gradient of a depthwise convolution by FFT cross-correlation."""
  _, h, w, _ = x.shape
  # One FFT length per input size (not per op) so that ops reading the same
  # input share the FFT of that input; +4 covers every DARTS padding (<= 4).
  lh, lw = _fft_len(h + max(padding, 4)), _fft_len(w + max(padding, 4))
  # Channel-major layout: FFT over the two minor axes (measured faster).
  xt = jnp.transpose(x, (0, 3, 1, 2))
  gt = jnp.transpose(g, (0, 3, 1, 2))
  zero = jnp.zeros((), g.dtype)
  ho, wo = g.shape[1:3]
  gt = lax.pad(gt, zero, [(0, 0, 0), (0, 0, 0), (0, lh - ((ho - 1) * stride + 1), stride - 1),
                          (0, lw - ((wo - 1) * stride + 1), stride - 1)])
  fx = jnp.fft.rfft2(xt, s=(lh, lw))
  fg = jnp.fft.rfft2(gt)
  corr = jnp.fft.irfft2(jnp.sum(fx * jnp.conj(fg), axis=0), s=(lh, lw))  # [C, lh, lw]
  # Lag t = a*d - p of the correlation sum_u x[u + t] g_dil[u], read modulo L.
  rows = np.mod(np.arange(k) * dilation - padding, lh)
  cols = np.mod(np.arange(k) * dilation - padding, lw)
  dk = corr[:, rows][:, :, cols]  # [C, k, k]
  return jnp.transpose(dk, (1, 2, 0))[:, :, None, :].astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_slices(x, kernel, stride, dilation, padding):
  return depthwise.depthwise_conv(x, kernel, stride=stride, dilation=dilation, padding=padding,
                                  impl="slices")


def _depthwise_slices_fwd(x, kernel, stride, dilation, padding):
  return _depthwise_slices(x, kernel, stride, dilation, padding), (x, kernel)


def _depthwise_slices_bwd(stride, dilation, padding, res, g):
  x, kernel = res
  dx = _dx(g, kernel, x.shape[1:3], stride, dilation, padding)
  dk = _dk(x, g, kernel.shape[0], stride, dilation, padding)
  return dx, dk


_depthwise_slices.defvjp(_depthwise_slices_fwd, _depthwise_slices_bwd)


def depthwise_conv(x: jax.Array, kernel: jax.Array, *, stride: int = 1, dilation: int = 1,
                   padding: int | None = None, impl: str = "auto") -> jax.Array:
  """:func:`unas_jax.nn.depthwise.depthwise_conv` with the fast backward pass above.

  Args:
    x: ``[N, H, W, C]``.
    kernel: ``[k, k, 1, C]``.
    stride, dilation: as in PyTorch's ``Conv2d``.
    padding: symmetric zero padding; default keeps the size at stride 1.
    impl: ``slices``, ``xla`` or ``auto`` (``slices`` on CPU); ``slices`` gets
      the hand-written VJP, ``xla`` JAX's own.
  """
  k = kernel.shape[0]
  if padding is None:
    padding = depthwise.same_padding(k, dilation)
  if impl == "auto":
    impl = depthwise.default_impl()
  if impl == "slices":
    return _depthwise_slices(x, kernel, stride, dilation, padding)
  return depthwise.depthwise_conv(x, kernel, stride=stride, dilation=dilation, padding=padding,
                                  impl=impl)


def _block_diag(kernel: jax.Array) -> jax.Array:
  """``[E, C, D]`` -> the ``[E*C, E*D]`` block-diagonal matrix."""
  e, c, d = kernel.shape
  eye = jnp.eye(e, dtype=kernel.dtype)
  return (eye[:, None, :, None] * kernel[:, :, None, :]).reshape(e * c, e * d)


@jax.custom_vjp
def _blocks_matmul(x, kernel):
  return x @ _block_diag(kernel)


def _blocks_matmul_fwd(x, kernel):
  return _blocks_matmul(x, kernel), (x, kernel)


def _blocks_matmul_bwd(res, g):
  x, kernel = res
  e, c, d = kernel.shape
  dx = g @ _block_diag(kernel).T
  dk = jnp.einsum("mec,med->ecd", x.reshape(-1, e, c), g.reshape(-1, e, d))
  return dx, dk


_blocks_matmul.defvjp(_blocks_matmul_fwd, _blocks_matmul_bwd)


def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1x1 convolution of ``E`` channel blocks: ``y[..., e, :] = x[..., e, :] @ kernel[e]``.

  Args:
    x: ``[..., E*C]`` (the ``E`` blocks of ``C`` channels side by side).
    kernel: ``[E, C, D]``.

  Returns:
    ``[..., E*D]``.
  """
  if kernel.shape[0] == 1:
    return x @ kernel[0]
  return _blocks_matmul(x, kernel)
