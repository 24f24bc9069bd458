r"""The DARTS-space search supernet in Flax NNX (docs/design.md sections 4-6).

Network (as the UNAS reference's search ``Network``): a stem (3x3 conv to
``stem_multiplier * C`` channels + BatchNorm), ``num_cells`` cells with
reduction cells (stride 2, channels doubled) at ``num_cells // 3`` and
``2 * num_cells // 3``, global average pooling and a linear classifier. A cell
preprocesses its inputs (FactorizedReduce after a reduction cell, else
ReLU-1x1conv-BN, to ``C`` channels) and computes, for each node ``j``,

    node_j = sum_i sum_k W_j[s, i, k] * op_k(state_i)

with the factorised edge weights ``W_j`` of :func:`unas_jax.spaces.darts.edge_weights`
(sample ``s`` is example ``s`` when ``S == batch``, the whole batch when
``S == 1``). Every (input ``i``, node ``j``) edge has its own op instances, as
in DARTS; BatchNorm inside ops has no affine parameters; pools carry no
BatchNorm (the UNAS reference disabled DARTS's pool-BN). The cell's output
concatenates its nodes. ``phi`` is held in ``ArchParam`` variables and is not
read by the forward pass: it takes the sample ``arch`` as an argument
(one-hot ``z`` or relaxed ``zeta``), so ``jax.grad`` w.r.t. ``arch`` reaches phi
through the estimator's reparameterisation.

Speed on CPU (the evaluation of all ops of all edges for per-example
architectures is the cost of a search step): the cell evaluates the edges that
read the same state together. The ``E`` edges leaving a state are ``E`` blocks
of channels side by side (``[N, H, W, E*C]``), their depthwise kernels
concatenated, their pointwise kernels one block-diagonal matrix, their
BatchNorms one BatchNorm over ``E*C`` channels; parameter-free ops (identity,
pools) are computed once per state instead of once per edge. Within a group
all sep/dil convs run in two stages (:func:`_conv_stages`), so a group is a
handful of large XLA kernels. States 0 and 1
are available at once, so a cell runs 4 such groups instead of 14 edges. The
parameters stay one module per edge and op (the reference's layout), so the
same modules evaluate a discrete cell directly (:meth:`SearchCell.discrete`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
from chex import ArrayTree as PyTree

from unas_jax.errors import ConfigError
from unas_jax.nn import batchnorm
from unas_jax.nn import fast_grad
from unas_jax.nn import kernels as kernels_lib
from unas_jax.nn import ops
from unas_jax.nn import precision
from unas_jax.nn.functional import ArchParam
from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype


MODES = ("batched", "reference")
REMAT = precision.DARTS_REMAT


def _concat_kernels(kernels: Sequence[jax.Array]) -> jax.Array:
  """Depthwise kernels ``[k, k, 1, C]`` of E edges -> ``[k, k, 1, E*C]``."""
  return kernels[0] if len(kernels) == 1 else jnp.concatenate(kernels, axis=-1)


def _stack_pointwise(kernels: Sequence[jax.Array]) -> jax.Array:
  """1x1 kernels ``[1, 1, C, D]`` of E edges -> ``[E, C, D]``."""
  return jnp.stack([k[0, 0] for k in kernels])


def _batched_bn(bns: Sequence[batchnorm.BatchNorm], y: jax.Array, *, train: bool) -> jax.Array:
  """The BatchNorms of E edges as one BatchNorm over ``[..., E*C]``; writes the statistics back."""
  bn0 = bns[0]
  cat = lambda xs: xs[0] if len(xs) == 1 else jnp.concatenate(xs)
  mean = cat([b.mean[...] for b in bns])
  var = cat([b.var[...] for b in bns])
  scale = bias = None
  if bn0.affine:
    scale = cat([b.scale[...] for b in bns])
    bias = cat([b.bias[...] for b in bns])
  y, new_mean, new_var = batchnorm.batch_norm(y, mean, var, scale, bias, train=train, momentum=bn0.momentum,
                                              epsilon=bn0.epsilon, axis_name=bn0.axis_name, folded=bn0.folded,
                                              dtype=bn0.dtype)
  if train:
    c = bn0.num_features
    # .value, not [...] =: indexed assignment makes flax probe the tracer's sharding,
    # which builds an error message walking the whole trace (quadratic tracing time).
    if len(bns) == 1:
      bns[0].mean.value, bns[0].var.value = new_mean, new_var
    else:
      for b, m, v in zip(bns, jax.lax.split(new_mean, [c] * len(bns)), jax.lax.split(new_var, [c] * len(bns))):
        b.mean.value, b.var.value = m, v
  return y


def _conv_stages(sep_mods: Sequence[Sequence[ops.SepConv]], dil_mods: Sequence[Sequence[ops.DilConv]],
                 x: jax.Array, *, train: bool) -> jax.Array:
  """All separable and dilated convs of a group of edges, in two stages.

  ``sep_mods[o][e]``: the module of sep op ``o`` on edge ``e`` (likewise
  ``dil_mods``); ``x``: the edges' inputs side by side, ``[N, H, W, E*C]``.

  Stage 1 (every op reads ``relu(x)``): the first depthwise conv of each sep op
  and the depthwise conv of each dil op in one call, then one block-diagonal
  1x1 conv and one BatchNorm over all ``(op, edge)`` blocks. Stage 2 (sep ops
  only): the second depthwise convs, 1x1 convs and BatchNorms, batched the same
  way. The same arithmetic as the ops' own ``__call__``, in a few large XLA
  kernels instead of many small ones (XLA:CPU compile time grows with their
  number).

  Returns:
    ``[N, H', W', (n_sep + n_dil) * E * C]``: sep ops, then dil ops, each
    ``E`` blocks of ``C`` channels.
  """
  first = [[m.dw1 for m in ms] for ms in sep_mods] + [[m.dw for m in ms] for ms in dil_mods]
  pw1 = [[m.pw1 for m in ms] for ms in sep_mods] + [[m.pw for m in ms] for ms in dil_mods]
  bn1 = [[m.bn1 for m in ms] for ms in sep_mods] + [[m.bn for m in ms] for ms in dil_mods]
  flat = lambda nested: [m for ms in nested for m in ms]
  impl = first[0][0].impl
  y = precision.conv_out(fast_grad.depthwise_conv_multi(
      jax.nn.relu(x), [_concat_kernels([d.kernel[...] for d in ds]).astype(x.dtype) for ds in first],
      [(ds[0].stride, ds[0].dilation, ds[0].padding) for ds in first], shared_input=True, impl=impl))
  y = ops.pointwise_conv(y, _stack_pointwise([p.kernel[...] for p in flat(pw1)]))
  y = _batched_bn(flat(bn1), y, train=train)
  if not sep_mods:
    return y
  n_sep_ch = len(sep_mods) * x.shape[-1]
  if dil_mods:
    y_sep, y_dil = jax.lax.split(y, [n_sep_ch, y.shape[-1] - n_sep_ch], axis=-1)
  else:
    y_sep, y_dil = y, None
  second = [[m.dw2 for m in ms] for ms in sep_mods]
  z = precision.conv_out(fast_grad.depthwise_conv_multi(
      jax.nn.relu(y_sep), [_concat_kernels([d.kernel[...] for d in ds]).astype(x.dtype) for ds in second],
      [(1, ds[0].dilation, ds[0].padding) for ds in second], shared_input=False, impl=impl))
  z = ops.pointwise_conv(z, _stack_pointwise([m.pw2.kernel[...] for m in flat(sep_mods)]))
  z = _batched_bn([m.bn2 for m in flat(sep_mods)], z, train=train)
  return z if y_dil is None else jnp.concatenate([z, y_dil], axis=-1)


def _batched_factorized_reduce(mods: Sequence[ops.FactorizedReduce], x: jax.Array, *,
                               train: bool) -> jax.Array:
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ConfigError(f"a reduction cell needs an even height and width, got {x.shape[1]}x{x.shape[2]}; "
                      "use an input resolution divisible by 4")
  y = ops.factorized_reduce(x, _stack_pointwise([o.conv_1.kernel[...] for o in mods]),
                            _stack_pointwise([o.conv_2.kernel[...] for o in mods]))
  return _batched_bn([o.bn for o in mods], y, train=train)


class MixedEdge(nnx.Module):
  """The op instances of one edge (state ``i`` -> node ``j``), as DARTS's ``MixedOp``.

  ``ops[name]`` is the module of op ``name`` (:func:`unas_jax.nn.ops.make_op`,
  ``affine=False``); calling the edge evaluates ``sum_k w[s, k] op_k(x)`` op by
  op (the reference path; the cell normally evaluates edges in groups).
  """

  def __init__(self, op_names: Sequence[str], channels: int, stride: int, *, depthwise_impl: str,
               rngs: nnx.Rngs):
    self.op_names = tuple(op_names)
    self.stride = stride
    self.ops = nnx.Dict({name: ops.make_op(name, channels, stride, affine=False, rngs=rngs,
                                           depthwise_impl=depthwise_impl) for name in op_names})

  def __call__(self, x: jax.Array, weights: jax.Array, *, train: bool) -> jax.Array:
    """``weights``: ``[S, K]``; returns ``sum_k weights[:, k] * op_k(x)``."""
    out = 0.0
    for k, name in enumerate(self.op_names):
      if name == "none":
        continue
      out = out + weights[:, k, None, None, None] * self.ops[name](x, train=train)
    if isinstance(out, float):  # every op is 'none'
      out = self.ops[self.op_names[0]](x, train=train)
    return out


def _is_shared(module: nnx.Module) -> bool:
  """Parameter-free ops give the same output on every edge leaving a state."""
  return isinstance(module, (ops.Identity, ops.MaxPool, ops.AvgPool))


class SearchCell(nnx.Module):
  """One supernet cell: preprocessing, and a :class:`MixedEdge` for every (state i, node j)."""

  def __init__(self, space: darts.DartsSpace, c_prev_prev: int, c_prev: int, channels: int, *,
               reduction: bool, reduction_prev: bool, depthwise_impl: str = "auto", rngs: nnx.Rngs):
    self.space = space
    self.reduction = reduction
    self.channels = channels
    if reduction_prev:
      self.preprocess0 = ops.FactorizedReduce(c_prev_prev, channels, affine=False, rngs=rngs)
    else:
      self.preprocess0 = ops.ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False, rngs=rngs)
    self.preprocess1 = ops.ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False, rngs=rngs)
    # edges[j][i]: state i -> node j; stride 2 on the cell inputs of a reduction cell.
    self.edges = nnx.List([
        nnx.List([MixedEdge(space.op_names, channels, 2 if reduction and i < 2 else 1,
                            depthwise_impl=depthwise_impl, rngs=rngs) for i in range(space.num_inputs(j))])
        for j in range(space.num_nodes)])

  def _preprocess(self, s0, s1, train):
    return self.preprocess0(s0, train=train), self.preprocess1(s1, train=train)

  def __call__(self, s0: jax.Array, s1: jax.Array, weights: Sequence[jax.Array], *, train: bool,
               mode: str = "batched") -> jax.Array:
    """Mixed cell: ``weights[j]`` is ``[S, j + 2, K]`` (:func:`unas_jax.spaces.darts.edge_weights`)."""
    s0, s1 = self._preprocess(s0, s1, train)
    if mode == "reference":
      return self._reference(s0, s1, weights, train)
    return self._batched(s0, s1, weights, train)

  def _reference(self, s0, s1, weights, train):
    states = [s0, s1]
    for j in range(self.space.num_nodes):
      states.append(sum(self.edges[j][i](h, weights[j][:, i], train=train) for i, h in enumerate(states)))
    return jnp.concatenate(states[2:], axis=-1)

  def _batched(self, s0, s1, weights, train):
    n = self.space.num_nodes
    states = [s0, s1]
    acc: list[Any] = [0.0] * n
    # Groups of states evaluated together: {0, 1}, then each new node.
    for group in [[0, 1]] + [[i] for i in range(2, n + 1)]:
      self._add_group(states, group, weights, acc, train)
      node = acc[group[-1] - 1]  # node group[-1] - 1 has read all its inputs
      if isinstance(node, float):  # an op set of 'none' only
        node = ops.Zero(2 if self.reduction else 1)(s1)
      states.append(node)
    return jnp.concatenate(states[2:], axis=-1)

  def _add_group(self, states, group, weights, acc, train):
    """Adds to ``acc[j]`` the mixed output of every edge leaving a state of ``group``."""
    n = self.space.num_nodes
    c = self.channels
    edges = [(i, j) for i in group for j in range(max(0, i - 1), n)]
    x = jnp.concatenate([states[i] for i, _ in edges], axis=-1) if len(edges) > 1 else states[edges[0][0]]
    mods = {name: [self.edges[j][i].ops[name] for i, j in edges] for name in self.space.op_names}
    seps = [k for k, name in enumerate(self.space.op_names) if isinstance(mods[name][0], ops.SepConv)]
    dils = [k for k, name in enumerate(self.space.op_names) if isinstance(mods[name][0], ops.DilConv)]
    reds = [k for k, name in enumerate(self.space.op_names) if isinstance(mods[name][0], ops.FactorizedReduce)]
    name_of = self.space.op_names
    outputs, order = [], []
    if seps or dils:
      outputs.append(_conv_stages([mods[name_of[k]] for k in seps], [mods[name_of[k]] for k in dils], x,
                                  train=train))
      order += seps + dils
    for k in reds:
      outputs.append(_batched_factorized_reduce(mods[name_of[k]], x, train=train))
      order.append(k)
    if order:
      # mixed[..., e, :] = sum_o W_{j(e)}[s, i(e), order[o]] * out[..., o, e, :]
      # (a sum of K' products, one loop; a reduction over the op axis is slow on XLA:CPU)
      y = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
      ys = jax.lax.split(y, [len(edges) * c] * len(order), axis=-1) if len(order) > 1 else [y]
      mixed = 0.0
      for k, yk in zip(order, ys):
        wk = jnp.stack([weights[j][:, i, k] for i, j in edges], axis=-1)  # [S, E]
        mixed = mixed + jnp.repeat(wk, c, axis=-1)[:, None, None, :] * yk
      # lax.split, not slicing: its transpose is one concatenate, where the
      # transposes of E slices are E full-size pads that XLA:CPU adds up slowly.
      blocks = jax.lax.split(mixed, [c] * len(edges), axis=-1) if len(edges) > 1 else [mixed]
      for (_, j), block in zip(edges, blocks):
        acc[j] = acc[j] + block
    # Parameter-free ops give the same output on every edge leaving a state.
    for k, name in enumerate(name_of):
      if not _is_shared(mods[name][0]):
        continue
      for i in group:
        y = mods[name][0](states[i], train=train)
        for j in range(max(0, i - 1), n):
          acc[j] = acc[j] + weights[j][:, i, k, None, None, None] * y

  def discrete(self, s0: jax.Array, s1: jax.Array, nodes: Sequence[darts_genotype.Node], *,
               train: bool) -> jax.Array:
    """The discrete cell of a genotype, evaluated with this cell's own op modules.

    ``node_j = edges[j][a].ops[op_a](state_a) + edges[j][b].ops[op_b](state_b)``:
    only the genotype's path runs. With the same weights and a one-hot sample
    of this genotype the mixed cell gives the same output.
    """
    if len(nodes) != self.space.num_nodes:
      raise ConfigError(f"the genotype cell has {len(nodes)} nodes; this supernet has {self.space.num_nodes}")
    s0, s1 = self._preprocess(s0, s1, train)
    states = [s0, s1]
    for j, node in enumerate(nodes):
      out = 0.0
      for i, name in zip(node.inputs, node.ops):
        if name not in self.space.op_names:
          raise ConfigError(f"op {name!r} is not in this supernet's op set {list(self.space.op_names)}")
        out = out + self.edges[j][i].ops[name](states[i], train=train)
      states.append(out)
    return jnp.concatenate(states[2:], axis=-1)


def check_arch(arch: PyTree, space: darts.DartsSpace, batch_size: int) -> int:
  """Checks that ``arch`` has ``phi``'s structure with a leading axis ``S`` in {1, batch}; returns S.

  Raises:
    ConfigError: missing leaves or wrong shapes.
  """
  if not isinstance(arch, Mapping) or any(not isinstance(arch.get(t), Mapping) for t in darts.CELL_TYPES):
    raise ConfigError("arch must be {'normal': {...}, 'reduce': {...}} with phi's leaves and a leading "
                      "sample axis; see unas_jax.spaces.darts")
  sizes = set()
  for cell_type, shapes in space.phi_shapes().items():
    for leaf, shape in shapes.items():
      a = arch[cell_type].get(leaf)
      if a is None or tuple(a.shape[1:]) != shape or a.ndim != len(shape) + 1:
        raise ConfigError(f"arch[{cell_type!r}][{leaf!r}] has shape {None if a is None else tuple(a.shape)}, "
                          f"expected [S, {', '.join(map(str, shape))}] with S = 1 or the batch size")
      sizes.add(a.shape[0])
  if len(sizes) != 1 or next(iter(sizes)) not in (1, batch_size):
    raise ConfigError(f"arch's sample axis is {sorted(sizes)}; it must be 1 (one architecture for the "
                      f"batch) or the batch size {batch_size} (one per example), the same for every leaf")
  return sizes.pop()


def check_input_resolution(height: int, width: int, stem: str) -> None:
  """Fails unless every FactorizedReduce of the supernet halves an even height and width.

  The cifar stem keeps ``H``, and the two reduction cells halve it: ``H % 4 == 0``. The
  imagenet stem's two stride-2 convs give ``s0`` at ``ceil(ceil(H/2)/2) = ceil(H/4)``, which
  cell 0 halves for ``s1`` before the two reductions: ``s0 % 8 == 0``. Called by the supernet
  before any work and by the search at start-up (``data.image_size``).

  Raises:
    ConfigError: naming the sizes that work.
  """
  for size in (height, width):
    if stem == "cifar":
      ok, hint = size % 4 == 0, "divisible by 4 (two reduction cells)"
    else:
      s0 = -(-size // 4)  # ceil(ceil(H/2)/2) = ceil(H/4)
      ok, hint = s0 % 8 == 0, "divisible by 32 (the imagenet stem's three stride-2 convs and two reduction cells)"
    if not ok:
      raise ConfigError(f"the supernet cannot take a {height}x{width} input: use a height and width {hint}")


class DartsSupernet(nnx.Module):
  """The weight-sharing supernet of the DARTS space; ``model(x, arch, train=...)`` -> logits.

  Args:
    space: the search space (op set, nodes per cell).
    num_classes: classifier outputs.
    channels: ``C``, channels of the first cells (doubled at each reduction).
    num_cells: cells; reduction at ``num_cells // 3`` and ``2 * num_cells // 3``.
    in_channels: input image channels.
    stem_multiplier: the stem outputs ``stem_multiplier * C`` channels.
    stem: ``'cifar'`` (3x3 conv + BN, full resolution) or ``'imagenet'`` (the
      reference's ImageNet search stem: three stride-2 3x3 convs, cells then
      start at ``stem_multiplier * C`` channels, as in the UNAS code).
    depthwise_impl: ``auto`` | ``slices`` | ``xla`` (unas_jax/nn/depthwise.py).
    phi_init_scale: ``phi ~ phi_init_scale * N(0, 1)`` (0: uniform).
    kernels: ``auto`` | ``cpu`` | ``xla`` (:mod:`unas_jax.nn.kernels`), entered around the forward pass.
    dtype: compute dtype, ``float32`` | ``bfloat16`` | ``float16`` (:mod:`unas_jax.nn.precision`);
      phi, w, BatchNorm statistics and the logits stay float32.
    remat: ``none`` | ``cell`` | ``cell_inputs``: ``jax.checkpoint`` each cell, keeping only
      convolution outputs (``cell``) or only the cell's inputs (:mod:`unas_jax.nn.precision`).
    rngs: ``nnx.Rngs``; ``params`` initialises weights and phi.

  Call: ``model(x, arch, *, train, key=None, mode='batched')`` with ``x``
  ``[N, H, W, in_channels]`` and ``arch`` of phi's structure with leading
  sample axis ``S`` in {1, N}; ``key`` is unused (no dropout in the supernet).
  ``mode='reference'`` evaluates edge by edge (slow; for tests).
  """

  def __init__(self, space: darts.DartsSpace, *, num_classes: int, channels: int = 16, num_cells: int = 8,
               in_channels: int = 3, stem_multiplier: int = 3, stem: str = "cifar",
               depthwise_impl: str = "auto", phi_init_scale: float = 1e-3, kernels: str = "auto",
               dtype: Any = "float32", remat: str = "none", rngs: nnx.Rngs):
    if not isinstance(space, darts.DartsSpace):
      raise ConfigError(f"space must be a DartsSpace, got {type(space).__name__}")
    if num_cells < 3:
      raise ConfigError(f"num_cells must be >= 3 (two reduction cells and a normal one), got {num_cells}")
    if channels < 1 or channels % 2:
      raise ConfigError(f"channels must be a positive even number (FactorizedReduce halves it), got {channels}")
    if stem not in ("cifar", "imagenet"):
      raise ConfigError(f"unknown stem {stem!r}; use 'cifar' or 'imagenet'")
    self.space = space
    self.num_classes = num_classes
    self.num_cells = num_cells
    self.stem_kind = stem
    self.kernels = kernels_lib.check(kernels)
    self.compute_dtype = precision.compute_dtype(dtype)
    self.remat = precision.check_remat(remat, REMAT)
    # phi lives in two top-level attributes named after the cell types, so that
    # the pure dict of functional.split is exactly {'normal': ..., 'reduce': ...}
    # (the layout of unas_jax.spaces.darts) and an arch sample has that structure.
    phi = darts.init_phi(rngs.params(), space, phi_init_scale)
    self.normal = nnx.Dict({leaf: ArchParam(v) for leaf, v in phi["normal"].items()})
    self.reduce = nnx.Dict({leaf: ArchParam(v) for leaf, v in phi["reduce"].items()})

    c_stem = stem_multiplier * channels
    if stem == "cifar":
      self.stem = nnx.List([ops.Conv2d(in_channels, c_stem, 3, padding=1, rngs=rngs), batchnorm.BatchNorm(c_stem)])
      c_prev_prev, c_prev, c_curr = c_stem, c_stem, channels
      reduction_prev = False
    else:
      half = c_stem // 2
      self.stem = nnx.List([
          ops.Conv2d(in_channels, half, 3, stride=2, padding=1, rngs=rngs), batchnorm.BatchNorm(half),
          ops.Conv2d(half, c_stem, 3, stride=2, padding=1, rngs=rngs), batchnorm.BatchNorm(c_stem)])
      self.stem1 = nnx.List([ops.Conv2d(c_stem, c_stem, 3, stride=2, padding=1, rngs=rngs),
                             batchnorm.BatchNorm(c_stem)])
      c_prev_prev, c_prev, c_curr = c_stem, c_stem, c_stem
      reduction_prev = True

    self.reduction_indices = (num_cells // 3, 2 * num_cells // 3)
    cells = []
    for idx in range(num_cells):
      reduction = idx in self.reduction_indices
      if reduction:
        c_curr *= 2
      cells.append(SearchCell(space, c_prev_prev, c_prev, c_curr, reduction=reduction,
                              reduction_prev=reduction_prev, depthwise_impl=depthwise_impl, rngs=rngs))
      reduction_prev = reduction
      c_prev_prev, c_prev = c_prev, space.num_nodes * c_curr
    self.cells = nnx.List(cells)
    self.classifier = ops.Linear(c_prev, num_classes, rngs=rngs)

  def _stem(self, x, train):
    if self.stem_kind == "cifar":
      conv, bn = self.stem
      s = bn(conv(x), train=train)
      return s, s
    conv0, bn0, conv1, bn1 = self.stem
    s0 = bn1(conv1(jax.nn.relu(bn0(conv0(x), train=train))), train=train)
    conv2, bn2 = self.stem1
    s1 = bn2(conv2(jax.nn.relu(s0)), train=train)
    return s0, s1

  def __call__(self, x: jax.Array, arch: PyTree, *, train: bool, key: jax.Array | None = None,
               mode: str = "batched") -> jax.Array:
    del key  # no dropout in the search network
    if mode not in MODES:
      raise ConfigError(f"unknown supernet mode {mode!r}; use one of {MODES}")
    if arch is None:
      raise ConfigError("the supernet needs an architecture sample 'arch' (one-hot z or relaxed zeta); "
                        "for a fixed genotype use unas_jax.spaces.darts_genotype.genotype_to_arch")
    check_arch(arch, self.space, x.shape[0])
    check_input_resolution(x.shape[1], x.shape[2], self.stem_kind)
    with kernels_lib.use(self.kernels):
      dt = self.compute_dtype
      # The edge weights meet the activations in the compute dtype; their
      # gradient returns to arch (float32) through the cast.
      weights = {t: jax.tree.map(lambda a: a.astype(dt), darts.edge_weights(arch[t])) for t in darts.CELL_TYPES}
      s0, s1 = self._stem(x.astype(dt), train)
      for idx, cell in enumerate(self.cells):
        cell_type = "reduce" if idx in self.reduction_indices else "normal"
        s0, s1 = s1, self._call_cell(cell, s0, s1, weights[cell_type], train=train, mode=mode)
      return self._head(s1)

  def _call_cell(self, cell, s0, s1, weights, *, train, mode):
    if self.remat == "none":
      return cell(s0, s1, weights, train=train, mode=mode)
    run = lambda cell, s0, s1, weights: cell(s0, s1, weights, train=train, mode=mode)
    return nnx.remat(run, policy=precision.remat_policy(self.remat))(cell, s0, s1, weights)

  def _head(self, s1):
    """Global average pool and classifier in float32: float32 logits whatever the compute dtype."""
    return self.classifier(jnp.mean(precision.to_float32(s1), axis=(1, 2)))

  def discrete(self, x: jax.Array, genotype: darts_genotype.Genotype, *, train: bool) -> jax.Array:
    """The network of one genotype evaluated along its path only, with the supernet's weights."""
    genotype.validate(num_nodes=self.space.num_nodes, op_names=self.space.op_names)
    check_input_resolution(x.shape[1], x.shape[2], self.stem_kind)
    with kernels_lib.use(self.kernels):
      s0, s1 = self._stem(x.astype(self.compute_dtype), train)
      for idx, cell in enumerate(self.cells):
        nodes = genotype.reduce if idx in self.reduction_indices else genotype.normal
        s0, s1 = s1, cell.discrete(s0, s1, nodes, train=train)
      return self._head(s1)

  @property
  def phi(self) -> dict[str, dict[str, jax.Array]]:
    """The current logits as ``{'normal': {...}, 'reduce': {...}}`` arrays."""
    return {t: {leaf: v[...] for leaf, v in getattr(self, t).items()} for t in darts.CELL_TYPES}

  def genotype(self, meta: Mapping[str, Any] | None = None) -> darts_genotype.Genotype:
    """The argmax genotype of the current ``phi``."""
    return darts_genotype.genotype_from_phi(self.phi, self.space, meta)
