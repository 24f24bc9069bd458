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
from unas_jax.nn import functional
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
               kernels: str = "auto", remat: str = "none", scan_layers: bool = False):
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
      scan_layers: run the layers after the first of each stage (same widths, stride 1, ``zero``
        offered: 5 runs of 3) as one ``lax.scan`` per stage, one layer in the compiled program
        instead of three (:func:`layer_runs`). Off by default: on this project's CPU it compiled
        the ``:quick`` search step 29% faster but its steps ran 2x slower
        (``experiments/results/scan_cells/``); unmeasured on GPU/TPU.
    """
    dtype = precision.compute_dtype(dtype)
    self.kernels = kernels_lib.check(kernels)
    self.remat = precision.check_remat(remat, REMAT)
    if not isinstance(scan_layers, bool):
      raise ConfigError(f"scan_layers={scan_layers!r} must be True or False")
    self.scan_layers = scan_layers
    self.compute_dtype = dtype
    self.widths = space.resolve_widths(widths)
    self.num_classes = num_classes
    self.stem = pnet.ProxylessStem(self.widths, bn_affine=bn_affine, depthwise_impl=depthwise_impl, dtype=dtype,
                                   rngs=rngs)
    specs = space.layer_specs(self.widths)
    self.layer_runs = layer_runs(specs) if scan_layers else tuple((i, i + 1) for i in range(len(specs)))
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
    keys = None if key is None else jax.random.split(key, space.NUM_LAYERS + 1)
    names = space.LAYER_NAMES

    def run(layer, x, inputs):
      weights, layer_key = inputs
      if self.remat == "none":
        return layer(x, weights, train=train, key=layer_key)
      call = lambda layer, x, a, k: layer(x, a, train=train, key=k)  # noqa: E731
      return nnx.remat(call, policy=precision.remat_policy(self.remat))(layer, x, weights, layer_key)

    with kernels_lib.use(self.kernels):
      x = self.stem(x.astype(self.compute_dtype), train=train)
      for start, stop in self.layer_runs:
        run_keys = None if keys is None else keys[start:stop]
        if stop - start == 1:
          x = run(self.layers[names[start]], x, (arch[names[start]], None if keys is None else keys[start]))
        else:
          weights = jnp.stack([arch[n] for n in names[start:stop]])
          x = functional.scan_modules([self.layers[n] for n in names[start:stop]], run, x, (weights, run_keys),
                                      update_stats=train)
      return precision.to_float32(self.head(x, train=train, key=None if keys is None else keys[-1]))


def layer_runs(specs: Sequence[space.LayerSpec]) -> tuple[tuple[int, int], ...]:
  """The layers as ``(start, stop)`` index ranges, in order; a range of two or more is one scan.

  A run is consecutive layers of the same widths and stride that offer ``zero``: the
  same graph and shapes (with the reference widths, layers 2-4, 6-8, 10-12, 14-16 and 18-20).
  """
  runs, start = [], 0
  for i in range(1, len(specs) + 1):
    a, b = specs[i - 1], specs[i] if i < len(specs) else None
    same = b is not None and a.allows_zero and b.allows_zero and (a.c_in, a.c_out, a.stride) == (
        b.c_in, b.c_out, b.stride)
    if not same:
      runs.append((start, i))
      start = i
  return tuple(runs)


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
