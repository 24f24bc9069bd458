r"""The discrete ProxylessNAS network of a genotype (docs/design.md sections 4 and 7).

``stem -> first MBConv1 -> [MBConv of every non-zero layer] -> feature mix -> pool -> linear``
(layout in :mod:`unas_jax.spaces.proxyless`); ``zero`` layers are left out, which
is exact because ``zero`` is only offered where the layer keeps shape (identity).
The same module serves the latency probe (timed with random weights) and the
evaluation phase (trained from scratch). It follows the module calling
convention of :mod:`unas_jax.nn.functional` and ignores ``arch``.

Parameter and multiply-add counts follow ProxylessNAS (``count_parameters`` counts
every trainable tensor, BatchNorm scale/bias included; ``count_conv_flop`` counts
``C_in C_out K^2 h'^2 / groups`` per convolution and ``C_in C_out`` for the linear
layer). Reference for ``proxylessnas_gpu`` at 224x224, 1000 classes:
7.12M parameters, 465.3M multiply-adds (mit-han-lab/proxylessnas ``logs/imagenet_gpu_log.txt``).
"""
from __future__ import annotations

from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from unas_jax.nn import kernels as kernels_lib
from unas_jax.nn import mbconv
from unas_jax.nn import precision
from unas_jax.spaces import proxyless as space


