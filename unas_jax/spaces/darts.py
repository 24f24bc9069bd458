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
(:func:`edge_weights`), and the pairing penalty is
``sum_{cells, j} <in_a (x) op_a, in_b (x) op_b> = sum (in_a . in_b)(op_a . op_b)``
(:func:`pairing_penalty`).

Genotypes (:class:`Genotype`) name the ops, so they do not depend on the op
set's order; they are saved as versioned JSON (:meth:`Genotype.to_json`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping, Sequence

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

GENOTYPE_FORMAT = "unas_jax.darts_genotype"
GENOTYPE_VERSION = 1
CELL_TYPES = ("normal", "reduce")


def _check_op_names(names: Sequence[str], what: str = "op") -> None:
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
  _check_op_names(names)
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


def _check_cell_arch(arch_cell: Mapping[str, jax.Array]) -> int:
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
  num_nodes = _check_cell_arch(arch_cell)
  ops = arch_cell["ops"]
  out = []
  for j in range(num_nodes):
    inputs = arch_cell[f"inputs_{j}"]
    out.append(inputs[:, 0, :, None] * ops[:, j, 0, None, :] +
               inputs[:, 1, :, None] * ops[:, j, 1, None, :])
  return out


def pairing_penalty(arch: Mapping[str, Mapping[str, jax.Array]]) -> jax.Array:
  r"""UNAS's pairing penalty per sample, ``[S]``.

  ``sum_{cell type} sum_j <in_a (x) op_a, in_b (x) op_b>
  = sum sum_j (in_a . in_b)(op_a . op_b)``: 1 per node whose two edges pick the
  same input *and* the same op (one-hot samples), 0 otherwise; the UNAS
  implementation adds it with weight 0.2 (``alpha_loss``) so that a node's two
  edges are discouraged from duplicating each other.
  """
  total = 0.0
  for cell_type in CELL_TYPES:
    cell = arch[cell_type]
    num_nodes = _check_cell_arch(cell)
    ops = cell["ops"]
    for j in range(num_nodes):
      inputs = cell[f"inputs_{j}"]
      same_input = jnp.sum(inputs[:, 0] * inputs[:, 1], axis=-1)
      same_op = jnp.sum(ops[:, j, 0] * ops[:, j, 1], axis=-1)
      total = total + same_input * same_op
  return total


# --------------------------------------------------------------------------- #
# Genotypes.
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class Node:
  """One intermediate node: ``op_a(state[inputs[0]]) + op_b(state[inputs[1]])``.

  Attributes:
    inputs: ``(a, b)``: 0 = cell k-2, 1 = cell k-1, ``2 + m`` = node ``m``.
    ops: ``(op_a, op_b)`` op names.
  """
  inputs: tuple[int, int]
  ops: tuple[str, str]


def _validate_cell(nodes: Sequence[Node], cell_type: str, num_nodes: int | None) -> None:
  if num_nodes is not None and len(nodes) != num_nodes:
    raise ConfigError(f"the {cell_type} cell of the genotype has {len(nodes)} nodes; "
                      f"this search space has {num_nodes}")
  if not nodes:
    raise ConfigError(f"the {cell_type} cell of the genotype has no nodes")
  for j, node in enumerate(nodes):
    where = f"{cell_type} node {j}"
    if len(node.inputs) != 2 or len(node.ops) != 2:
      raise ConfigError(f"{where} needs exactly two inputs and two ops, got inputs={list(node.inputs)} "
                        f"ops={list(node.ops)}")
    for i in node.inputs:
      if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0:
        raise ConfigError(f"{where} has input {i!r}; inputs are integers >= 0 "
                          "(0 = cell k-2, 1 = cell k-1, 2.. = earlier nodes)")
      if i >= j + 2:
        target = "itself" if i == j + 2 else f"the later node {i - 2}"
        raise ConfigError(f"{where} has input {i}, which refers to {target}; node {j} may only read "
                          f"states 0..{j + 1} (the two cell inputs and nodes before it)")
    _check_op_names(node.ops, what=f"op in {where}")


