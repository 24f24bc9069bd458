r"""The NAS-Bench-201 search supernet in Flax NNX (the benchmark's ``TinyNetwork`` with mixed edges).

Network (NAS-Bench-201, Dong & Yang 2020, its weight-sharing search model):
stem ``Conv3x3(3 -> C) + BN``; three stages of ``N`` cells with ``C``, ``2C``,
``4C`` channels, separated by residual reduction blocks (``ResNetBasicblock``
with stride 2: ``ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN`` plus the shortcut
``AvgPool2d(2, 2) + Conv1x1``); then ``BN + ReLU``, global average pooling and
a linear classifier. The stem, the reduction blocks and the last BN keep their
affine parameters (the benchmark's defaults); the cell ops' BatchNorm has none
(as every weight-sharing search of the benchmark).

A cell (:mod:`unas_jax.spaces.nb201`) computes, for nodes ``j = 1..3``,

    node_j = sum_{i < j} sum_k arch[s, e(i, j), k] * op_{e(i, j), k}(node_i)

with ``node_0`` the cell input and output ``node_3``; sample ``s`` is example
``s`` when ``S == batch`` and the whole batch when ``S == 1`` (the DARTS
supernet's convention). Ops: ``none`` (zeros: its term is dropped),
``skip_connect`` (identity), ``nor_conv_KxK`` (ReLU-ConvKxK-BN), ``avg_pool_3x3``
(stride 1, ``count_include_pad=False``). Every edge has its own conv modules,
as in the benchmark; parameter-free ops are computed once per source node.
One set of logits for all cells. ``phi`` lives in one :class:`ArchParam`
attribute ``edges`` so ``split(model)[1] == {'edges': [6, 5]}``.
"""
from __future__ import annotations

from typing import Mapping

from flax import nnx
import jax
import jax.numpy as jnp
from chex import ArrayTree as PyTree

from unas_jax.errors import ConfigError
from unas_jax.nn import batchnorm
from unas_jax.nn import ops
from unas_jax.nn.functional import ArchParam
from unas_jax.spaces import nb201


CONV_OPS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


