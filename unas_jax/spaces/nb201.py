r"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020; NATS-Bench topology space).

Declared here, apart from the supernet that realises it
(``unas_jax/nn/nb201_supernet.py``) and from the benchmark tables
(:mod:`unas_jax.spaces.nb201_tables`).

Cell: 4 nodes; node 0 is the cell input and node ``j`` (1..3) is

    node_j = sum_{i < j} op_{(i, j)}(node_i)

over the 6 edges ``(i, j)``, each one op of ``OPS``; the cell output is node 3.
Edges are ordered as in the NB201 string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node 1 from node 0; node 2 from 0, 1;
node 3 from 0, 1, 2): ``EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))``
as ``(source, target)``. That order defines the 6 categoricals of ``phi``::

    phi = {'edges': [6, 5]}      # edge e, op k (OPS order)

and a sample ``arch`` has a leading sample axis: ``{'edges': [S, 6, 5]}``, one-hot
(``z``) or relaxed (``zeta``). One set of logits for every cell of the network
(all NB201 cells share one topology).

A :class:`Cell` is the tuple of 6 op names in edge order; ``str(cell)`` is its
NB201 string, which :meth:`Cell.from_string` reads back; :meth:`Cell.to_dict` and
:meth:`Cell.from_dict` are its versioned JSON object, :meth:`Cell.save` and
:meth:`Cell.load` its genotype JSON file; :func:`genotype_from_phi` is the most
probable cell, :func:`genotype_to_arch` the one-hot sample that selects a cell and
:func:`genotypes_from_arch` the cells of a batch of samples (the names of the DARTS
and ProxylessNAS genotypes' readers, writers and converters).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Any, Iterator, Mapping, Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.errors import ConfigError
from unas_jax.utils import files


# The NB201 op set, in the benchmark's order.
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Ops without parameters: a cell of these only is "parameter-free" (the collapse of DARTS on NB201).
PARAMETER_FREE_OPS = frozenset({"none", "skip_connect", "avg_pool_3x3"})
NUM_NODES = 4
# (source, target) per edge, in the order of the NB201 string.
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for j in range(1, NUM_NODES) for i in range(j))
NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)
NUM_CELLS = NUM_OPS ** NUM_EDGES  # 15,625