@dataclasses.dataclass(frozen=True)
class Genotype:
  """A discrete cell pair: the argmax of every selector (docs/design.md section 4, no pruning).

  Attributes:
    normal, reduce: the nodes of the normal and the reduction cell.
    meta: free-form, JSON-serialisable provenance (dataset, step, op set...);
      kept through the JSON round trip, ignored for equality.
  """
  normal: tuple[Node, ...]
  reduce: tuple[Node, ...]
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

  def __post_init__(self):
    object.__setattr__(self, "normal", tuple(self.normal))
    object.__setattr__(self, "reduce", tuple(self.reduce))
    self.validate()

  @property
  def num_nodes(self) -> int:
    return len(self.normal)

  @property
  def normal_concat(self) -> tuple[int, ...]:
    """States concatenated into the normal cell's output: every intermediate node."""
    return tuple(range(2, 2 + len(self.normal)))

  @property
  def reduce_concat(self) -> tuple[int, ...]:
    """States concatenated into the reduction cell's output: every intermediate node."""
    return tuple(range(2, 2 + len(self.reduce)))

  def cell(self, which: str) -> tuple[Node, ...]:
    """The nodes of ``'normal'`` or ``'reduce'``."""
    if which not in CELL_TYPES:
      raise ConfigError(f"unknown cell type {which!r}; use 'normal' or 'reduce'")
    return self.normal if which == "normal" else self.reduce

  def op_names(self) -> tuple[str, ...]:
    """The distinct op names used, in first-use order."""
    seen = []
    for node in self.normal + self.reduce:
      for op in node.ops:
        if op not in seen:
          seen.append(op)
    return tuple(seen)

  def validate(self, num_nodes: int | None = None, op_names: Sequence[str] | None = None) -> None:
    """Checks the structure; with ``op_names``, also that every op is in that set.

    Raises:
      ConfigError: an input that refers to the node itself or a later node, an
        unknown op, a wrong number of nodes, a malformed node.
    """
    if len(self.normal) != len(self.reduce):
      raise ConfigError(f"the genotype's normal cell has {len(self.normal)} nodes and its reduction cell "
                        f"{len(self.reduce)}; both need the same number")
    for cell_type in CELL_TYPES:
      _validate_cell(self.cell(cell_type), cell_type, num_nodes)
    if op_names is not None:
      for op in self.op_names():
        if op not in op_names:
          raise ConfigError(f"the genotype uses op {op!r}, which is not in the op set {list(op_names)}")

  # ----------------------------------------------------------------- JSON --
  def to_dict(self) -> dict[str, Any]:
    """The versioned JSON object (see :func:`genotype_from_dict`)."""
    def cell(nodes):
      return [{"inputs": [int(i) for i in n.inputs], "ops": list(n.ops)} for n in nodes]
    out = {"format": GENOTYPE_FORMAT, "version": GENOTYPE_VERSION,
           "normal": cell(self.normal), "normal_concat": list(self.normal_concat),
           "reduce": cell(self.reduce), "reduce_concat": list(self.reduce_concat)}
    if self.meta:
      out["meta"] = dict(self.meta)
    return out

  def to_json(self) -> str:
    """Readable JSON: one line per node."""
    d = self.to_dict()
    lines = ["{", f'  "format": {json.dumps(d["format"])},', f'  "version": {d["version"]},']
    for cell_type in CELL_TYPES:
      nodes = d[cell_type]
      lines.append(f'  "{cell_type}": [')
      for m, node in enumerate(nodes):
        comma = "," if m + 1 < len(nodes) else ""
        lines.append(f"    {json.dumps(node)}{comma}")
      lines.append("  ],")
      lines.append(f'  "{cell_type}_concat": {json.dumps(d[cell_type + "_concat"])},')
    if "meta" in d:
      lines.append(f'  "meta": {json.dumps(d["meta"], sort_keys=True)},')
    lines[-1] = lines[-1].rstrip(",")
    lines.append("}")
    return "\n".join(lines) + "\n"

  def save(self, path: str | os.PathLike) -> None:
    """Writes :meth:`to_json` to ``path`` (atomically: a temporary file, then rename)."""
    from unas_jax.utils import files  # pylint: disable=import-outside-toplevel
    files.write_text(path, self.to_json())

  # ---------------------------------------------------------- indices --
  def to_indices(self, op_names: Sequence[str] = UNAS_OPS) -> dict[str, list[tuple[list[int], list[int]]]]:
    """``{'normal': [([a, b], [op_a, op_b]), ...], 'reduce': ...}`` with op indices into ``op_names``."""
    names = list(op_names)
    self.validate(op_names=names)
    return {t: [(list(n.inputs), [names.index(o) for o in n.ops]) for n in self.cell(t)]
            for t in CELL_TYPES}


