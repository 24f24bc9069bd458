r"""BatchNorm with PyTorch's semantics, local or synchronised over the data axis.

One module serves every network here: the DARTS ops and networks, the NB201
supernet (``eps = 1e-5``, PyTorch's default) and the ProxylessNAS MBConv blocks
(``eps = 1e-3``, the reference's ``bn_param``). Over all axes but the last
(``N, H, W`` of NHWC), with ``n`` the number of values per channel::

    training:  mu_B = mean(x),  var_B = mean(x^2) - mu_B^2          (biased)
               y    = (x - mu_B) / sqrt(var_B + eps) * scale + bias
               mean <- m mean + (1 - m) mu_B
               var  <- m var  + (1 - m) var_B n / (n - 1)            (unbiased, as PyTorch)
    eval:      y    = (x - mean) / sqrt(var + eps) * scale + bias

``m`` is the Flax momentum, ``m = 1 - momentum_PyTorch``: both references use
PyTorch's 0.1, so ``m = 0.9``. Statistics, parameters and the normalisation are
float32 whatever the compute dtype; ``y`` is cast back (mixed precision).

Data parallelism (``search.bn`` / ``train.bn``, :func:`apply_mode`):

``local`` (the default): each device normalises with the mean and variance of
its own slice of the batch, ``mu_d = mean(x[d])``, as the reference
implementations do (PyTorch ``DataParallel`` / ``DistributedDataParallel``
without ``SyncBatchNorm``: UNAS searched with 32 images per GPU on 4 GPUs).
Keeping it reproduces the reference's regularisation and costs no collective
per BatchNorm layer. The running averages kept in ``stats`` are the mean over
devices of each device's update (``pmean`` in the steps), so replicas stay
identical.

``sync``: ``mu = pmean_d(mean(x[d]))`` and ``E[x^2]`` likewise over the
``data`` axis (``axis_name``), ``n`` the global count: the statistics of the
whole global batch, so results do not depend on the number of devices (to float
rounding). Costs two all-reduces of ``C`` floats per BatchNorm and step.
"""
from __future__ import annotations

import math

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError

MOMENTUM = 0.9  # Flax convention; PyTorch momentum 0.1 (DARTS, UNAS and ProxylessNAS alike).
EPSILON = 1e-5  # PyTorch's default (DARTS, NB201); the ProxylessNAS blocks pass 1e-3.
MODES = ("local", "sync")