GENOTYPE_FORMAT = "unas_jax.nb201_genotype"
GENOTYPE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Cell:
  """One NB201 cell: ``ops[e]`` is the op of edge ``EDGES[e]``."""
  ops: tuple[str, ...]

  def __post_init__(self):
    object.__setattr__(self, "ops", tuple(self.ops))
    if len(self.ops) != NUM_EDGES:
      raise ConfigError(f"an NB201 cell has {NUM_EDGES} edges, got {len(self.ops)} ops")
    for op in self.ops:
      if op not in OPS:
        raise ConfigError(f"unknown NB201 op {op!r}; valid ops: {', '.join(OPS)}")

  def __str__(self) -> str:
    """The NB201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    nodes = []
    for j in range(1, NUM_NODES):
      nodes.append("|" + "|".join(f"{op}~{i}" for i, op in self.incoming(j)) + "|")
    return "+".join(nodes)

  @property
  def indices(self) -> tuple[int, ...]:
    """Op indices into ``OPS``, in edge order."""
    return tuple(OPS.index(o) for o in self.ops)

  def is_parameter_free(self) -> bool:
    """No convolution on any edge (only none / skip_connect / avg_pool_3x3)."""
    return all(o in PARAMETER_FREE_OPS for o in self.ops)

  def is_disconnected(self) -> bool:
    """No path of non-``none`` edges from the cell's input (node 0) to its output (node 3).

    Such a cell outputs zeros whatever its input: the network is a constant (chance
    accuracy in the benchmark table).
    """
    reached = {0}
    for j in range(1, NUM_NODES):
      if any(i in reached and op != "none" for i, op in self.incoming(j)):
        reached.add(j)
    return NUM_NODES - 1 not in reached

  def incoming(self, j: int) -> list[tuple[int, str]]:
    """``[(source, op), ...]`` of the edges into node ``j``."""
    return [(i, op) for (i, t), op in zip(EDGES, self.ops) if t == j]

  @classmethod
  def from_string(cls, text: str) -> Cell:
    """Parses an NB201 string (the inverse of ``str(cell)``).

    Raises:
      ConfigError: a malformed string, an unknown op, or edges out of order.
    """
    if not isinstance(text, str):
      raise ConfigError(f"an NB201 architecture string must be a str, got {type(text).__name__}")
    parts = text.strip().split("+")
    if len(parts) != NUM_NODES - 1:
      raise ConfigError(f"NB201 string {text!r} has {len(parts)} node groups separated by '+'; expected "
                        f"{NUM_NODES - 1} (|op~0|+|op~0|op~1|+|op~0|op~1|op~2|)")
    ops = []
    for j, part in enumerate(parts, start=1):
      if not (part.startswith("|") and part.endswith("|")):
        raise ConfigError(f"NB201 string {text!r}: node {j} group {part!r} must start and end with '|'")
      entries = part[1:-1].split("|")
      if len(entries) != j:
        raise ConfigError(f"NB201 string {text!r}: node {j} must have {j} incoming edges, got {len(entries)}")
      for i, entry in enumerate(entries):
        op, sep, src = entry.partition("~")
        if not sep or src != str(i):
          raise ConfigError(f"NB201 string {text!r}: edge {entry!r} into node {j} must read 'op~{i}'")
        if op not in OPS:
          raise ConfigError(f"NB201 string {text!r}: unknown op {op!r}; valid ops: {', '.join(OPS)}")
        ops.append(op)
    return cls(tuple(ops))

  @classmethod
  def from_indices(cls, indices: Sequence[int]) -> Cell:
    """The cell whose edge ``e`` has op ``OPS[indices[e]]``."""
    idx = [int(i) for i in indices]
    if len(idx) != NUM_EDGES or any(not 0 <= i < NUM_OPS for i in idx):
      raise ConfigError(f"an NB201 cell needs {NUM_EDGES} op indices in [0, {NUM_OPS}), got {list(indices)}")
    return cls(tuple(OPS[i] for i in idx))

  def to_dict(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The versioned JSON object: ``{"format", "version", "arch": "<NB201 string>", "ops": [...], "meta": {...}}``."""
    d = {"format": GENOTYPE_FORMAT, "version": GENOTYPE_VERSION, "arch": str(self), "ops": list(self.ops)}
    if meta:
      d["meta"] = dict(meta)
    return d

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> Cell:
    """Parses :meth:`to_dict`'s object (its ``arch`` string).

    Raises:
      ConfigError: not an NB201 genotype (format tag), or a malformed ``arch`` string.
    """
    if not isinstance(d, Mapping) or d.get("format") != GENOTYPE_FORMAT:
      raise ConfigError(f"not an NB201 genotype (format {d.get('format') if isinstance(d, Mapping) else None!r})")
    return cls.from_string(d["arch"])

  def save(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
    """Writes :meth:`to_dict` as JSON, atomically."""
    files.write_text(path, json.dumps(self.to_dict(meta), indent=1, sort_keys=True) + "\n")

  @classmethod
  def load(cls, path: str | os.PathLike) -> Cell:
    """Reads :meth:`save`'s file."""
    path = epath.Path(path)
    if not path.is_file():
      raise ConfigError(f"NB201 genotype file {str(path)!r} does not exist")
    try:
      d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ConfigError(f"{path}: not valid JSON: {e}") from None
    try:
      return cls.from_dict(d)
    except ConfigError as e:
      raise ConfigError(f"{path}: {e}") from None


def all_cells() -> Iterator[Cell]:
  """Every one of the ``5**6 = 15,625`` cells (edge 0 varies slowest)."""
  for idx in itertools.product(range(NUM_OPS), repeat=NUM_EDGES):
    yield Cell.from_indices(idx)


def random_cells(seed: int, n: int) -> list[Cell]:
  """``n`` cells drawn uniformly (with replacement) from the space."""
  rng = np.random.default_rng(seed)
  return [Cell.from_indices(row) for row in rng.integers(0, NUM_OPS, size=(n, NUM_EDGES))]


# --------------------------------------------------------------------------- #
# phi and samples.
# --------------------------------------------------------------------------- #


def phi_shapes() -> dict[str, tuple[int, ...]]:
  """Leaf shapes of ``phi``: ``{'edges': (6, 5)}``."""
  return {"edges": (NUM_EDGES, NUM_OPS)}


def init_phi(key: jax.Array, scale: float = 1e-3) -> dict[str, jax.Array]:
  """``phi ~ scale * N(0, 1)`` (``scale=0``: uniform)."""
  return {"edges": scale * jax.random.normal(key, (NUM_EDGES, NUM_OPS), jnp.float32)}


def genotype_from_phi(phi: Mapping[str, Any]) -> Cell:
  """The most probable cell: the argmax of every edge's logits (or probabilities)."""
  edges = np.asarray(phi["edges"]) if isinstance(phi, Mapping) and "edges" in phi else None
  if edges is None or edges.shape != (NUM_EDGES, NUM_OPS):
    raise ConfigError(f"phi must be {{'edges': [{NUM_EDGES}, {NUM_OPS}]}}, got "
                      f"{None if edges is None else edges.shape}")
  return Cell.from_indices(np.argmax(edges, axis=-1))


def genotype_to_arch(cell: Cell) -> dict[str, jax.Array]:
  """The one-hot sample ``z`` (sample axis ``S = 1``) that selects ``cell``."""
  return {"edges": jax.nn.one_hot(jnp.asarray(cell.indices), NUM_OPS)[None]}


def genotypes_from_arch(arch: Mapping[str, Any]) -> list[Cell]:
  """The cells of a batch of one-hot samples ``{'edges': [S, 6, 5]}`` (host arrays)."""
  edges = np.asarray(arch["edges"])
  if edges.ndim != 3 or edges.shape[1:] != (NUM_EDGES, NUM_OPS):
    raise ConfigError(f"arch['edges'] must be [S, {NUM_EDGES}, {NUM_OPS}], got {edges.shape}")
  return [Cell.from_indices(row) for row in np.argmax(edges, axis=-1)]


def flatten_arch(arch: Mapping[str, jax.Array]) -> jax.Array:
  """``{'edges': [S, 6, 5]}`` -> ``[S, 30]`` (the latency surrogate's features)."""
  edges = arch["edges"]
  return edges.reshape(edges.shape[0], NUM_EDGES * NUM_OPS)


def cells_to_flat(cells: Sequence[Cell]) -> np.ndarray:
  """One-hot features ``[N, 30]`` of ``cells``."""
  out = np.zeros((len(cells), NUM_EDGES, NUM_OPS))
  for n, cell in enumerate(cells):
    out[n, np.arange(NUM_EDGES), cell.indices] = 1.0
  return out.reshape(len(cells), -1)


# --------------------------------------------------------------------------- #
# The found cell as a picture.
# --------------------------------------------------------------------------- #


def plot_cell(cell: Cell, path: str | os.PathLike, *, title: str | None = None) -> None:
  """Draws ``cell`` as a PNG: nodes 0..3 on a line, each edge an arc labelled with its op.

  Edges with op ``none`` are drawn dotted and grey (they carry nothing).
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib.patches import FancyArrowPatch  # pylint: disable=import-outside-toplevel

  step = 3.0
  fig, ax = plt.subplots(figsize=(9, 4.2))
  ax.set_aspect("equal")
  palette = {"skip_connect": "tab:green", "nor_conv_1x1": "tab:blue", "nor_conv_3x3": "tab:purple",
             "avg_pool_3x3": "tab:orange", "none": "#b0b0b0"}
  heights = [0.0]
  for e, ((i, j), op) in enumerate(zip(EDGES, cell.ops)):
    # Edges spanning one node above the line, longer ones below, so labels do not collide.
    sign = 1 if j - i == 1 or (j - i == 2 and i == 0) else -1
    rad = 0.35 if j - i > 1 else 0.5
    x0, x1 = step * i, step * j
    ax.add_patch(FancyArrowPatch((x0, 0.0), (x1, 0.0), connectionstyle=f"arc3,rad={-sign * rad}",
                                 arrowstyle="-|>", mutation_scale=13, linewidth=1.6,
                                 linestyle=":" if op == "none" else "-", color=palette[op],
                                 shrinkA=16, shrinkB=16, zorder=1))
    apex = sign * rad * (x1 - x0) / 2
    heights.append(apex)
    ax.text((x0 + x1) / 2, apex, op, fontsize=9, ha="center", va="center", zorder=3,
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=palette[op], linewidth=0.9))
  for n in range(NUM_NODES):
    label = "in" if n == 0 else ("out" if n == NUM_NODES - 1 else str(n))
    ax.text(step * n, 0.0, label, fontsize=11, ha="center", va="center", zorder=4,
            bbox=dict(boxstyle="round,pad=0.45", linewidth=1.5, facecolor="#cfe0f5"))
  ax.set_xlim(-1.2, step * (NUM_NODES - 1) + 1.2)
  ax.set_ylim(min(heights) - 1.0, max(heights) + 1.0)
  ax.axis("off")
  ax.set_title(title or str(cell), fontsize=8)
  fig.tight_layout()
  files.save_figure(fig, path, dpi=110, bbox_inches="tight")
  plt.close(fig)