def _node_from_obj(obj: Any, cell_type: str, j: int) -> Node:
  if not isinstance(obj, Mapping) or set(obj) != {"inputs", "ops"}:
    raise ConfigError(f"{cell_type} node {j} must be an object with exactly the keys 'inputs' and 'ops', "
                      f"got {obj!r}")
  inputs, ops = obj["inputs"], obj["ops"]
  if not isinstance(inputs, (list, tuple)) or not isinstance(ops, (list, tuple)):
    raise ConfigError(f"{cell_type} node {j}: 'inputs' and 'ops' must be lists, got {inputs!r} and {ops!r}")
  return Node(tuple(inputs), tuple(ops))


def genotype_from_dict(d: Mapping[str, Any], *, num_nodes: int | None = None) -> Genotype:
  """Parses the JSON object of :meth:`Genotype.to_dict`.

  Format (version 1)::

      {"format": "unas_jax.darts_genotype", "version": 1,
       "normal": [{"inputs": [0, 1], "ops": ["sep_conv_3x3", "skip_connect"]}, ...],
       "normal_concat": [2, 3, 4, 5],
       "reduce": [...], "reduce_concat": [2, 3, 4, 5],
       "meta": {...}}                                  # optional

  Raises:
    ConfigError: wrong format tag or version, malformed or invalid cells,
      ``*_concat`` other than all intermediate nodes, ``num_nodes`` mismatch.
  """
  if not isinstance(d, Mapping):
    raise ConfigError(f"a genotype must be a JSON object, got {type(d).__name__}")
  if d.get("format") != GENOTYPE_FORMAT:
    raise ConfigError(f"not a DARTS genotype: 'format' is {d.get('format')!r}, expected {GENOTYPE_FORMAT!r}")
  if d.get("version") != GENOTYPE_VERSION:
    raise ConfigError(f"unsupported genotype version {d.get('version')!r}; this unas_jax reads version "
                      f"{GENOTYPE_VERSION}")
  unknown = set(d) - {"format", "version", "normal", "normal_concat", "reduce", "reduce_concat", "meta"}
  if unknown:
    raise ConfigError(f"unknown genotype keys {sorted(unknown)}")
  cells = {}
  for cell_type in CELL_TYPES:
    nodes = d.get(cell_type)
    if not isinstance(nodes, list):
      raise ConfigError(f"the genotype needs a list '{cell_type}' of nodes")
    cells[cell_type] = tuple(_node_from_obj(n, cell_type, j) for j, n in enumerate(nodes))
  meta = d.get("meta", {})
  if not isinstance(meta, Mapping):
    raise ConfigError("the genotype's 'meta' must be a JSON object")
  genotype = Genotype(cells["normal"], cells["reduce"], dict(meta))
  genotype.validate(num_nodes=num_nodes)
  for cell_type in CELL_TYPES:
    key = cell_type + "_concat"
    want = list(getattr(genotype, key))
    if key in d and (not isinstance(d[key], list) or list(d[key]) != want):
      raise ConfigError(f"'{key}' is {d[key]}; the factorised cell concatenates every intermediate node, {want}")
  return genotype


def genotype_from_json(text: str, *, num_nodes: int | None = None) -> Genotype:
  """Parses :meth:`Genotype.to_json` output."""
  try:
    d = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f"the genotype is not valid JSON: {e}") from None
  return genotype_from_dict(d, num_nodes=num_nodes)