class SearchCell(nnx.Module):
  """One NB201 cell with a conv module per (edge, conv op)."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.channels = channels
    # convs[e][name]: ReLU-Conv-BN (no affine) of edge e.
    self.convs = nnx.List([
        nnx.Dict({name: ops.ReLUConvBN(channels, channels, k, 1, k // 2, affine=False, rngs=rngs)
                  for name, k in CONV_OPS.items()})
        for _ in nb201.EDGES])

  def __call__(self, x: jax.Array, weights: jax.Array, *, train: bool) -> jax.Array:
    """Mixed cell; ``weights`` ``[S, 6, 5]`` (one-hot or relaxed), ``S`` in {1, batch}."""
    nodes, pooled = [x], []
    for j in range(1, nb201.NUM_NODES):
      pooled.append(ops.avg_pool(nodes[-1], 3, 1, 1, False))  # shared by every edge leaving that node
      out = 0.0
      for e, (i, t) in enumerate(nb201.EDGES):
        if t != j:
          continue
        h = nodes[i]
        w = weights[:, e, :, None, None, None]  # [S, K, 1, 1, 1]
        out = out + w[:, nb201.OPS.index("skip_connect")] * h
        out = out + w[:, nb201.OPS.index("avg_pool_3x3")] * pooled[i]
        for name in CONV_OPS:
          out = out + w[:, nb201.OPS.index(name)] * self.convs[e][name](h, train=train)
      nodes.append(out)
    return nodes[-1]

  def discrete(self, x: jax.Array, cell: nb201.Cell, *, train: bool) -> jax.Array:
    """The discrete cell, only its own ops evaluated, with this cell's modules.

    ``node_j = sum_{i < j, op_(i,j) != none} op_(i,j)(node_i)`` (zeros when every
    edge into ``j`` is ``none``).
    """
    nodes = [x]
    for j in range(1, nb201.NUM_NODES):
      out = jnp.zeros_like(x)
      for e, ((i, t), name) in enumerate(zip(nb201.EDGES, cell.ops)):
        if t != j or name == "none":
          continue
        h = nodes[i]
        if name == "skip_connect":
          out = out + h
        elif name == "avg_pool_3x3":
          out = out + ops.avg_pool(h, 3, 1, 1, False)
        else:
          out = out + self.convs[e][name](h, train=train)
      nodes.append(out)
    return nodes[-1]


class ResidualReduction(nnx.Module):
  """NB201's ``ResNetBasicblock`` with stride 2 (affine BatchNorm)."""

  def __init__(self, in_channels: int, out_channels: int, *, rngs: nnx.Rngs):
    self.conv_a = ops.ReLUConvBN(in_channels, out_channels, 3, 2, 1, affine=True, rngs=rngs)
    self.conv_b = ops.ReLUConvBN(out_channels, out_channels, 3, 1, 1, affine=True, rngs=rngs)
    self.shortcut = ops.Conv2d(in_channels, out_channels, 1, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ConfigError(f"a reduction block needs an even height and width, got {x.shape[1]}x{x.shape[2]}; "
                        "use an input resolution divisible by 4")
    y = self.conv_b(self.conv_a(x, train=train), train=train)
    return y + self.shortcut(ops.avg_pool(x, 2, 2, 0, True))


def check_arch(arch: PyTree, batch_size: int) -> int:
  """Checks ``arch == {'edges': [S, 6, 5]}`` with ``S`` in {1, batch}; returns ``S``."""
  edges = arch.get("edges") if isinstance(arch, Mapping) else None
  shape = (nb201.NUM_EDGES, nb201.NUM_OPS)
  if edges is None or edges.ndim != 3 or tuple(edges.shape[1:]) != shape:
    raise ConfigError(f"arch must be {{'edges': [S, {shape[0]}, {shape[1]}]}}, got "
                      f"{None if edges is None else tuple(edges.shape)}")
  if edges.shape[0] not in (1, batch_size):
    raise ConfigError(f"arch's sample axis is {edges.shape[0]}; it must be 1 or the batch size {batch_size}")
  return edges.shape[0]


class NB201Supernet(nnx.Module):
  """The weight-sharing supernet of the NB201 space; ``model(x, arch, train=...)`` -> logits.

  Args:
    num_classes: classifier outputs.
    channels: ``C`` (16 in the benchmark).
    cells_per_stage: ``N`` (5 in the benchmark).
    in_channels: input image channels.
    phi_init_scale: ``phi ~ phi_init_scale * N(0, 1)``.
    rngs: ``nnx.Rngs`` (``params`` initialises weights and phi).
  """

  def __init__(self, *, num_classes: int, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3,
               phi_init_scale: float = 1e-3, rngs: nnx.Rngs):
    if channels < 1:
      raise ConfigError(f"model.channels must be positive, got {channels}")
    if cells_per_stage < 1:
      raise ConfigError(f"model.cells_per_stage must be >= 1, got {cells_per_stage}")
    self.edges = ArchParam(nb201.init_phi(rngs.params(), phi_init_scale)["edges"])
    self.stem_conv = ops.Conv2d(in_channels, channels, 3, padding=1, rngs=rngs)
    self.stem_bn = batchnorm.BatchNorm(channels)
    layers = []
    c = channels
    for stage in range(3):
      if stage:
        layers.append(ResidualReduction(c, 2 * c, rngs=rngs))
        c *= 2
      layers.extend(SearchCell(c, rngs=rngs) for _ in range(cells_per_stage))
    self.layers = nnx.List(layers)
    self.last_bn = batchnorm.BatchNorm(c)
    self.classifier = ops.Linear(c, num_classes, rngs=rngs)

  def _run(self, x, train, cell_fn):
    h = self.stem_bn(self.stem_conv(x), train=train)
    for layer in self.layers:
      h = cell_fn(layer, h) if isinstance(layer, SearchCell) else layer(h, train=train)
    h = jax.nn.relu(self.last_bn(h, train=train))
    return self.classifier(jnp.mean(h, axis=(1, 2)))

  def __call__(self, x: jax.Array, arch: PyTree, *, train: bool, key: jax.Array | None = None) -> jax.Array:
    del key  # no dropout
    if arch is None:
      raise ConfigError("the NB201 supernet needs an architecture sample 'arch' (one-hot z or relaxed zeta); "
                        "for a fixed cell use unas_jax.spaces.nb201.genotype_to_arch")
    check_arch(arch, x.shape[0])
    weights = arch["edges"].astype(x.dtype)
    return self._run(x, train, lambda cell, h: cell(h, weights, train=train))

  def discrete(self, x: jax.Array, cell: nb201.Cell, *, train: bool) -> jax.Array:
    """The network of one cell evaluated along its path only, with the supernet's weights."""
    return self._run(x, train, lambda c, h: c.discrete(h, cell, train=train))

  @property
  def phi(self) -> dict[str, jax.Array]:
    return {"edges": self.edges[...]}
