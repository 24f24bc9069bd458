r"""Discrete cells of the DARTS space: genotypes, their JSON file and the built-in ones.

A :class:`Genotype` is a normal and a reduction cell, each node
``op_a(state[a]) + op_b(state[b])`` (the cell of ``unas_jax/spaces/darts.py``
with every selector decided). Genotypes name the ops, so they do not depend on
the op set's order; they are saved as versioned JSON (:meth:`Genotype.to_json`,
read by :meth:`Genotype.from_dict`, :meth:`~Genotype.from_json`, :meth:`~Genotype.load`).
A search turns logits into a genotype with :func:`genotype_from_phi`;
:func:`genotype_to_arch` gives the one-hot sample that selects a genotype in a
space. ``BUILTIN_GENOTYPES`` holds the published UNAS and DARTS cells;
:func:`get_genotype` resolves a built-in name or a file. (The ProxylessNAS and
NB201 genotypes have the same ``to_dict`` / ``from_dict``, ``save`` / ``load``,
``from_indices``, ``genotype_from_phi`` and ``genotype_to_arch``, and also
``genotypes_from_arch``, the genotypes of a batch of one-hot samples, which their
latency sources need and this space has no use for.)
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
from unas_jax.spaces import darts

GENOTYPE_FORMAT = "unas_jax.darts_genotype"
GENOTYPE_VERSION = 1


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
    darts.check_op_names(node.ops, what=f"op in {where}")


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
    if which not in darts.CELL_TYPES:
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
    for cell_type in darts.CELL_TYPES:
      _validate_cell(self.cell(cell_type), cell_type, num_nodes)
    if op_names is not None:
      for op in self.op_names():
        if op not in op_names:
          raise ConfigError(f"the genotype uses op {op!r}, which is not in the op set {list(op_names)}")

  # ----------------------------------------------------------------- JSON --
  def to_dict(self) -> dict[str, Any]:
    """The versioned JSON object (see :meth:`from_dict`)."""
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
    for cell_type in darts.CELL_TYPES:
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
  def to_indices(self, op_names: Sequence[str] = darts.UNAS_OPS) -> dict[str, list[tuple[list[int], list[int]]]]:
    """``{'normal': [([a, b], [op_a, op_b]), ...], 'reduce': ...}`` with op indices into ``op_names``."""
    names = list(op_names)
    self.validate(op_names=names)
    return {t: [(list(n.inputs), [names.index(o) for o in n.ops]) for n in self.cell(t)]
            for t in darts.CELL_TYPES}

  # ------------------------------------------------------------ readers --
  @classmethod
  def from_dict(cls, d: Mapping[str, Any], *, num_nodes: int | None = None) -> Genotype:
    """Parses the JSON object of :meth:`to_dict`.

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
    for cell_type in darts.CELL_TYPES:
      nodes = d.get(cell_type)
      if not isinstance(nodes, list):
        raise ConfigError(f"the genotype needs a list '{cell_type}' of nodes")
      cells[cell_type] = tuple(_node_from_obj(n, cell_type, j) for j, n in enumerate(nodes))
    meta = d.get("meta", {})
    if not isinstance(meta, Mapping):
      raise ConfigError("the genotype's 'meta' must be a JSON object")
    genotype = cls(cells["normal"], cells["reduce"], dict(meta))
    genotype.validate(num_nodes=num_nodes)
    for cell_type in darts.CELL_TYPES:
      key = cell_type + "_concat"
      want = list(getattr(genotype, key))
      if key in d and (not isinstance(d[key], list) or list(d[key]) != want):
        raise ConfigError(f"'{key}' is {d[key]}; the factorised cell concatenates every intermediate node, {want}")
    return genotype

  @classmethod
  def from_json(cls, text: str, *, num_nodes: int | None = None) -> Genotype:
    """Parses :meth:`to_json` output."""
    try:
      d = json.loads(text)
    except json.JSONDecodeError as e:
      raise ConfigError(f"the genotype is not valid JSON: {e}") from None
    return cls.from_dict(d, num_nodes=num_nodes)

  @classmethod
  def load(cls, path: str | os.PathLike, *, num_nodes: int | None = None) -> Genotype:
    """Reads a genotype JSON file."""
    path = pathlib.Path(path)
    if not path.is_file():
      raise ConfigError(f"genotype file {str(path)!r} does not exist; pass a genotype JSON written by a "
                        f"search, or a built-in name: {', '.join(BUILTIN_GENOTYPES)}")
    try:
      return cls.from_json(path.read_text(), num_nodes=num_nodes)
    except ConfigError as e:
      raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError:
      raise ConfigError(f"{path} is not a genotype JSON file (not UTF-8 text)") from None

  @classmethod
  def from_indices(cls, normal: Sequence[tuple[Sequence[int], Sequence[int]]],
                   reduce: Sequence[tuple[Sequence[int], Sequence[int]]],
                   op_names: Sequence[str] = darts.UNAS_OPS, meta: Mapping[str, Any] | None = None) -> Genotype:
    """Builds a genotype from ``[([a, b], [op_a, op_b]), ...]`` per cell, ops as indices into ``op_names``.

    Raises:
      ConfigError: an op index out of range (or any :meth:`Genotype.validate` error).
    """
    names = darts.op_set(list(op_names))

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

    return cls(cell(normal, "normal"), cell(reduce, "reduce"), dict(meta or {}))

  @classmethod
  def from_darts_pairs(cls, normal: Sequence[tuple[str, int]], reduce: Sequence[tuple[str, int]],
                       meta: Mapping[str, Any] | None = None) -> Genotype:
    """From DARTS's ``genotypes.py`` format: ``[(op, input), ...]``, two entries per node."""
    def cell(pairs, cell_type):
      if len(pairs) % 2:
        raise ConfigError(f"the DARTS {cell_type} list needs two (op, input) pairs per node, got {len(pairs)}")
      return tuple(Node((pairs[2 * j][1], pairs[2 * j + 1][1]), (pairs[2 * j][0], pairs[2 * j + 1][0]))
                   for j in range(len(pairs) // 2))
    return cls(cell(normal, "normal"), cell(reduce, "reduce"), dict(meta or {}))


def _node_from_obj(obj: Any, cell_type: str, j: int) -> Node:
  if not isinstance(obj, Mapping) or set(obj) != {"inputs", "ops"}:
    raise ConfigError(f"{cell_type} node {j} must be an object with exactly the keys 'inputs' and 'ops', "
                      f"got {obj!r}")
  inputs, ops = obj["inputs"], obj["ops"]
  if not isinstance(inputs, (list, tuple)) or not isinstance(ops, (list, tuple)):
    raise ConfigError(f"{cell_type} node {j}: 'inputs' and 'ops' must be lists, got {inputs!r} and {ops!r}")
  return Node(tuple(inputs), tuple(ops))


def genotype_from_phi(phi: Mapping[str, Mapping[str, Any]], space: darts.DartsSpace,
                      meta: Mapping[str, Any] | None = None) -> Genotype:
  """The genotype of the most likely architecture: the argmax of every selector (no pruning).

  Args:
    phi: logits with the structure of :meth:`unas_jax.spaces.darts.DartsSpace.phi_shapes` (no sample axis).
    space: the space ``phi`` belongs to.
  """
  want = space.phi_shapes()
  for cell_type in darts.CELL_TYPES:
    for leaf, shape in want[cell_type].items():
      got = np.shape(phi.get(cell_type, {}).get(leaf)) if isinstance(phi.get(cell_type), Mapping) else None
      if got != shape:
        raise ConfigError(f"phi[{cell_type!r}][{leaf!r}] has shape {got}, expected {shape} for this space")
  cells = {}
  for cell_type in darts.CELL_TYPES:
    ops = np.argmax(np.asarray(phi[cell_type]["ops"]), axis=-1)
    nodes = []
    for j in range(space.num_nodes):
      inputs = np.argmax(np.asarray(phi[cell_type][f"inputs_{j}"]), axis=-1)
      nodes.append(Node((int(inputs[0]), int(inputs[1])),
                        (space.op_names[int(ops[j, 0])], space.op_names[int(ops[j, 1])])))
    cells[cell_type] = tuple(nodes)
  return Genotype(cells["normal"], cells["reduce"], dict(meta or {}))


def genotype_to_arch(genotype: Genotype, space: darts.DartsSpace) -> dict[str, dict[str, jax.Array]]:
  """The one-hot sample ``z`` (sample axis ``S = 1``) that selects ``genotype`` in ``space``.

  Raises:
    ConfigError: the genotype uses an op outside the space or has another number of nodes.
  """
  genotype.validate(num_nodes=space.num_nodes, op_names=space.op_names)
  arch = {}
  for cell_type in darts.CELL_TYPES:
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
# op indices into darts.UNAS_OPS; each node ([input_a, input_b], [op_a, op_b]).
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
    name: Genotype.from_indices(normal, reduce, darts.UNAS_OPS, meta={"source": f"UNAS paper/code ({name})"})
    for name, (normal, reduce) in _UNAS_CELLS.items()
}
# DARTS (second order), Liu et al. ICLR 2019; quark0/darts cnn/genotypes.py DARTS_V2.
BUILTIN_GENOTYPES["darts_v2"] = Genotype.from_darts_pairs(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    meta={"source": "DARTS paper/code (DARTS_V2)"})


def get_genotype(spec: str | os.PathLike | Genotype, *, num_nodes: int | None = None) -> Genotype:
  """A :class:`Genotype` (returned as is), a built-in name (``unas_cifar10``, ``unas_cifar100``,
  ``unas_imagenet``, ``darts_v2``) or the path of a genotype JSON file; with ``num_nodes``,
  checked to have that many nodes."""
  if isinstance(spec, Genotype):
    spec.validate(num_nodes=num_nodes)
    return spec
  if isinstance(spec, str) and spec in BUILTIN_GENOTYPES:
    genotype = BUILTIN_GENOTYPES[spec]
    genotype.validate(num_nodes=num_nodes)
    return genotype
  if isinstance(spec, (str, os.PathLike)) and pathlib.Path(spec).suffix == ".json":
    return Genotype.load(spec, num_nodes=num_nodes)
  if isinstance(spec, (str, os.PathLike)) and pathlib.Path(spec).is_file():
    return Genotype.load(spec, num_nodes=num_nodes)
  raise ConfigError(f"{str(spec)!r} is neither a built-in genotype ({', '.join(BUILTIN_GENOTYPES)}) "
                    "nor a genotype JSON file")