def batch_norm(x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array | None,
               bias: jax.Array | None, *, train: bool, momentum: float = MOMENTUM,
               epsilon: float = EPSILON, axis_name: str | None = None, folded: bool = False,
               dtype=None) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""BatchNorm over all axes but the last, as ``torch.nn.BatchNorm2d`` (equations in the module docstring).

  Args:
    x: ``[..., C]``.
    mean, var: running statistics ``[C]``.
    scale, bias: ``[C]`` or None (``affine=False``).
    train: use batch statistics and update the running ones.
    momentum: Flax convention (0.9 == PyTorch 0.1).
    epsilon: added to the variance.
    axis_name: if set, batch statistics are averaged over this mapped axis
      (synchronised BatchNorm inside ``shard_map``).
    folded: normalise as one multiply-add per value, ``y = x a + b`` with
      ``a = scale / sqrt(var + eps)`` and ``b = bias - mu a``, instead of
      ``y = (x - mu) a + bias``. The same function up to float rounding; the
      MBConv blocks were written with the first form, the DARTS ops with the
      second, and each keeps its own so that both reproduce their earlier
      outputs bit for bit.
    dtype: dtype of ``y``; None: ``x``'s.

  Returns:
    ``(y, new_mean, new_var)``; the statistics are unchanged when not training.

  Mixed precision: ``x`` in a 16-bit compute dtype is reduced and normalised in
  float32 (statistics stay float32): in the folded form ``x a`` and ``mu a``
  nearly cancel wherever ``|mu| >> std``, which a bfloat16 8-bit mantissa would
  not survive. The fused elementwise op still reads and writes the compute dtype.
  """
  # One float32 copy of x feeds the statistics and the normalisation, so that in a 16-bit
  # compute dtype x's two cotangents are summed in float32 and rounded once.
  xf = x.astype(jnp.float32)
  if train:
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    # One pass (E[x], E[x^2]); fused by XLA into a single reduction, and one all-reduce when synchronised.
    mu = jnp.mean(xf, axis=axes)
    mu2 = jnp.mean(jnp.square(xf), axis=axes)
    if axis_name is not None:
      mu, mu2 = lax.pmean((mu, mu2), axis_name)
      n = n * lax.psum(1, axis_name)
    batch_var = jnp.maximum(mu2 - jnp.square(mu), 0.0)
    new_mean = momentum * mean + (1.0 - momentum) * lax.stop_gradient(mu)
    unbiased = lax.stop_gradient(batch_var) * (n / max(n - 1, 1))
    new_var = momentum * var + (1.0 - momentum) * unbiased
  else:
    mu, batch_var = mean, var
    new_mean, new_var = mean, var
  inv = lax.rsqrt(batch_var + epsilon)
  if scale is not None:
    inv = inv * scale
  if folded:
    shift = -mu * inv
    if bias is not None:
      shift = shift + bias
    y = xf * inv + shift
  else:
    y = (xf - mu) * inv
    if bias is not None:
      y = y + bias
  return y.astype(x.dtype if dtype is None else dtype), new_mean, new_var


def _host_full(num_features: int, value: float) -> jax.Array:
  # numpy then device_put: eager jnp.full compiles one kernel per distinct shape, and a
  # supernet has a few hundred BatchNorm widths.
  return jax.device_put(np.full((num_features,), value, np.float32))


class BatchNorm(nnx.Module):
  """``torch.nn.BatchNorm2d(C, eps, momentum, affine)`` on NHWC inputs (see :func:`batch_norm`).

  Variables are named as ``nnx.BatchNorm``'s: ``mean``, ``var`` (``nnx.BatchStat``,
  float32), and with ``affine`` ``scale``, ``bias`` (``nnx.Param``, float32, 2*C
  parameters, as PyTorch's weight and bias). ``axis_name`` (None: local statistics)
  is set by :func:`set_axis_name`; ``folded`` and ``dtype`` as in :func:`batch_norm`.

  Why not ``nnx.BatchNorm``: its in-place statistics update (``var[...] = new``) asks
  the traced value for ``.sharding``, and jax (0.10) answers that with an error message
  whose construction walks the whole trace, so tracing grew quadratically with the
  number of BatchNorms (83 s instead of 2 s for the 20-cell CIFAR network's training
  step; 28 s instead of ~1 s for the ProxylessNAS supernet's 380). ``set_value``
  replaces the value without that probe.
  """

  def __init__(self, num_features: int, *, affine: bool = True, momentum: float = MOMENTUM,
               epsilon: float = EPSILON, axis_name: str | None = None, folded: bool = False, dtype=None):
    self.num_features = num_features
    self.affine = affine
    self.momentum = momentum
    self.epsilon = epsilon
    self.axis_name = axis_name
    self.folded = folded
    self.dtype = dtype
    self.mean = nnx.BatchStat(_host_full(num_features, 0.0))
    self.var = nnx.BatchStat(_host_full(num_features, 1.0))
    self.scale = nnx.Param(_host_full(num_features, 1.0)) if affine else None
    self.bias = nnx.Param(_host_full(num_features, 0.0)) if affine else None

  def affine_params(self) -> tuple[jax.Array | None, jax.Array | None]:
    """``(scale, bias)`` arrays, or ``(None, None)`` without affine."""
    if not self.affine:
      return None, None
    return self.scale.get_value(), self.bias.get_value()

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    scale, bias = self.affine_params()
    y, new_mean, new_var = batch_norm(x, self.mean.get_value(), self.var.get_value(), scale, bias,
                                      train=train, momentum=self.momentum, epsilon=self.epsilon,
                                      axis_name=self.axis_name, folded=self.folded, dtype=self.dtype)
    if train:
      self.mean.set_value(new_mean)  # not mean[...] = new: see the class docstring
      self.var.set_value(new_var)
    return y


def _synchronisable(node) -> bool:
  # BatchNorm here and flax's nnx.BatchNorm (the tests' toy supernet) read ``axis_name``.
  return isinstance(node, (BatchNorm, nnx.BatchNorm))


def set_axis_name(module: nnx.Module, axis_name: str | None) -> int:
  """Sets ``axis_name`` on every BatchNorm of ``module`` (None: local statistics); returns how many.

  Raises ConfigError when ``module`` holds a BatchNorm that cannot synchronise
  (any other module with ``nnx.BatchStat`` variables), so ``sync`` never
  silently stays local.
  """
  count = 0
  for _, node in nnx.iter_graph(module):
    if not isinstance(node, nnx.Module):
      continue
    if _synchronisable(node):
      node.axis_name = axis_name
      count += 1
    elif axis_name is not None and any(isinstance(v, nnx.BatchStat) for v in vars(node).values()):
      raise ConfigError(f"{type(node).__name__} has no synchronised BatchNorm; use bn='local'")
  return count


def apply_mode(module: nnx.Module, mode: str, axis_name: str, name: str = "bn") -> nnx.Module:
  """``module`` with local (``mode='local'``) or ``axis_name``-synchronised BatchNorm statistics.

  ``name``: the config key ``mode`` came from (``search.bn``, ``train.bn``), for the error.
  """
  check_choice(name, mode, MODES)
  set_axis_name(module, axis_name if mode == "sync" else None)
  return module
