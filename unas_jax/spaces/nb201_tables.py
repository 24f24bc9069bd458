r"""NAS-Bench-201 look-up tables: benchmark accuracy and per-architecture latency.

Benchmark table (``benchmark.table``): a CSV with the header
``arch,cifar10,cifar100,imagenet16_120`` and one row per cell, its NB201 string
and its test accuracy (%) after the benchmark's 200-epoch training on each
dataset (the NATS-Bench topology table, mean over its seeds). The rank of a cell
is ``1 + #{cells with a higher CIFAR-10 accuracy}`` (1 = best; ties share a rank).

Latency table (``latency.source=table``): a CSV with the header ``arch,ms``
(HW-NAS-Bench and HELP publish such per-device tables for this space).

Every problem with a table (missing file, wrong header, a malformed string or
number, a repeated cell) is one :class:`~unas_jax.errors.DataError` line that
names the file and row; a look-up of a cell the table lacks is one too.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Sequence

import numpy as np

from unas_jax.errors import ConfigError, DataError
from unas_jax.spaces import nb201

DATASETS = ("cifar10", "cifar100", "imagenet16_120")
BENCHMARK_COLUMNS = ("arch",) + DATASETS
LATENCY_COLUMNS = ("arch", "ms")


def _read_rows(path: str, columns: Sequence[str], what: str) -> list[tuple[nb201.Cell, list[float], int]]:
  """Rows ``(cell, values, line_number)`` of a CSV whose header is exactly ``columns``."""
  if not path or not os.path.isfile(path):
    raise DataError(f"{what} {path!r} is not a file")
  with open(path, newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != list(columns):
      raise DataError(f"{what} {path}: header is {header}, expected {','.join(columns)}")
    rows, seen = [], {}
    for line, row in enumerate(reader, start=2):
      if not row:
        continue
      if len(row) != len(columns):
        raise DataError(f"{what} {path}: line {line} has {len(row)} fields, expected {len(columns)}")
      try:
        cell = nb201.Cell.from_string(row[0])
      except ConfigError as e:
        raise DataError(f"{what} {path}: line {line}: {e}") from None
      try:
        values = [float(v) for v in row[1:]]
      except ValueError:
        raise DataError(f"{what} {path}: line {line} has a non-numeric value in {row[1:]}") from None
      if not all(np.isfinite(values)):
        raise DataError(f"{what} {path}: line {line} has a non-finite value in {row[1:]}")
      if cell in seen:
        raise DataError(f"{what} {path}: line {line} repeats the cell of line {seen[cell]} ({row[0]})")
      seen[cell] = line
      rows.append((cell, values, line))
  if not rows:
    raise DataError(f"{what} {path} has a header but no rows")
  return rows


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
  """A cell's benchmark accuracies (%) and its CIFAR-10 rank among the table's cells."""
  arch: str
  cifar10: float
  cifar100: float
  imagenet16_120: float
  rank_cifar10: int
  num_cells: int

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


class BenchmarkTable:
  """The benchmark accuracy of every cell (see the module docstring)."""

  def __init__(self, path: str):
    rows = _read_rows(path, BENCHMARK_COLUMNS, "benchmark table")
    for _, values, line in rows:
      if not all(0.0 <= v <= 100.0 for v in values):
        raise DataError(f"benchmark table {path}: line {line} has an accuracy outside [0, 100]: {values}")
    self.path = path
    self.cells = [c for c, _, _ in rows]
    self.accuracy = np.asarray([v for _, v, _ in rows], np.float64)  # [N, 3]
    self._index = {c: n for n, c in enumerate(self.cells)}
    c10 = np.sort(self.accuracy[:, 0])[::-1]
    # rank = 1 + number of strictly better cells
    self._rank = 1 + np.searchsorted(-c10, -self.accuracy[:, 0], side="left")

  def __len__(self) -> int:
    return len(self.cells)

  def __contains__(self, cell: nb201.Cell) -> bool:
    return cell in self._index

  def lookup(self, cell: nb201.Cell | str) -> BenchmarkResult:
    """The table's accuracies of ``cell`` and its CIFAR-10 rank.

    Raises:
      DataError: the table has no row for ``cell``.
    """
    if isinstance(cell, str):
      cell = nb201.Cell.from_string(cell)
    n = self._index.get(cell)
    if n is None:
      raise DataError(f"benchmark table {self.path} has no row for the cell {cell}")
    acc = self.accuracy[n]
    return BenchmarkResult(str(cell), float(acc[0]), float(acc[1]), float(acc[2]), int(self._rank[n]), len(self))

  def summary(self) -> dict:
    """Best, mean and median CIFAR-10 accuracy over the table."""
    c10 = self.accuracy[:, 0]
    return {"num_cells": len(self), "best_cifar10": float(c10.max()), "mean_cifar10": float(c10.mean()),
            "median_cifar10": float(np.median(c10))}


class LatencyTable:
  """Per-architecture latency in ms (``arch,ms``)."""

  def __init__(self, path: str):
    rows = _read_rows(path, LATENCY_COLUMNS, "latency table")
    for _, values, line in rows:
      if values[0] <= 0:
        raise DataError(f"latency table {path}: line {line} has a non-positive latency {values[0]}")
    self.path = path
    self.cells = [c for c, _, _ in rows]
    self.ms = np.asarray([v[0] for _, v, _ in rows], np.float64)
    self._index = {c: n for n, c in enumerate(self.cells)}

  def __len__(self) -> int:
    return len(self.cells)

  def latency(self, cell: nb201.Cell) -> float:
    n = self._index.get(cell)
    if n is None:
      raise DataError(f"latency table {self.path} has no row for the cell {cell}; it must cover every cell "
                      "the search can draw (all 15,625)")
    return float(self.ms[n])

  def latencies(self, cells: Sequence[nb201.Cell]) -> np.ndarray:
    return np.asarray([self.latency(c) for c in cells])


def write_benchmark_csv(path: str, cells: Sequence[nb201.Cell], accuracy: np.ndarray) -> None:
  """Writes a benchmark table (tests and tools); ``accuracy`` is ``[N, 3]``."""
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(BENCHMARK_COLUMNS)
    for cell, acc in zip(cells, accuracy):
      w.writerow([str(cell)] + [f"{a:.4f}" for a in acc])


def write_latency_csv(path: str, cells: Sequence[nb201.Cell], ms: Sequence[float]) -> None:
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(LATENCY_COLUMNS)
    for cell, m in zip(cells, ms):
      w.writerow([str(cell), f"{m:.6f}"])
