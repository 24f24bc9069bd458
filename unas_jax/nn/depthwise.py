r"""Depthwise convolution, implemented per backend.

``y[n, i, j, c] = sum_{a, b} x_pad[n, i*s + a*d, j*s + b*d, c] * kernel[a, b, 0, c]``

XLA on CPU runs grouped convolutions with ``feature_group_count = channels``
very slowly (measured here: 17 s vs 1.06 s for a DARTS supernet forward, see
docs/engineering.md section 3), while the same sum written as ``k*k`` shifted slices times a
per-channel weight is fast. On GPU/TPU the library kernels win. Both
implementations take the same ``[k, k, 1, C]`` kernel (HWIO with one input
channel per group, the layout of ``lax.conv_general_dilated``), so parameters
and checkpoints do not depend on the choice.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from unas_jax.nn import kernels as kernels_lib

IMPLEMENTATIONS = ("auto", "slices", "xla")


def default_impl() -> str:
  """``slices`` with the ``cpu`` kernels, ``xla`` (the library kernel) otherwise (:mod:`unas_jax.nn.kernels`)."""
  return "slices" if kernels_lib.current() == "cpu" else "xla"


def same_padding(kernel_size: int, dilation: int = 1) -> int:
  """Symmetric padding that keeps the size at stride 1 (odd kernels)."""
  return dilation * (kernel_size - 1) // 2


def depthwise_conv(x: jax.Array, kernel: jax.Array, *, stride: int = 1, dilation: int = 1,
                   padding: int | None = None, impl: str = "auto") -> jax.Array:
  """Depthwise 2-D convolution of NHWC ``x`` with a ``[k, k, 1, C]`` kernel.

  Args:
    x: ``[N, H, W, C]``.
    kernel: ``[k, k, 1, C]``.
    stride: spatial stride.
    dilation: kernel dilation.
    padding: symmetric zero padding; default keeps the size at stride 1.
    impl: ``slices`` (k*k shifted multiply-adds), ``xla`` (grouped
      ``conv_general_dilated``) or ``auto`` (:func:`default_impl`).
  """
  k = kernel.shape[0]
  if padding is None:
    padding = same_padding(k, dilation)
  if impl == "auto":
    impl = default_impl()
  if impl == "xla":
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding=((padding, padding), (padding, padding)),
        rhs_dilation=(dilation, dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1])
  if impl != "slices":
    raise ValueError(f"unknown depthwise impl {impl!r}; choose one of {IMPLEMENTATIONS}")
  n, h, w, c = x.shape
  out_h = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
  out_w = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
  x_pad = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  y = None
  for a in range(k):
    for b in range(k):
      patch = jax.lax.slice(
          x_pad, (0, a * dilation, b * dilation, 0),
          (n, a * dilation + (out_h - 1) * stride + 1, b * dilation + (out_w - 1) * stride + 1, c),
          (1, stride, stride, 1))
      term = patch * kernel[a, b, 0]
      y = term if y is None else y + term
  return y
