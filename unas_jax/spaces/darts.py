r"""The DARTS cell search space with UNAS's factorised cell (docs/design.md sections 4 and 5).

The space is declared here, apart from the supernet that realises it
(``unas_jax/nn/darts_supernet.py``) and from the evaluation network.

Cell: two input states (0 = output of cell k-2, 1 = output of cell k-1) and
``num_nodes`` intermediate nodes; node ``j`` reads the ``j + 2`` earlier states
and has two *input selectors* (categoricals over those states) and two *op
selectors* (categoricals over the op set), and computes
``node_j = op_a(state[input_a]) + op_b(state[input_b])``; both selectors may
pick the same input. The cell's output concatenates all intermediate nodes.
There is one set of logits for every normal cell and one for every reduction
cell.

Logits ``phi`` (and samples ``arch``, with a leading sample axis ``S``) are a
pytree whose leaves hold independent categoricals over their last axis::

    {'normal': {'inputs_0': [2, 2],        # node 0: selectors a, b over states 0..1
                'inputs_1': [2, 3],        # node 1: over states 0..2
                ...
                'inputs_{n-1}': [2, n + 1],
                'ops': [n, 2, K]},         # node j, selector a/b, op
     'reduce': {... the same ...}}

A sample ``arch`` has leaves ``[S, 2, j + 2]`` and ``[S, n, 2, K]``, one-hot (``z``)
or relaxed (``zeta``).

Mixed-op weights of the factorised cell (UNAS): for node ``j`` the weight of
op ``k`` on the edge from state ``i`` is
``W_j[s, i, k] = in_a[s, i] op_a[s, k] + in_b[s, i] op_b[s, k]``
(:func:`edge_weights`).

Elsewhere: the discrete cells (genotypes, their JSON and the built-in ones) in
``unas_jax/spaces/darts_genotype.py``, their drawing in
``unas_jax/spaces/darts_plot.py``, and UNAS's pairing penalty on a sample in
``unas_jax/objectives/pairing.py``.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.errors import ConfigError


# DARTS (Liu et al. 2019) primitives, in the reference's order.
DARTS_OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
# UNAS's 7-op set (its prefixes of length 3, 4, 5 are the cheaper sets).
UNAS_OPS: tuple[str, ...] = ("skip_connect", "sep_conv_3x3", "max_pool_3x3", "dil_conv_3x3",
                             "sep_conv_5x5", "avg_pool_3x3", "sep_conv_7x7")
# Every op name a genotype may use.
ALL_OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                            "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5")
OP_SETS: dict[str, tuple[str, ...]] = {
    "darts8": DARTS_OPS,
    "unas7": UNAS_OPS,
    "unas5": UNAS_OPS[:5],
    "unas4": UNAS_OPS[:4],
    "unas3": UNAS_OPS[:3],
}

CELL_TYPES = ("normal", "reduce")


def check_op_names(names: Sequence[str], what: str = "op") -> None:
  """Raises ConfigError naming the first of ``names`` that is not a DARTS op (see ``ALL_OPS``)."""
  for name in names:
    if not isinstance(name, str) or name not in ALL_OPS:
      raise ConfigError(f"unknown {what} {name!r}; valid DARTS op names: {', '.join(ALL_OPS)}")


def op_set(spec: str | Sequence[str]) -> tuple[str, ...]:
  """The op names of a named set (``darts8``, ``unas7``, ``unas5``, ``unas4``, ``unas3``) or a list.

  Raises:
    ConfigError: unknown set name, unknown or repeated op name, empty list.
  """
  if isinstance(spec, str):
    if spec in OP_SETS:
      return OP_SETS[spec]
    if "," in spec:  # 'skip_connect,sep_conv_3x3' from a command line
      spec = [s.strip() for s in spec.split(",") if s.strip()]
    else:
      raise ConfigError(f"unknown op set {spec!r}; use one of {', '.join(OP_SETS)} or a list of op names "
                        f"from: {', '.join(ALL_OPS)}")
  names = tuple(spec)
  if not names:
    raise ConfigError("the op set is empty; name at least one op")
  check_op_names(names)
  if len(set(names)) != len(names):
    raise ConfigError(f"op set {list(names)} names an op twice; list each op once")
  return names


@dataclasses.dataclass(frozen=True)
class DartsSpace:
  """The factorised DARTS cell space: an op set and the number of nodes per cell.

  Attributes:
    op_names: the op set (see :func:`op_set`); a name or a list is accepted and
      normalised to a tuple of names.
    num_nodes: intermediate nodes per cell (4 in DARTS and UNAS).
  """
  op_names: tuple[str, ...] = UNAS_OPS
  num_nodes: int = 4

  def __post_init__(self):
    object.__setattr__(self, "op_names", op_set(self.op_names))
    if not isinstance(self.num_nodes, (int, np.integer)) or self.num_nodes < 1:
      raise ConfigError(f"num_nodes must be a positive integer, got {self.num_nodes!r}")

  @property
  def num_ops(self) -> int:
    return len(self.op_names)

  def num_inputs(self, node: int) -> int:
    """States node ``node`` may read: the two cell inputs and the earlier nodes."""
    return node + 2

  def op_index(self, name: str) -> int:
    """Index of op ``name`` in this space (ConfigError if the space lacks it)."""
    if name not in self.op_names:
      raise ConfigError(f"op {name!r} is not in this search space's op set {list(self.op_names)}")
    return self.op_names.index(name)

  def cell_shapes(self) -> dict[str, tuple[int, ...]]:
    """Leaf shapes of one cell type's logits (see the module docstring)."""
    shapes = {f"inputs_{j}": (2, self.num_inputs(j)) for j in range(self.num_nodes)}
    shapes["ops"] = (self.num_nodes, 2, self.num_ops)
    return shapes

  def phi_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
    """Leaf shapes of ``phi``: ``{'normal': cell_shapes(), 'reduce': cell_shapes()}``."""
    return {t: self.cell_shapes() for t in CELL_TYPES}

  def num_decisions(self) -> int:
    """Number of categorical variables in ``phi`` (4 per node per cell type)."""
    return 2 * 4 * self.num_nodes