def load_genotype(path: str | os.PathLike, *, num_nodes: int | None = None) -> Genotype:
  """Reads a genotype JSON file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ConfigError(f"genotype file {str(path)!r} does not exist; pass a genotype JSON written by a "
                      f"search, or a built-in name: {', '.join(BUILTIN_GENOTYPES)}")
  try:
    return genotype_from_json(path.read_text(), num_nodes=num_nodes)
  except ConfigError as e:
    raise ConfigError(f"{path}: {e}") from None
  except UnicodeDecodeError:
    raise ConfigError(f"{path} is not a genotype JSON file (not UTF-8 text)") from None


def genotype_from_indices(normal: Sequence[tuple[Sequence[int], Sequence[int]]],
                          reduce: Sequence[tuple[Sequence[int], Sequence[int]]],
                          op_names: Sequence[str] = UNAS_OPS, meta: Mapping[str, Any] | None = None
                          ) -> Genotype:
  """Builds a genotype from ``[([a, b], [op_a, op_b]), ...]`` per cell, ops as indices into ``op_names``.

  Raises:
    ConfigError: an op index out of range (or any :meth:`Genotype.validate` error).
  """
  names = op_set(list(op_names))

  def cell(nodes, cell_type):
    out = []
    for j, node in enumerate(nodes):
      if len(node) != 2:
        raise ConfigError(f"{cell_type} node {j} must be ([a, b], [op_a, op_b]), got {node!r}")
      inputs, ops = node
      op_list = []
      for o in ops:
        if not isinstance(o, (int, np.integer)) or isinstance(o, bool) or not 0 <= o < len(names):
          raise ConfigError(f"{cell_type} node {j} has op index {o!r}; the op set has {len(names)} ops "
                            f"(indices 0..{len(names) - 1}: {', '.join(names)})")
        op_list.append(names[int(o)])
      out.append(Node(tuple(int(i) if isinstance(i, (int, np.integer)) else i for i in inputs),
                      tuple(op_list)))
    return tuple(out)

  return Genotype(cell(normal, "normal"), cell(reduce, "reduce"), dict(meta or {}))


def genotype_from_darts_pairs(normal: Sequence[tuple[str, int]], reduce: Sequence[tuple[str, int]],
                              meta: Mapping[str, Any] | None = None) -> Genotype:
  """From DARTS's ``genotypes.py`` format: ``[(op, input), ...]``, two entries per node."""
  def cell(pairs, cell_type):
    if len(pairs) % 2:
      raise ConfigError(f"the DARTS {cell_type} list needs two (op, input) pairs per node, got {len(pairs)}")
    return tuple(Node((pairs[2 * j][1], pairs[2 * j + 1][1]), (pairs[2 * j][0], pairs[2 * j + 1][0]))
                 for j in range(len(pairs) // 2))
  return Genotype(cell(normal, "normal"), cell(reduce, "reduce"), dict(meta or {}))


def genotype_from_phi(phi: Mapping[str, Mapping[str, Any]], space: DartsSpace,
                      meta: Mapping[str, Any] | None = None) -> Genotype:
  """The genotype of the most likely architecture: the argmax of every selector (no pruning).

  Args:
    phi: logits with the structure of :meth:`DartsSpace.phi_shapes` (no sample axis).
    space: the space ``phi`` belongs to.
  """
  want = space.phi_shapes()
  for cell_type in CELL_TYPES:
    for leaf, shape in want[cell_type].items():
      got = np.shape(phi.get(cell_type, {}).get(leaf)) if isinstance(phi.get(cell_type), Mapping) else None
      if got != shape:
        raise ConfigError(f"phi[{cell_type!r}][{leaf!r}] has shape {got}, expected {shape} for this space")
  cells = {}
  for cell_type in CELL_TYPES:
    ops = np.argmax(np.asarray(phi[cell_type]["ops"]), axis=-1)
    nodes = []
    for j in range(space.num_nodes):
      inputs = np.argmax(np.asarray(phi[cell_type][f"inputs_{j}"]), axis=-1)
      nodes.append(Node((int(inputs[0]), int(inputs[1])),
                        (space.op_names[int(ops[j, 0])], space.op_names[int(ops[j, 1])])))
    cells[cell_type] = tuple(nodes)
  return Genotype(cells["normal"], cells["reduce"], dict(meta or {}))


def genotype_to_arch(genotype: Genotype, space: DartsSpace) -> dict[str, dict[str, jax.Array]]:
  """The one-hot sample ``z`` (sample axis ``S = 1``) that selects ``genotype`` in ``space``.

  Raises:
    ConfigError: the genotype uses an op outside the space or has another number of nodes.
  """
  genotype.validate(num_nodes=space.num_nodes, op_names=space.op_names)
  arch = {}
  for cell_type in CELL_TYPES:
    nodes = genotype.cell(cell_type)
    cell = {}
    for j, node in enumerate(nodes):
      cell[f"inputs_{j}"] = jax.nn.one_hot(jnp.asarray(node.inputs), space.num_inputs(j))[None]
    ops = [[space.op_index(o) for o in node.ops] for node in nodes]
    cell["ops"] = jax.nn.one_hot(jnp.asarray(ops), space.num_ops)[None]
    arch[cell_type] = cell
  return arch


# --------------------------------------------------------------------------- #
# Built-in genotypes.
# --------------------------------------------------------------------------- #

# UNAS (Vahdat et al., CVPR 2020), as published in NVlabs/unas darts/genotypes.py;
# op indices into UNAS_OPS; each node ([input_a, input_b], [op_a, op_b]).
_UNAS_CELLS = {
    "unas_cifar10": (
        [([0, 0], [4, 0]), ([0, 1], [0, 3]), ([0, 1], [1, 3]), ([1, 0], [1, 3])],
        [([0, 0], [1, 4]), ([1, 0], [0, 1]), ([1, 0], [5, 0]), ([3, 1], [4, 5])]),
    "unas_cifar100": (
        [([0, 0], [1, 3]), ([1, 0], [3, 1]), ([0, 1], [0, 1]), ([1, 0], [4, 1])],
        [([0, 0], [6, 1]), ([1, 0], [1, 4]), ([1, 0], [6, 3]), ([0, 3], [3, 1])]),
    "unas_imagenet": (
        [([0, 0], [1, 0]), ([0, 1], [1, 0]), ([1, 0], [1, 4]), ([0, 1], [1, 3])],
        [([0, 1], [4, 1]), ([0, 1], [4, 1]), ([1, 0], [4, 3]), ([3, 1], [3, 1])]),
}

BUILTIN_GENOTYPES: dict[str, Genotype] = {
    name: genotype_from_indices(normal, reduce, UNAS_OPS, meta={"source": f"UNAS paper/code ({name})"})
    for name, (normal, reduce) in _UNAS_CELLS.items()
}
# DARTS (second order), Liu et al. ICLR 2019; quark0/darts cnn/genotypes.py DARTS_V2.
BUILTIN_GENOTYPES["darts_v2"] = genotype_from_darts_pairs(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    meta={"source": "DARTS paper/code (DARTS_V2)"})


def get_genotype(name: str) -> Genotype:
  """A built-in genotype by name (``unas_cifar10``, ``unas_cifar100``, ``unas_imagenet``, ``darts_v2``)."""
  if name not in BUILTIN_GENOTYPES:
    raise ConfigError(f"unknown built-in genotype {name!r}; choose one of {', '.join(BUILTIN_GENOTYPES)} "
                      "or give the path of a genotype JSON file")
  return BUILTIN_GENOTYPES[name]


def resolve_genotype(spec: str | os.PathLike | Genotype, *, num_nodes: int | None = None) -> Genotype:
  """A :class:`Genotype`, a built-in name, or the path of a genotype JSON file."""
  if isinstance(spec, Genotype):
    spec.validate(num_nodes=num_nodes)
    return spec
  if isinstance(spec, str) and spec in BUILTIN_GENOTYPES:
    genotype = BUILTIN_GENOTYPES[spec]
    genotype.validate(num_nodes=num_nodes)
    return genotype
  if isinstance(spec, (str, os.PathLike)) and pathlib.Path(spec).suffix == ".json":
    return load_genotype(spec, num_nodes=num_nodes)
  if isinstance(spec, (str, os.PathLike)) and pathlib.Path(spec).is_file():
    return load_genotype(spec, num_nodes=num_nodes)
  raise ConfigError(f"{str(spec)!r} is neither a built-in genotype ({', '.join(BUILTIN_GENOTYPES)}) "
                    "nor a genotype JSON file")


# --------------------------------------------------------------------------- #
# Pictures.
# --------------------------------------------------------------------------- #


def _state_label(i: int) -> str:
  return {0: "c_{k-2}", 1: "c_{k-1}"}.get(i, str(i - 2))


def plot_cell(genotype: Genotype, which: str, path: str | os.PathLike, *, title: str | None = None) -> None:
  """Draws one cell of ``genotype`` as a PNG (matplotlib only, no graphviz).

  An arc diagram: the states ``c_{k-2}``, ``c_{k-1}``, nodes ``0..n-1`` and the
  output ``c_{k}`` (the concatenation of every node) on one line; each node's
  edge ``a`` is an arc above the line and edge ``b`` an arc below, labelled with
  its op at the arc's apex (so the two edges of a node that read the same state
  stay apart); thin grey arcs lead every node to ``c_{k}``.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.patches import FancyArrowPatch  # pylint: disable=g-import-not-at-top

  nodes = genotype.cell(which)
  n = len(nodes)
  step = 2.6
  xpos = {i: step * i for i in range(n + 2)}
  out_x = step * (n + 2)
  rad = 0.32  # arc3: apex height = rad * span / 2

  fig_w = 1.9 * (n + 3)
  fig, ax = plt.subplots(figsize=(fig_w, 0.62 * fig_w))
  ax.set_aspect("equal")
  palette = plt.get_cmap("tab10")

  def arc(x0, x1, sign, color, label=None, lw=1.6, style="-"):
    # arc3 bends to the left of the direction of travel: left-to-right with
    # rad > 0 bends down, so ``sign=+1`` (above) uses a negative rad.
    r = -sign * rad
    ax.add_patch(FancyArrowPatch((x0, 0.0), (x1, 0.0), connectionstyle=f"arc3,rad={r}", arrowstyle="-|>",
                                 mutation_scale=13, linewidth=lw, linestyle=style, color=color,
                                 shrinkA=16, shrinkB=16, zorder=1))
    apex = sign * rad * (x1 - x0) / 2
    if label:
      ax.text((x0 + x1) / 2, apex, label, fontsize=9, ha="center", va="center", zorder=3,
              bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=color, linewidth=0.9))
    return apex

  heights = [0.0]
  for j, node in enumerate(nodes):
    color = palette(j % 10)
    for side, sign in ((0, 1), (1, -1)):
      heights.append(arc(xpos[node.inputs[side]], xpos[j + 2], sign, color, node.ops[side]))
  for j in range(n):
    heights.append(arc(xpos[j + 2], out_x, 1, "#b0b0b0", lw=0.9, style="--"))

  box = dict(boxstyle="round,pad=0.45", linewidth=1.5)
  for i, x in xpos.items():
    ax.text(x, 0.0, _state_label(i), fontsize=11, ha="center", va="center", zorder=4,
            bbox=dict(box, facecolor="#cfe8cf" if i < 2 else "#cfe0f5"))
  ax.text(out_x, 0.0, "c_{k}", fontsize=11, ha="center", va="center", zorder=4,
          bbox=dict(box, facecolor="#f5ecbf"))
  ax.set_xlim(-1.4, out_x + 1.4)
  ax.set_ylim(min(heights) - 1.0, max(heights) + 1.0)
  ax.axis("off")
  ax.set_title(title or f"{which} cell (edge a above, edge b below; c_{{k}} = concat of nodes 0..{n - 1})",
               fontsize=11)
  fig.tight_layout()
  from unas_jax.utils import files  # pylint: disable=import-outside-toplevel
  files.save_figure(fig, path, dpi=110, bbox_inches="tight")
  plt.close(fig)
