r"""Depthwise/pointwise convolutions and pools whose backward passes are fast on XLA:CPU.

The forward passes are :func:`unas_jax.nn.depthwise.depthwise_conv` (shifted
slices on CPU), matrix products and shifted-slice pools; the vector-Jacobian
products are written by hand because the ones JAX derives are slow on XLA:CPU
(measured here, 2 cores, input ``[32, 32, 32, 64]``, 7x7 kernel: forward 13 ms,
autodiff gradient w.r.t. the input 68 ms, w.r.t. input and kernel 540 ms):

* Depthwise, gradient w.r.t. the input: the transposed convolution, i.e. the
  same depthwise convolution (shifted slices) of the stride-dilated, padded
  cotangent with the spatially flipped kernel,
  ``dx[m] = sum_a g_dil[m + (k-1)d - p - a d] k[a]``; as fast as the forward.
* Depthwise, gradient w.r.t. the kernel,
  ``dk[a, b, c] = sum_{n,i,j} x_pad[n, i s + a d, j s + b d, c] g[n, i, j, c]``,
  is a cross-correlation of ``x`` with the dilated cotangent summed over the
  batch; it is computed with real FFTs of size ``L >= H + p`` (no wrap-around
  reaches the lags ``a d - p``), so its cost does not grow with ``k*k`` (7x7:
  70 ms instead of 500 ms). ``L`` depends only on the input size, so ops that
  read the same input share its FFT (XLA's CSE). Float32 round-off is about
  1e-7 of the largest term.
* Pools: the transpose of a window sum as JAX derives it is ``k*k`` full-size
  pads added up; here it is a gather-form window sum of the spread cotangent.
* Pointwise (1x1) convolution of ``E`` independent channel blocks
  ``[N, H, W, E*C]`` (one block per supernet edge and op): block-diagonal
  GEMMs over chunks of blocks (:data:`PW_CHUNK_WIDTH` channels), the kernel
  gradient as the diagonal blocks of one GEMM per chunk.

XLA:CPU also fuses cheap producers into window sums that read them ``k*k``
times, recomputing them per tap; :func:`isolated` keeps each window sum in its
own computation.

All of the above runs only when :func:`unas_jax.nn.kernels.current` is ``cpu``
(by default: on the CPU backend). With ``xla`` kernels (GPU/TPU, or a lowering
for them) the public functions here are plain library ops differentiated by
JAX: ``reduce_window`` pools, grouped convolutions, one batched ``einsum`` for the
pointwise blocks, and no conditionals.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from unas_jax.nn import depthwise
from unas_jax.nn import kernels as kernels_lib


def isolated(fn):
  """Wraps ``fn`` so that XLA compiles it apart from its producers and consumers.

  XLA:CPU fuses cheap producers into their consumers even when the consumer
  reads each element ``k*k`` times (a window sum) and the producer is itself a
  window sum or a long weighted sum: the work is then recomputed per tap (seen
  here: a supernet cell's backward pass 5x slower, fusions of 1500 ops). A
  conditional's operands and results are buffers and its branches separate
  computations, so ``fn`` runs in a ``lax.cond``; ``lax.optimization_barrier``
  does not help (XLA:CPU removes it before fusion). The predicate, false only
  when the first input element is NaN, is unknown to XLA; the other branch
  returns NaNs (a NaN input gives NaNs either way).

  Only with the ``cpu`` kernels (:mod:`unas_jax.nn.kernels`): elsewhere ``fn``
  runs inline, since on XLA:GPU each conditional syncs with the host.

  Known limit: under ``jax.vmap`` with a batched first argument the predicate is
  batched, and JAX turns the ``lax.cond`` into a select of both branches, so there is
  no barrier (the search step's vmapped train/val passes; only its w update keeps
  them). Measured in experiments/results/compile_flags/README.md (2026-12-07).
  """
  @functools.wraps(fn)
  def wrapped(*args):
    if kernels_lib.current() != "cpu":
      return fn(*args)
    first = lax.slice(args[0].reshape(-1), (0,), (1,))[0]
    out = jax.eval_shape(fn, *args)
    nans = lambda *_: jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), out)
    return lax.cond(first == first, fn, nans, *args)
  return wrapped


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
  # FFTs in float32 whatever the compute dtype (no bfloat16 FFT).
  xt = jnp.transpose(x, (0, 3, 1, 2)).astype(jnp.float32)
  gt = jnp.transpose(g, (0, 3, 1, 2)).astype(jnp.float32)
  zero = jnp.zeros((), jnp.float32)
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


Spec = tuple[int, int, int]  # (stride, dilation, padding) of one kernel


def _split_blocks(x: jax.Array, n: int) -> list[jax.Array]:
  # lax.split, whose transpose is one concatenate (slices transpose to pads).
  return list(lax.split(x, [x.shape[-1] // n] * n, axis=-1)) if n > 1 else [x]


def _concat(xs: list[jax.Array]) -> jax.Array:
  return xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1)


def _multi_forward(x, kernels, specs, shared):
  xs = [x] * len(kernels) if shared else _split_blocks(x, len(kernels))
  return _concat([depthwise.depthwise_conv(xi, k, stride=s, dilation=d, padding=p, impl="slices")
                  for xi, k, (s, d, p) in zip(xs, kernels, specs)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_multi_slices(x, kernels, specs, shared):
  return isolated(lambda x, *kernels: _multi_forward(x, kernels, specs, shared))(x, *kernels)


def _depthwise_multi_fwd(x, kernels, specs, shared):
  return _depthwise_multi_slices(x, kernels, specs, shared), (x, kernels)


def _depthwise_multi_bwd(specs, shared, res, g):
  x, kernels = res
  n = len(kernels)
  xs = [x] * n if shared else _split_blocks(x, n)
  in_hw = x.shape[1:3]

  def input_grad(g, *kernels):
    dxs = [_dx(gi, k, in_hw, s, d, p) for gi, k, (s, d, p) in zip(_split_blocks(g, n), kernels, specs)]
    return sum(dxs[1:], dxs[0]) if shared else _concat(dxs)

  dx = isolated(input_grad)(g, *kernels)
  # When the input is shared, XLA's CSE computes its FFT once for all kernels.
  dks = tuple(_dk(xi, gi, k.shape[0], s, d, p)
              for xi, gi, k, (s, d, p) in zip(xs, _split_blocks(g, n), kernels, specs))
  return dx, dks


_depthwise_multi_slices.defvjp(_depthwise_multi_fwd, _depthwise_multi_bwd)


def depthwise_conv_multi(x: jax.Array, kernels: Sequence[jax.Array], specs: Sequence[Spec], *,
                         shared_input: bool, impl: str = "auto") -> jax.Array:
  """Several depthwise convolutions with one output, ``concat_i conv(x_i, kernels[i])``.

  One isolated computation (one XLA kernel for the forward, one for the input
  gradient) instead of one per convolution: XLA:CPU compile time grows with the
  number of kernels (about 10 ms each here), and the shared input is read once.

  Args:
    x: ``[N, H, W, C]`` read by every kernel (``shared_input``), or
      ``[N, H, W, n*C]`` whose ``i``-th block of ``C`` channels is read by
      kernel ``i``.
    kernels: ``n`` kernels ``[k_i, k_i, 1, C]``.
    specs: ``(stride, dilation, padding)`` per kernel; every output must have
      the same spatial size.
    shared_input: see ``x``.
    impl: ``slices`` (hand-written VJP), ``xla`` (library kernels, autodiff) or ``auto``.

  Returns:
    ``[N, H', W', n*C]``, the outputs side by side in kernel order.
  """
  kernels = tuple(kernels)
  specs = tuple((int(s), int(d), int(p)) for s, d, p in specs)
  if impl == "auto":
    impl = depthwise.default_impl()
  if impl == "slices":
    return _depthwise_multi_slices(x, kernels, specs, bool(shared_input))
  xs = [x] * len(kernels) if shared_input else _split_blocks(x, len(kernels))
  return _concat([depthwise.depthwise_conv(xi, k, stride=s, dilation=d, padding=p, impl=impl)
                  for xi, k, (s, d, p) in zip(xs, kernels, specs)])


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
  return depthwise_conv_multi(x, [kernel], [(stride, dilation, padding)], shared_input=True, impl=impl)


def _block_diag(kernel: jax.Array) -> jax.Array:
  """``[E, C, D]`` -> the ``[E*C, E*D]`` block-diagonal matrix."""
  e, c, d = kernel.shape
  eye = jnp.eye(e, dtype=kernel.dtype)
  return (eye[:, None, :, None] * kernel[:, :, None, :]).reshape(e * c, e * d)


# Blocks are multiplied in chunks of at most this many channels: one
# block-diagonal GEMM per chunk. One GEMM over all blocks wastes
# (blocks per chunk)x the products; tiny GEMMs run far below the CPU's peak.
# 64 measured best of 64/128/all on the search supernet here (differences ~10%).
PW_CHUNK_WIDTH = 64


def _chunks(num_blocks: int, block: int) -> int:
  """Blocks per chunk: the largest divisor of ``num_blocks`` with chunk width <= PW_CHUNK_WIDTH."""
  g = max(1, min(num_blocks, PW_CHUNK_WIDTH // max(block, 1)))
  while num_blocks % g:
    g -= 1
  return g


def _chunked(x, kernel, fn):
  e, c, _ = kernel.shape
  g = _chunks(e, c)
  xs = _split_blocks(x, e // g)
  return _concat([fn(xi, kernel[i * g:(i + 1) * g]) for i, xi in enumerate(xs)])


@jax.custom_vjp
def _blocks_matmul(x, kernel):
  return _chunked(x, kernel, lambda xi, ki: xi @ _block_diag(ki))


def _blocks_matmul_fwd(x, kernel):
  return _blocks_matmul(x, kernel), (x, kernel)


def _blocks_matmul_bwd(res, g):
  x, kernel = res
  e, c, d = kernel.shape
  gsz = _chunks(e, c)
  n = e // gsz
  gs = _split_blocks(g, n)
  xs = _split_blocks(x, n)
  dx = _concat([gi @ _block_diag(kernel[i * gsz:(i + 1) * gsz]).T for i, gi in enumerate(gs)])
  # Per chunk one [g*C, g*D] GEMM and its diagonal blocks: no transposes of the
  # big operands (an einsum with a block batch axis transposes both).
  idx = np.arange(gsz)
  dks = []
  for xi, gi in zip(xs, gs):
    full = (xi.reshape(-1, gsz * c).T @ gi.reshape(-1, gsz * d)).reshape(gsz, c, gsz, d)
    dks.append(full[idx, :, idx, :])
  return dx, jnp.concatenate(dks, axis=0) if n > 1 else dks[0]


_blocks_matmul.defvjp(_blocks_matmul_fwd, _blocks_matmul_bwd)


def _windows(x_pad: jax.Array, k: int, stride: int, out_hw: tuple[int, int]):
  """The ``k*k`` strided windows of ``x_pad`` (one slice per tap)."""
  n, _, _, c = x_pad.shape
  oh, ow = out_hw
  for a in range(k):
    for b in range(k):
      yield lax.slice(x_pad, (0, a, b, 0), (n, a + (oh - 1) * stride + 1, b + (ow - 1) * stride + 1, c),
                      (1, stride, stride, 1))


def pool_out_len(n: int, k: int, stride: int, padding: int) -> int:
  return (n + 2 * padding - k) // stride + 1


def _spread(g: jax.Array, in_hw: tuple[int, int], k: int, stride: int, padding: int) -> jax.Array:
  """Dilates and pads an output-shaped array so that input ``m`` sees output ``o`` of tap ``a`` at ``m + k-1-a``."""
  pads = [(0, 0, 0)]
  for size_in, size_out in zip(in_hw, g.shape[1:3]):
    pads.append((k - 1 - padding, size_in + padding - (size_out - 1) * stride - 1, stride - 1))
  pads.append((0, 0, 0))
  return lax.pad(g, jnp.zeros((), g.dtype), pads)


def _pool_padding(padding: int):
  return ((0, 0), (padding, padding), (padding, padding), (0, 0))


def max_pool(x: jax.Array, kernel_size: int, stride: int, padding: int) -> jax.Array:
  """``torch.nn.MaxPool2d`` (padding never wins, as ``-inf``).

  ``cpu`` kernels: :func:`_max_pool_cpu`; ``xla``: one ``reduce_window`` and its
  autodiff (``select_and_scatter_add``).
  """
  if kernels_lib.current() == "cpu":
    return _max_pool_cpu(x, kernel_size, stride, padding)
  # Concrete (numpy) init values: JAX differentiates reduce_window only for a known monoid.
  return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, kernel_size, kernel_size, 1),
                           (1, stride, stride, 1), _pool_padding(padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_cpu(x: jax.Array, kernel_size: int, stride: int, padding: int) -> jax.Array:
  """``torch.nn.MaxPool2d`` (padding never wins); backward gathers instead of scattering.

  ``dx[m] = sum_o g[o] [x[m] == y[o]]`` over the windows ``o`` that contain
  ``m``, written as ``k*k`` shifted slices of the spread cotangent (JAX's own
  transpose of the forward slices is a sum of ``k*k`` full-size pads, ~10x
  slower on XLA:CPU). Tied maxima in a window each receive the gradient.
  """
  out_hw = tuple(pool_out_len(n, kernel_size, stride, padding) for n in x.shape[1:3])

  def fn(x):
    x_pad = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
    y = None
    for patch in _windows(x_pad, kernel_size, stride, out_hw):
      y = patch if y is None else jnp.maximum(y, patch)
    return y
  return isolated(fn)(x)


def _max_pool_fwd(x, kernel_size, stride, padding):
  y = _max_pool_cpu(x, kernel_size, stride, padding)
  return y, (x, y)


def _max_pool_bwd(kernel_size, stride, padding, res, g):
  x, y = res
  in_hw = x.shape[1:3]

  def fn(g, x, y):
    g_s = _spread(g, in_hw, kernel_size, stride, padding)
    y_s = _spread(y, in_hw, kernel_size, stride, padding)
    dx = None
    for g_win, y_win in zip(_windows(g_s, kernel_size, 1, in_hw), _windows(y_s, kernel_size, 1, in_hw)):
      term = jnp.where(x == y_win, g_win, 0.0)
      dx = term if dx is None else dx + term
    return dx
  return (isolated(fn)(g, x, y),)


_max_pool_cpu.defvjp(_max_pool_fwd, _max_pool_bwd)


def _pool_count(in_hw, k, stride, padding, out_hw) -> np.ndarray:
  ones = np.pad(np.ones(in_hw, np.float32), padding)
  return sum(ones[a:a + (out_hw[0] - 1) * stride + 1:stride, b:b + (out_hw[1] - 1) * stride + 1:stride]
             for a in range(k) for b in range(k))


def avg_pool(x: jax.Array, kernel_size: int, stride: int, padding: int, count_include_pad: bool) -> jax.Array:
  """``torch.nn.AvgPool2d``: the window sum over the divisor (``k*k``, or the count of real pixels).

  ``cpu`` kernels: :func:`_avg_pool_cpu`; ``xla``: one ``reduce_window`` sum and its autodiff.
  """
  if kernels_lib.current() == "cpu":
    return _avg_pool_cpu(x, kernel_size, stride, padding, count_include_pad)
  in_hw = x.shape[1:3]
  out_hw = tuple(pool_out_len(n, kernel_size, stride, padding) for n in in_hw)
  y = lax.reduce_window(x, np.array(0, x.dtype), lax.add, (1, kernel_size, kernel_size, 1),
                        (1, stride, stride, 1), _pool_padding(padding))
  return y / jnp.asarray(_divisor(in_hw, kernel_size, stride, padding, out_hw, count_include_pad), x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _avg_pool_cpu(x: jax.Array, kernel_size: int, stride: int, padding: int, count_include_pad: bool) -> jax.Array:
  """``torch.nn.AvgPool2d``; backward as ``k*k`` shifted slices (see :func:`_max_pool_cpu`)."""
  in_hw = x.shape[1:3]
  out_hw = tuple(pool_out_len(n, kernel_size, stride, padding) for n in in_hw)
  y = isolated(lambda x: sum(_windows(jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))),
                                      kernel_size, stride, out_hw)))(x)
  return y / jnp.asarray(_divisor(in_hw, kernel_size, stride, padding, out_hw, count_include_pad), x.dtype)


def _divisor(in_hw, k, stride, padding, out_hw, count_include_pad):
  if count_include_pad:
    return np.float32(k * k)
  return _pool_count(in_hw, k, stride, padding, out_hw)[None, :, :, None]


def _avg_pool_fwd(x, kernel_size, stride, padding, count_include_pad):
  return _avg_pool_cpu(x, kernel_size, stride, padding, count_include_pad), x.shape


def _avg_pool_bwd(kernel_size, stride, padding, count_include_pad, x_shape, g):
  in_hw = x_shape[1:3]
  div = _divisor(in_hw, kernel_size, stride, padding, g.shape[1:3], count_include_pad)
  fn = lambda g: sum(_windows(_spread(g / jnp.asarray(div, g.dtype), in_hw, kernel_size, stride, padding),
                              kernel_size, 1, in_hw))
  return (isolated(fn)(g),)


_avg_pool_cpu.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1x1 convolution of ``E`` channel blocks: ``y[..., e, :] = x[..., e, :] @ kernel[e]``.

  Args:
    x: ``[..., E*C]`` (the ``E`` blocks of ``C`` channels side by side).
    kernel: ``[E, C, D]``.

  Returns:
    ``[..., E*D]``.

  ``cpu`` kernels: block-diagonal GEMMs in chunks with a hand-written VJP
  (:func:`_blocks_matmul`); ``xla``: one batched ``einsum`` over the blocks
  (no wasted products, no chunking) and its autodiff.
  """
  if kernel.shape[0] == 1:
    return x @ kernel[0]
  if kernels_lib.current() == "cpu":
    return _blocks_matmul(x, kernel)
  e, c, d = kernel.shape
  y = jnp.einsum("...ec,ecd->...ed", x.reshape(*x.shape[:-1], e, c), kernel)
  return y.reshape(*x.shape[:-1], e * d)