def init_phi(key: jax.Array, space: DartsSpace, scale: float = 1e-3) -> dict[str, dict[str, jax.Array]]:
  """Architecture logits ``phi ~ scale * N(0, 1)`` (``scale=0``: uniform, as UNAS's zeros)."""
  shapes = space.phi_shapes()
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
      treedef, [scale * jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, leaves)])


def cell_num_nodes(arch_cell: Mapping[str, jax.Array]) -> int:
  """The number of nodes of one cell type's sample (or logits), after checking it has every leaf.

  Raises:
    ConfigError: the ``ops`` leaf or an ``inputs_j`` leaf is missing.
  """
  if "ops" not in arch_cell:
    raise ConfigError("an arch cell needs an 'ops' leaf [S, num_nodes, 2, num_ops]; see unas_jax.spaces.darts")
  num_nodes = arch_cell["ops"].shape[-3]
  for j in range(num_nodes):
    if f"inputs_{j}" not in arch_cell:
      raise ConfigError(f"an arch cell with {num_nodes} nodes needs the leaf 'inputs_{j}'")
  return num_nodes


def edge_weights(arch_cell: Mapping[str, jax.Array]) -> list[jax.Array]:
  r"""Mixed-op weights of one cell type's factorised sample.

  ``W_j[s, i, k] = in_a[s, i] op_a[s, k] + in_b[s, i] op_b[s, k]``
  (outer products of the input and op selectors of node ``j``).

  Args:
    arch_cell: ``arch['normal']`` or ``arch['reduce']``: leaves
      ``inputs_j [S, 2, j + 2]`` and ``ops [S, n, 2, K]``.

  Returns:
    A list over nodes ``j`` of ``[S, j + 2, K]`` arrays.
  """
  num_nodes = cell_num_nodes(arch_cell)
  ops = arch_cell["ops"]
  out = []
  for j in range(num_nodes):
    inputs = arch_cell[f"inputs_{j}"]
    out.append(inputs[:, 0, :, None] * ops[:, j, 0, None, :] +
               inputs[:, 1, :, None] * ops[:, j, 1, None, :])
  return out


def state_label(i: int) -> str:
  """The name of a cell's state ``i``: ``c_{k-2}``, ``c_{k-1}``, then the node index ``i - 2``."""
  return {0: "c_{k-2}", 1: "c_{k-1}"}.get(i, str(i - 2))
