r"""The ProxylessNAS supernet: 21 mixed layers weighted by an architecture sample.

Layer ``l`` with choices ``k`` (docs/design.md section 4; NVlabs/unas ``proxylessnas/model_search.py``)::

    y = sum_{k < 6} arch_l[s, k] * MBConv_k(x)  +  arch_l[s, 6] * dropout_0.1(x)   (if zero is offered)

where ``MBConv_k`` includes its own residual (stride 1, same width) and the
``zero`` choice is an identity with dropout during training. The reference
wraps its ``mic_zero`` op in ``nn.Dropout(0.1)`` ("following P-DARTS add noise
to skip operation"): P-DARTS's remedy against the skip connection winning early
because it trains fastest. That dropout is active whenever the reference model
is in train mode, i.e. for the weight update and for the architecture update
alike; ``train=True`` does the same here (it needs ``key``).

``arch`` leaves are ``[S, K_l]`` with ``S == batch`` (one architecture per
example) or ``S == 1`` (shared), one-hot or relaxed. Every op runs on every
example, whatever its weight: the reference skipped ops with weight below 0.05,
a biased shortcut (docs/design.md section 10) that is not reproduced.

BatchNorm: with scale and bias in the search supernet, eps 1e-3, as the
reference (its ProxylessNAS ops are built with PyTorch's default ``affine=True``;
only its DARTS-space supernet drops the affine part). In training mode each op's
BatchNorm normalises with the statistics of the whole batch, as the reference.

``phi`` lives in one :class:`ArchParam` per layer, as attributes named like the
layers, so ``split(supernet)[1]`` is exactly the space's layout
``{'layer01': [6], 'layer02': [7], ...}`` (:mod:`unas_jax.spaces.proxyless`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
from chex import ArrayTree as PyTree

from unas_jax.errors import ConfigError
from unas_jax.nn import kernels as kernels_lib
from unas_jax.nn import precision
from unas_jax.nn import proxyless_network as pnet
from unas_jax.nn.functional import ArchParam
from unas_jax.spaces import proxyless as space

ZERO_DROPOUT = 0.1
REMAT = precision.PROXYLESS_REMAT


class MixedLayer(nnx.Module):
  """One searchable layer: the six MBConvs (and the identity where ``zero`` is offered)."""

  def __init__(self, spec: space.LayerSpec, *, zero_dropout: float = ZERO_DROPOUT, bn_affine: bool = True,
               depthwise_impl: str = "auto", dtype=jnp.float32, rngs: nnx.Rngs):
    self.spec = spec
    self.zero_dropout = zero_dropout
    self.ops = nnx.List([pnet.make_mbconv(spec, op, bn_affine=bn_affine, depthwise_impl=depthwise_impl,
                                          dtype=dtype, rngs=rngs) for op in space.MBCONV_OPS])

  def __call__(self, x: jax.Array, weights: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
    """``weights``: ``[S, K]`` with ``S`` in ``{1, batch}``."""
    s, k = weights.shape
    if k != self.spec.num_choices or s not in (1, x.shape[0]):
      raise ConfigError(f"{self.spec.name}: arch leaf has shape {weights.shape}; expected [S, "
                        f"{self.spec.num_choices}] with S = 1 or S = batch ({x.shape[0]})")
    w = weights.astype(x.dtype)[:, :, None, None, None]  # [S, K, 1, 1, 1]
    y = None
    for i, op in enumerate(self.ops):
      term = w[:, i] * op(x, train=train)
      y = term if y is None else y + term
    if self.spec.allows_zero:
      identity = x
      if train and self.zero_dropout > 0.0:
        if key is None:
          raise ConfigError("the supernet's zero-op dropout needs a PRNG key in training: call it with "
                            "key=... (or build it with zero_dropout=0)")
        keep = jax.random.bernoulli(key, 1.0 - self.zero_dropout, x.shape)
        identity = jnp.where(keep, x / (1.0 - self.zero_dropout), 0.0).astype(x.dtype)
      y = y + w[:, space.PROXYLESS_OPS.index(space.ZERO)] * identity
    return y


class ProxylessSupernet(nnx.Module):
  """Stem, first MBConv1, 21 mixed layers, feature mix, pool, classifier."""

  def __init__(self, widths: str | Sequence[int] | None = None, num_classes: int = 1000, *, rngs: nnx.Rngs,
               zero_dropout: float = ZERO_DROPOUT, dropout: float = 0.0, bn_affine: bool = True,
               depthwise_impl: str = "auto", dtype=jnp.float32, phi_init_scale: float = 0.0,
               kernels: str = "auto", remat: str = "none"):
    """Args:
      widths: ``'gpu'`` (default, UNAS), ``'mobile'`` or 9 ints.
      num_classes: classifier outputs.
      zero_dropout: dropout on the ``zero`` (identity) choice in training (reference: 0.1).
      dropout: dropout before the classifier in training (reference search: 0).
      bn_affine: BatchNorm scale and bias (reference ProxylessNAS-space search: True).
      depthwise_impl: see :mod:`unas_jax.nn.depthwise`.
      dtype: compute dtype (``float32`` | ``bfloat16`` | ``float16`` or a jnp dtype); phi, w,
        BatchNorm statistics and the logits stay float32 (:mod:`unas_jax.nn.precision`).
      phi_init_scale: ``phi`` starts at ``scale * N(0, 1)`` (0: uniform, as the reference).
      kernels: ``auto`` | ``cpu`` | ``xla`` (:mod:`unas_jax.nn.kernels`), entered around the forward pass.
      remat: ``none`` | ``layer`` | ``layer_inputs``: ``jax.checkpoint`` each mixed layer, keeping
        convolution outputs (``layer``) or only the layer's input (:mod:`unas_jax.nn.precision`).
    """
    dtype = precision.compute_dtype(dtype)
    self.kernels = kernels_lib.check(kernels)
    self.remat = precision.check_remat(remat, REMAT)
    self.compute_dtype = dtype
    self.widths = space.resolve_widths(widths)
    self.num_classes = num_classes
    self.stem = pnet.ProxylessStem(self.widths, bn_affine=bn_affine, depthwise_impl=depthwise_impl, dtype=dtype,
                                   rngs=rngs)
    specs = space.layer_specs(self.widths)
    self.layers = nnx.data({s.name: MixedLayer(s, zero_dropout=zero_dropout, bn_affine=bn_affine,
                                               depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs)
                            for s in specs})
    self.head = pnet.ProxylessHead(self.widths[7], self.widths[8], num_classes, dropout=dropout,
                                   bn_affine=bn_affine, dtype=dtype, rngs=rngs)
    phi = space.init_phi(rngs.params() if phi_init_scale else None, phi_init_scale)
    for name, value in phi.items():
      setattr(self, name, ArchParam(value))

  def __call__(self, x: jax.Array, arch: Mapping[str, jax.Array], *, train: bool,
               key: jax.Array | None = None) -> jax.Array:
    if not isinstance(arch, Mapping) or set(arch) != set(space.LAYER_NAMES):
      raise ConfigError("the ProxylessNAS supernet needs arch = {'layer01': [S, K], ..., 'layer21': [S, K]} "
                        "(the layout of its phi)")
    keys = [None] * (space.NUM_LAYERS + 1) if key is None else list(jax.random.split(key, space.NUM_LAYERS + 1))
    with kernels_lib.use(self.kernels):
      x = self.stem(x.astype(self.compute_dtype), train=train)
      for i, name in enumerate(space.LAYER_NAMES):
        layer = self.layers[name]
        if self.remat == "none":
          x = layer(x, arch[name], train=train, key=keys[i])
        else:
          run = lambda layer, x, a, k: layer(x, a, train=train, key=k)
          x = nnx.remat(run, policy=precision.remat_policy(self.remat))(layer, x, arch[name], keys[i])
      return precision.to_float32(self.head(x, train=train, key=keys[-1]))


def network_weights_from_supernet(genotype: space.ProxylessGenotype | str, w: PyTree, stats: PyTree
                                  ) -> tuple[PyTree, PyTree]:
  """The ``(w, stats)`` of :class:`ProxylessNetwork` ``genotype`` cut out of a supernet's.

  Shared parts (stem, head) are copied; each non-zero layer takes the weights of
  its chosen op. With the same ``widths``, ``num_classes`` and ``bn_affine``, the
  network then computes exactly what the supernet computes on the one-hot arch.
  """
  genotype = space.get_genotype(genotype)

  def cut(tree):
    out = {k: v for k, v in tree.items() if k not in ("layers",) + space.LAYER_NAMES}
    layers = {}
    for name, op in zip(space.LAYER_NAMES, genotype.ops):
      if op != space.ZERO and "layers" in tree:
        layers[name] = tree["layers"][name]["ops"][space.MBCONV_OPS.index(op)]
    out["layers"] = layers
    return out

  return cut(w), cut(stats)