class ProxylessHead(nnx.Module):
  """Feature mix (1x1 conv, BN, ReLU6), global average pool, dropout, linear."""

  def __init__(self, c_in: int, c_mix: int, num_classes: int, *, dropout: float = 0.0, bn_affine: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.feature_mix = mbconv.ConvBN(c_in, c_mix, 1, bn_affine=bn_affine, dtype=dtype, rngs=rngs)
    init = mbconv.torch_linear_init(c_mix)  # the reference classifier's (PyTorch default)
    self.classifier = nnx.Linear(c_mix, num_classes, kernel_init=init, bias_init=init, dtype=dtype, rngs=rngs)
    self.dropout = dropout

  def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
    x = self.feature_mix(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    if train and self.dropout > 0.0:
      if key is None:
        raise ValueError("classifier dropout in training needs a PRNG key (pass key=)")
      keep = jax.random.bernoulli(key, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x / (1.0 - self.dropout), 0.0).astype(x.dtype)
    return self.classifier(x)


class ProxylessStem(nnx.Module):
  """Conv 3x3 stride 2 (BN, ReLU6) and the first MBConv1 3x3 (no expand conv, no residual)."""

  def __init__(self, widths: Sequence[int], *, bn_affine: bool = True, depthwise_impl: str = "auto",
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = mbconv.ConvBN(3, widths[0], 3, 2, bn_affine=bn_affine, dtype=dtype, rngs=rngs)
    self.first = mbconv.MBConv(widths[0], widths[1], kernel_size=3, expansion=1, stride=1, residual=False,
                               bn_affine=bn_affine, depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return self.first(self.conv(x, train=train), train=train)


def make_mbconv(spec: space.LayerSpec, op: str, *, bn_affine: bool, depthwise_impl: str, dtype,
                rngs: nnx.Rngs) -> mbconv.MBConv:
  """The MBConv of ``op`` at layer ``spec`` (residual where stride 1 and width kept)."""
  k, e = space.parse_op(op)
  return mbconv.MBConv(spec.c_in, spec.c_out, kernel_size=k, expansion=e, stride=spec.stride,
                       residual=spec.residual, bn_affine=bn_affine, depthwise_impl=depthwise_impl,
                       dtype=dtype, rngs=rngs)


class ProxylessNetwork(nnx.Module):
  """The network of one genotype, ``zero`` layers removed.

  ``w['layers'][name]`` holds the MBConv of each non-zero layer ``name``
  (``'layer01'`` ...), so weights map one-to-one from the supernet's chosen op
  (:func:`unas_jax.nn.proxyless_supernet.network_weights_from_supernet`).
  """

  def __init__(self, genotype: space.ProxylessGenotype | str, widths: str | Sequence[int] | None = None,
               num_classes: int = 1000, *, rngs: nnx.Rngs, dropout: float = 0.0, bn_affine: bool = True,
               depthwise_impl: str = "auto", dtype=jnp.float32, kernels: str = "auto", remat: str = "none"):
    """Args:
      genotype: a genotype, built-in name, JSON path or op string.
      widths: ``'gpu'`` (default), ``'mobile'`` or 9 ints.
      num_classes: classifier outputs.
      dropout: dropout before the classifier in training (ProxylessNAS's ``imagenet_run_exp.py``
        default: 0).
      bn_affine: BatchNorm with scale and bias (evaluation networks: True).
      depthwise_impl: see :mod:`unas_jax.nn.depthwise`.
      dtype: compute dtype (parameters, BatchNorm statistics and logits stay float32).
      kernels: ``auto`` | ``cpu`` | ``xla`` (:mod:`unas_jax.nn.kernels`).
      remat: ``none`` | ``layer`` | ``layer_inputs``: ``jax.checkpoint`` each MBConv layer, keeping
        convolution outputs (``layer``) or only the layer's input (:mod:`unas_jax.nn.precision`).
    """
    dtype = precision.compute_dtype(dtype)
    self.kernels = kernels_lib.check(kernels)
    self.remat = precision.check_remat(remat, precision.PROXYLESS_REMAT)
    self.compute_dtype = dtype
    self.genotype = space.get_genotype(genotype)
    self.widths = space.resolve_widths(widths)
    self.num_classes = num_classes
    self.stem = ProxylessStem(self.widths, bn_affine=bn_affine, depthwise_impl=depthwise_impl, dtype=dtype,
                              rngs=rngs)
    layers = {}
    for spec, op in zip(space.layer_specs(self.widths), self.genotype.ops):
      if op != space.ZERO:
        layers[spec.name] = make_mbconv(spec, op, bn_affine=bn_affine, depthwise_impl=depthwise_impl,
                                        dtype=dtype, rngs=rngs)
    self.layers = nnx.data(layers)
    self.head = ProxylessHead(self.widths[7], self.widths[8], num_classes, dropout=dropout, bn_affine=bn_affine,
                              dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, arch=None, *, train: bool, key: jax.Array | None = None) -> jax.Array:
    with kernels_lib.use(self.kernels):
      x = self.stem(x.astype(self.compute_dtype), train=train)
      for name in sorted(self.layers):
        if self.remat == "none":
          x = self.layers[name](x, train=train)
        else:
          run = nnx.remat(lambda layer, x: layer(x, train=train), policy=precision.remat_policy(self.remat))
          x = run(self.layers[name], x)
      return precision.to_float32(self.head(x, train=train, key=key))


# --------------------------------------------------------------------------- counting


def count_params(genotype: space.ProxylessGenotype | str, widths: str | Sequence[int] | None = None,
                 num_classes: int = 1000, *, bn_affine: bool = True) -> int:
  """Trainable parameters of :class:`ProxylessNetwork` (analytic; equal to the module's ``w``)."""
  genotype = space.get_genotype(genotype)
  widths = space.resolve_widths(widths)
  bn = 2 if bn_affine else 0
  n = 3 * 3 * 3 * widths[0] + bn * widths[0]
  n += mbconv.mbconv_params(widths[0], widths[1], 3, 1, bn_affine)
  for spec, op in zip(space.layer_specs(widths), genotype.ops):
    if op != space.ZERO:
      k, e = space.parse_op(op)
      n += mbconv.mbconv_params(spec.c_in, spec.c_out, k, e, bn_affine)
  n += widths[7] * widths[8] + bn * widths[8]
  n += widths[8] * num_classes + num_classes
  return n


def count_macs(genotype: space.ProxylessGenotype | str, widths: str | Sequence[int] | None = None,
               resolution: int = 224, num_classes: int = 1000) -> int:
  """Multiply-adds of convolutions and the linear layer for one ``resolution x resolution`` image."""
  genotype = space.get_genotype(genotype)
  widths = space.resolve_widths(widths)
  sizes = space.feature_sizes(resolution)
  h = sizes[0]
  macs = 3 * 3 * 3 * widths[0] * h * h
  macs += mbconv.mbconv_macs(widths[0], widths[1], 3, 1, h, 1)
  for spec, op, h_in in zip(space.layer_specs(widths), genotype.ops, sizes):
    if op != space.ZERO:
      k, e = space.parse_op(op)
      macs += mbconv.mbconv_macs(spec.c_in, spec.c_out, k, e, h_in, spec.stride)
  h = sizes[-1]
  macs += widths[7] * widths[8] * h * h
  macs += widths[8] * num_classes
  return macs


def count_module_params(model: nnx.Module) -> int:
  """Number of entries of every ``nnx.Param`` of ``model``."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
