r"""Evaluation networks of the DARTS space, built from a genotype (docs/design.md section 7).

The networks that a found cell is trained in from scratch, as the PyTorch
reference (DARTS ``cnn/model.py`` and the UNAS variant ``darts/model.py``):

* :class:`NetworkCIFAR`: stem (3x3 conv to ``3C`` channels, BN), ``num_cells``
  cells with reduction cells (stride 2, channels doubled) at ``num_cells // 3``
  and ``2 num_cells // 3``, an auxiliary head after the second reduction cell
  (training only), global average pooling and a linear classifier.
* :class:`NetworkImageNet`: the two-conv ImageNet stem (``stem0``: conv 3x3 s2
  to ``C/2``, BN, ReLU, conv 3x3 s2 to ``C``, BN; ``stem1``: ReLU, conv 3x3 s2,
  BN), so the first cell sees a ``reduction_prev`` input pair, the ImageNet
  auxiliary head, pooling (``AvgPool2d(7)`` on the 7x7 map at 224x224, written
  as a global mean) and a linear classifier.

A cell preprocesses its two inputs to ``C`` channels (FactorizedReduce for
``s0`` after a reduction, else ReLU-conv1x1-BN) and computes, for every node
``j`` of the genotype, ``node_j = op_a(state[a]) + op_b(state[b])``; both edges
may read the same state (UNAS genotypes do) and every edge has its own op. In
a reduction cell the edges that read the cell inputs (states 0 and 1) have
stride 2. The output concatenates all intermediate nodes, so a cell of
``n`` nodes has ``n C`` output channels. Ops are those of
:mod:`unas_jax.nn.ops` with affine BatchNorm, by name, so a genotype may use
the 7-op UNAS set or the 8-op DARTS set; pools carry no BatchNorm (as in both
references' evaluation networks).

Drop-path (DARTS): in training, the output of every edge whose op is not the
identity is multiplied by ``m / keep`` with ``m ~ Bernoulli(keep)`` per example
and ``keep = 1 - drop_path``; identity edges (``skip_connect`` at stride 1) are
never dropped. At evaluation it is the identity.

Parameters and multiply-adds equal the references' for the same genotype and
settings (reference counts from PyTorch in ``tests/test_darts_network.py``; the
auxiliary head is a separate subtree ``aux_head``), and with the same weights
the outputs agree with the PyTorch UNAS networks to float32 round-off (checked
outside the repository: logits within 4e-6 relative, train and eval mode,
CIFAR and ImageNet stems). One knowing difference in the references
themselves: the UNAS ImageNet auxiliary head has a BatchNorm after its 2x2
conv, DARTS's has not (``aux_head_bn``).

Consecutive cells of one genotype cell and one shape (CIFAR, 20 cells: 2-5, 8-12 and
15-19) can run as one ``lax.scan`` each (``scan_cells=True``): the compiled program holds
one cell per run, the parameters stay one module per cell. Off by default: on this project's
CPU the 20-cell training step compiled a third faster but stepped 8-16% slower
(``experiments/results/scan_cells/``).

Multiply-adds (:func:`count_macs`) count convolutions and linear layers of the
inference network (no auxiliary head) for one image, read off the traced
program, so they count exactly what the network computes.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError
from unas_jax.nn import batchnorm, functional, ops
from unas_jax.nn import kernels as kernels_lib
from unas_jax.nn import precision
from unas_jax.spaces import darts_genotype

AUX_HEAD = "aux_head"  # the auxiliary head's subtree in ``w``
REMAT = precision.DARTS_REMAT


class KeyStream:
  """A stand-in for ``nnx.Rngs`` with a ``params()`` stream and a Python counter.

  ``nnx.Rngs`` counts its draws in a Variable; under ``nnx.eval_shape`` every
  draw writes that Variable through the slow path described in
  :meth:`unas_jax.nn.batchnorm.BatchNorm.__call__` (21 s to build the abstract CIFAR-100 network
  instead of 1.5 s). ``params()`` returns ``fold_in(key, n)`` for the n-th draw.
  """

  def __init__(self, seed: int = 0):
    self._key = jax.random.key(seed)
    self._count = 0

  def params(self) -> jax.Array:
    self._count += 1
    return jax.random.fold_in(self._key, self._count)


def drop_path(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
  r"""DARTS drop-path: ``x * m / keep``, ``m ~ Bernoulli(keep)`` per example, ``keep = 1 - rate``."""
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  # The (possibly traced float32) rate must not promote a 16-bit x to float32.
  return x * (mask / keep).astype(x.dtype)


def _drop_path_active(train: bool, rate: float | jax.Array, key: jax.Array | None) -> bool:
  """Whether drop-path runs: training with a rate that is traced or positive."""
  if not train:
    return False
  if isinstance(rate, (int, float)) and not isinstance(rate, bool):
    if not 0.0 <= rate < 1.0:
      raise ConfigError(f"drop_path={rate} must lie in [0, 1)")
    if rate == 0.0:
      return False
  if key is None:
    raise ConfigError("drop-path in training needs a PRNG key: call the network with key=...")
  return True


class Cell(nnx.Module):
  """One evaluation cell: ``node_j = op_a(state[a]) + op_b(state[b])``, output = concat(nodes)."""

  def __init__(self, nodes: Sequence[darts_genotype.Node], c_prev_prev: int, c_prev: int, channels: int, *,
               reduction: bool, reduction_prev: bool, depthwise_impl: str = "auto", rngs: nnx.Rngs):
    if reduction_prev:
      self.preprocess0 = ops.FactorizedReduce(c_prev_prev, channels, affine=True, rngs=rngs)
    else:
      self.preprocess0 = ops.ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=True, rngs=rngs)
    self.preprocess1 = ops.ReLUConvBN(c_prev, channels, 1, 1, 0, affine=True, rngs=rngs)
    self.reduction = reduction
    self.inputs = tuple(tuple(int(i) for i in node.inputs) for node in nodes)
    self.op_names = tuple(tuple(node.ops) for node in nodes)
    edges = []
    for node in nodes:
      for i, name in zip(node.inputs, node.ops):
        stride = 2 if reduction and i < 2 else 1
        edges.append(ops.make_op(name, channels, stride, True, rngs=rngs, depthwise_impl=depthwise_impl))
    self.edges = nnx.List(edges)  # node j's two edges are 2j and 2j + 1
    self.multiplier = len(nodes)

  def __call__(self, s0: jax.Array, s1: jax.Array, *, train: bool, key: jax.Array | None = None,
               drop_path_rate: float | jax.Array = 0.0) -> jax.Array:
    use_drop = _drop_path_active(train, drop_path_rate, key)
    states = [self.preprocess0(s0, train=train), self.preprocess1(s1, train=train)]
    for j, inputs in enumerate(self.inputs):
      node = None
      for side, i in enumerate(inputs):
        edge = self.edges[2 * j + side]
        h = edge(states[i], train=train)
        if use_drop and not isinstance(edge, ops.Identity):
          h = drop_path(h, drop_path_rate, jax.random.fold_in(key, 2 * j + side))
        node = h if node is None else node + h
      states.append(node)
    return jnp.concatenate(states[2:], axis=-1)


class AuxiliaryHead(nnx.Module):
  """DARTS auxiliary head: ReLU, AvgPool 5 (stride 3 on CIFAR, 2 on ImageNet), conv 1x1 to 128,
  BN, ReLU, conv 2x2 to 768, [BN], ReLU, linear.

  The linear layer reads 768 features, so the map after the 2x2 conv must be
  1x1, as in the reference (8x8 input on CIFAR, 7x7 on ImageNet at 224).
  """

  def __init__(self, channels: int, num_classes: int, *, pool_stride: int, bn_768: bool = True,
               rngs: nnx.Rngs):
    self.pool_stride = pool_stride
    self.conv1 = ops.Conv2d(channels, 128, 1, rngs=rngs)
    self.bn1 = batchnorm.BatchNorm(128, affine=True)
    self.conv2 = ops.Conv2d(128, 768, 2, rngs=rngs)
    self.bn2 = batchnorm.BatchNorm(768, affine=True) if bn_768 else None
    self.classifier = ops.Linear(768, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    h, w = x.shape[1:3]
    out_h, out_w = (h - 5) // self.pool_stride + 1 - 1, (w - 5) // self.pool_stride + 1 - 1
    if h < 5 or w < 5 or (out_h, out_w) != (1, 1):
      raise ConfigError(f"the auxiliary head needs an {'8x8' if self.pool_stride == 3 else '7x7'} feature map at "
                        f"2/3 depth, got {h}x{w} (input {'32x32' if self.pool_stride == 3 else '224x224'} "
                        "expected); set --config.model.auxiliary=False or change data.image_size")
    x = ops.avg_pool(jax.nn.relu(x), 5, self.pool_stride, 0, count_include_pad=False)
    x = jax.nn.relu(self.bn1(self.conv1(x), train=train))
    x = self.conv2(x)
    if self.bn2 is not None:
      x = self.bn2(x, train=train)
    x = jax.nn.relu(x)
    return self.classifier(x.reshape(x.shape[0], -1))


def _reduction_indices(num_cells: int) -> tuple[int, int]:
  return num_cells // 3, 2 * num_cells // 3


def _check_settings(genotype: darts_genotype.Genotype | str, num_classes: int, channels: int, num_cells: int
                    ) -> darts_genotype.Genotype:
  genotype = darts_genotype.get_genotype(genotype)
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ConfigError(f"num_classes={num_classes!r} must be a positive integer")
  if not isinstance(channels, (int, np.integer)) or channels < 1:
    raise ConfigError(f"channels={channels!r} must be a positive integer")
  if not isinstance(num_cells, (int, np.integer)) or num_cells < 3:
    raise ConfigError(f"num_cells={num_cells!r} must be an integer >= 3 (two of them are reduction cells)")
  return genotype


class _DartsNetwork(nnx.Module):
  """Cells, auxiliary head and classifier shared by the CIFAR and ImageNet networks.

  ``kernels`` (:mod:`unas_jax.nn.kernels`), compute ``dtype`` and ``remat``
  (``none`` | ``cell``, :mod:`unas_jax.nn.precision`) as the search supernet's:
  the stems, cells and heads run in the compute dtype, the classifiers read
  float32 features and both logits are float32.
  """

  def __call__(self, x: jax.Array, arch: Any = None, *, train: bool, key: jax.Array | None = None,
               drop_path: float | jax.Array = 0.0) -> tuple[jax.Array, jax.Array | None]:
    """``(logits, aux_logits or None)``: the network's stem (``_stem``: the two first states) then its cells."""
    del arch
    with kernels_lib.use(self.kernels):
      s0, s1 = self._stem(x.astype(self.compute_dtype), train=train)
      return self._run_cells(s0, s1, train=train, key=key, drop_path_rate=drop_path)

  def _set_compute(self, kernels: str, dtype: Any, remat: str, scan_cells: bool) -> None:
    self.kernels = kernels_lib.check(kernels)
    self.compute_dtype = precision.compute_dtype(dtype)
    self.remat = precision.check_remat(remat, REMAT)
    if not isinstance(scan_cells, bool):
      raise ConfigError(f"scan_cells={scan_cells!r} must be True or False")
    self.scan_cells = scan_cells

  def _call_cell(self, cell, s0, s1, *, train, key, drop_path_rate):
    if self.remat == "none":
      return cell(s0, s1, train=train, key=key, drop_path_rate=drop_path_rate)
    run = lambda cell, s0, s1, key, rate: cell(s0, s1, train=train, key=key, drop_path_rate=rate)
    return nnx.remat(run, policy=precision.remat_policy(self.remat))(cell, s0, s1, key, drop_path_rate)

  def _build_cells(self, genotype: darts_genotype.Genotype, c_prev_prev: int, c_prev: int, channels: int,
                   num_cells: int, reduction_prev: bool, depthwise_impl: str, rngs: nnx.Rngs) -> tuple[int, int]:
    reductions = _reduction_indices(num_cells)
    c_curr = channels
    cells = []
    self.aux_index = reductions[1]
    c_aux = None
    repeats = []  # per cell: whether it maps a pair of states to a third of their shape
    for i in range(num_cells):
      reduction = i in reductions
      if reduction:
        c_curr *= 2
      cell = Cell(genotype.reduce if reduction else genotype.normal, c_prev_prev, c_prev, c_curr,
                  reduction=reduction, reduction_prev=reduction_prev, depthwise_impl=depthwise_impl, rngs=rngs)
      cells.append(cell)
      repeats.append(not reduction and not reduction_prev and c_prev_prev == c_prev == cell.multiplier * c_curr)
      reduction_prev = reduction
      c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
      if i == self.aux_index:
        c_aux = c_prev
    self.cells = nnx.List(cells)
    self.cell_runs = _cell_runs(repeats, self.aux_index)
    return c_prev, c_aux

  def _run_cells(self, s0, s1, *, train, key, drop_path_rate):
    aux_logits = None
    runs = self.cell_runs if self.scan_cells else tuple((i, i + 1) for i in range(len(self.cells)))
    for start, stop in runs:
      if stop - start > 1:
        s0, s1 = self._scan_cells(start, stop, s0, s1, train=train, key=key, drop_path_rate=drop_path_rate)
      else:
        cell_key = None if key is None else jax.random.fold_in(key, start)
        s0, s1 = s1, self._call_cell(self.cells[start], s0, s1, train=train, key=cell_key,
                                     drop_path_rate=drop_path_rate)
      if stop - 1 == self.aux_index and train and self.aux_head is not None:
        aux_logits = precision.to_float32(self.aux_head(s1, train=train))
    logits = self.classifier(jnp.mean(precision.to_float32(s1), axis=(1, 2)))
    return logits, aux_logits

  def _scan_cells(self, start, stop, s0, s1, *, train, key, drop_path_rate):
    r"""Cells ``start .. stop-1`` (a run of :func:`_cell_runs`) as one ``lax.scan``.

    ``(s0, s1) <- (s1, cell_i(s0, s1))`` for each cell of the run: the same
    arithmetic and drop-path keys (``fold_in(key, i)``) as the unrolled loop,
    with one cell in the compiled program instead of ``stop - start`` (the cells
    of a run have the same graph and shapes). The cells' variables are stacked
    for the scan and their BatchNorm statistics written back after it
    (:func:`unas_jax.nn.functional.scan_modules`); the parameters stay one module per cell.
    """
    def run(cell, carry, i):
      s0, s1 = carry
      cell_key = None if key is None else jax.random.fold_in(key, i)
      return s1, self._call_cell(cell, s0, s1, train=train, key=cell_key, drop_path_rate=drop_path_rate)

    return functional.scan_modules([self.cells[i] for i in range(start, stop)], run, (s0, s1),
                                   jnp.arange(start, stop), update_stats=train)


def _cell_runs(repeats: Sequence[bool], aux_index: int) -> tuple[tuple[int, int], ...]:
  """The network's cells as ``(start, stop)`` ranges, in order; a range of two or more is a scan.

  A run is consecutive cells that each map a pair of states of one shape to a
  third of that shape (``repeats[i]``: normal, not after a reduction, input and
  output channels equal), built from the same genotype cell: on CIFAR (20
  cells) cells 2-5, 8-12 and 15-19. The auxiliary head reads the state after
  ``aux_index``, so a run ends there.
  """
  runs, start = [], 0
  for i in range(1, len(repeats) + 1):
    if i == len(repeats) or not (repeats[i] and repeats[i - 1]) or i - 1 == aux_index:
      runs.append((start, i))
      start = i
  return tuple(runs)


class NetworkCIFAR(_DartsNetwork):
  """DARTS's ``NetworkCIFAR`` for a genotype (see the module docstring).

  Call: ``model(x, arch=None, *, train, key=None, drop_path=0.0) -> (logits, aux_logits)``,
  ``x`` NHWC; ``aux_logits`` is None unless training with the auxiliary head;
  ``key`` feeds drop-path; ``arch`` is ignored (evaluation networks have no phi).
  """

  def __init__(self, genotype: darts_genotype.Genotype | str, *, num_classes: int, channels: int,
               num_cells: int, auxiliary: bool = True, in_channels: int = 3, stem_multiplier: int = 3,
               depthwise_impl: str = "auto", kernels: str = "auto", dtype: Any = "float32", remat: str = "none",
               scan_cells: bool = False, rngs: nnx.Rngs):
    genotype = _check_settings(genotype, num_classes, channels, num_cells)
    self._set_compute(kernels, dtype, remat, scan_cells)
    c_stem = stem_multiplier * channels
    self.stem_conv = ops.Conv2d(in_channels, c_stem, 3, padding=1, rngs=rngs)
    self.stem_bn = batchnorm.BatchNorm(c_stem, affine=True)
    c_prev, c_aux = self._build_cells(genotype, c_stem, c_stem, channels, num_cells, False, depthwise_impl, rngs)
    self.aux_head = (AuxiliaryHead(c_aux, num_classes, pool_stride=3, bn_768=True, rngs=rngs)
                     if auxiliary else None)
    self.classifier = ops.Linear(c_prev, num_classes, rngs=rngs)

  def _stem(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    s = self.stem_bn(self.stem_conv(x), train=train)
    return s, s


class NetworkImageNet(_DartsNetwork):
  """DARTS's ``NetworkImageNet`` for a genotype (see the module docstring).

  ``aux_head_bn``: BatchNorm after the auxiliary head's 2x2 conv (UNAS's
  ``AuxiliaryHeadImageNet(bn=True)``, its default; DARTS's has none). Call
  convention as :class:`NetworkCIFAR`.
  """

  def __init__(self, genotype: darts_genotype.Genotype | str, *, num_classes: int, channels: int,
               num_cells: int, auxiliary: bool = True, in_channels: int = 3, aux_head_bn: bool = True,
               depthwise_impl: str = "auto", kernels: str = "auto", dtype: Any = "float32", remat: str = "none",
               scan_cells: bool = False, rngs: nnx.Rngs):
    genotype = _check_settings(genotype, num_classes, channels, num_cells)
    self._set_compute(kernels, dtype, remat, scan_cells)
    if channels % 2:
      raise ConfigError(f"the ImageNet stem needs an even number of channels, got {channels}")
    self.stem0_conv1 = ops.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, rngs=rngs)
    self.stem0_bn1 = batchnorm.BatchNorm(channels // 2, affine=True)
    self.stem0_conv2 = ops.Conv2d(channels // 2, channels, 3, stride=2, padding=1, rngs=rngs)
    self.stem0_bn2 = batchnorm.BatchNorm(channels, affine=True)
    self.stem1_conv = ops.Conv2d(channels, channels, 3, stride=2, padding=1, rngs=rngs)
    self.stem1_bn = batchnorm.BatchNorm(channels, affine=True)
    c_prev, c_aux = self._build_cells(genotype, channels, channels, channels, num_cells, True, depthwise_impl,
                                      rngs)
    self.aux_head = (AuxiliaryHead(c_aux, num_classes, pool_stride=2, bn_768=aux_head_bn, rngs=rngs)
                     if auxiliary else None)
    self.classifier = ops.Linear(c_prev, num_classes, rngs=rngs)

  def _stem(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    s0 = self.stem0_bn1(self.stem0_conv1(x), train=train)
    s0 = self.stem0_bn2(self.stem0_conv2(jax.nn.relu(s0)), train=train)
    return s0, self.stem1_bn(self.stem1_conv(jax.nn.relu(s0)), train=train)


def build(genotype: darts_genotype.Genotype | str, *, network: str = "cifar", num_classes: int,
          channels: int, num_cells: int, auxiliary: bool = True, in_channels: int = 3,
          aux_head_bn: bool = True, depthwise_impl: str = "auto", kernels: str = "auto", dtype: Any = "float32",
          remat: str = "none", scan_cells: bool = False, rngs: nnx.Rngs) -> _DartsNetwork:
  """``NetworkCIFAR`` (``network='cifar'``) or ``NetworkImageNet`` (``'imagenet'``) with ``channels``
  initial channels and ``num_cells`` cells (the published sizes: ``unas_jax.evaluation.defaults.DARTS_SIZES``)."""
  check_choice("network", network, ("cifar", "imagenet"))
  compute = dict(depthwise_impl=depthwise_impl, kernels=kernels, dtype=dtype, remat=remat, scan_cells=scan_cells)
  if network == "cifar":
    return NetworkCIFAR(genotype, num_classes=num_classes, channels=channels, num_cells=num_cells,
                        auxiliary=auxiliary, in_channels=in_channels, rngs=rngs, **compute)
  return NetworkImageNet(genotype, num_classes=num_classes, channels=channels, num_cells=num_cells,
                         auxiliary=auxiliary, in_channels=in_channels, aux_head_bn=aux_head_bn, rngs=rngs,
                         **compute)


def abstract(genotype: darts_genotype.Genotype | str, **kwargs) -> _DartsNetwork:
  """The network with abstract (shape-only) variables: no memory, no compute (``nnx.eval_shape``)."""
  return nnx.eval_shape(lambda: build(genotype, rngs=KeyStream(0), **kwargs))


# --------------------------------------------------------------------------- #
# Counting.
# --------------------------------------------------------------------------- #


def is_aux(path: Sequence[Any]) -> bool:
  """Whether a ``w`` path (tuple of keys) belongs to the auxiliary head."""
  return len(path) > 0 and path[0] == AUX_HEAD


def count_params(model: nnx.Module, *, with_aux: bool = True) -> int:
  """Trainable parameters (``nnx.Param`` entries), optionally without the auxiliary head."""
  return functional.count_params(nnx.state(model, nnx.Param).to_pure_dict(), None if with_aux else is_aux)


def _sub_jaxprs(eqn) -> list[tuple[Any, int]]:
  """Sub-programs of an equation with the number of times each runs."""
  times = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
  out = []
  for value in eqn.params.values():
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        out.append((v.jaxpr, times))
      elif isinstance(v, jax.extend.core.Jaxpr):
        out.append((v, times))
  return out


def jaxpr_macs(jaxpr) -> int:
  """Multiply-adds of the convolutions and matrix products of a jaxpr (recursing into calls).

  ``conv_general_dilated``: ``|output| * (kernel input features) * (kernel window)``
  (grouped convolutions have ``C_in / groups`` kernel input features);
  ``dot_general``: ``|output| * (contracted size)``.
  """
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
      window = math.prod(rhs[d] for d in rhs_spec[2:])
      total += math.prod(eqn.outvars[0].aval.shape) * rhs[rhs_spec[1]] * window
    elif name == "dot_general":
      (contract_lhs, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract_lhs)
    for sub, times in _sub_jaxprs(eqn):
      total += times * jaxpr_macs(sub)
  return total


def count_macs(model: nnx.Module, image_shape: Sequence[int]) -> int:
  """Multiply-adds of one ``image_shape = (H, W, C)`` image through the inference network.

  Traces ``model(x, train=False)`` abstractly (no compute) and counts
  convolutions and linear layers (:func:`jaxpr_macs`). The model must be built
  with ``depthwise_impl='xla'`` so that depthwise convolutions appear as
  convolutions (the CPU ``slices`` form is a sum of products); see
  :func:`network_macs`.
  """
  graphdef, state = nnx.split(model)

  def forward(state, x):
    out = nnx.merge(graphdef, state)(x, train=False)
    return out[0] if isinstance(out, tuple) else out

  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  abstract_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
  return jaxpr_macs(jax.make_jaxpr(forward)(abstract_state, x).jaxpr)


def network_macs(genotype: darts_genotype.Genotype | str, image_shape: Sequence[int], **kwargs) -> int:
  """Multiply-adds of the network ``build(genotype, **kwargs)`` for one image (no auxiliary head)."""
  kwargs = dict(kwargs, auxiliary=False, depthwise_impl="xla", in_channels=int(image_shape[-1]))
  return count_macs(abstract(genotype, **kwargs), image_shape)

