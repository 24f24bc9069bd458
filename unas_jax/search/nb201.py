r"""The NAS-Bench-201 space as the search loop sees it (job ``nb201_search``).

Every estimator and objective of the DARTS job runs unchanged: phi is one
categorical per edge (``{'edges': [6, 5]}``), sampled per example, per device or
shared (``search.sampling``), through :func:`unas_jax.search.loop.run_search`.

Benchmark (``benchmark.table``, a CSV in the format of
:mod:`unas_jax.spaces.nb201_tables`; empty: off): the found cell's benchmark
accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120 and its CIFAR-10 rank are
printed, logged and written to ``genotype/benchmark.json``; at every evaluation
the mode cell's benchmark accuracy joins the eval metrics (``bench_cifar10``,
...), which gives the curve of benchmark accuracy over the search.

Latency (``latency.enabled`` with ``latency.source=table``): every sampled cell
is priced by a per-cell table, with a linear surrogate as RELAX's control
(:class:`unas_jax.latency.nb201_table.NB201TableLatency`).
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from flax import nnx
from chex import ArrayTree as PyTree

from unas_jax import estimators as est
from unas_jax.errors import ConfigError
from unas_jax.latency.nb201_table import NB201TableLatency, check_latency_config
from unas_jax.nn import batchnorm
from unas_jax.nn.nb201_supernet import NB201Supernet
from unas_jax.search import loop
from unas_jax.spaces import nb201
from unas_jax.spaces import nb201_tables as tables
from unas_jax.utils import files


class NB201SearchSpace(loop.SpaceAdapter):
  """Builds the NB201 supernet from ``config.model``; phi -> cell, pictures, benchmark look-ups."""
  name = "nb201"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    path = config.benchmark.table
    # Loaded before the search starts: a malformed table fails at once, not after the search.
    self.benchmark = tables.BenchmarkTable(path) if path else None
    lc = config.latency
    if lc.enabled:  # NB201TableLatency's checks, before any data is loaded
      check_latency_config(lc)

  def build_supernet(self, config, info, bn_axis_name):
    m = config.model
    if info.image_shape[0] % 4 or info.image_shape[1] % 4:
      raise ConfigError(f"images of {info.image_shape[0]}x{info.image_shape[1]}: the two reduction blocks need "
                        "a height and width divisible by 4; set data.image_size")
    supernet = NB201Supernet(num_classes=info.num_classes, channels=m.channels, cells_per_stage=m.cells_per_stage,
                             in_channels=info.image_shape[-1], phi_init_scale=config.search.phi_init_scale,
                             rngs=nnx.Rngs(params=config.seed))
    batchnorm.set_axis_name(supernet, bn_axis_name)
    return supernet

  def phi_from_state(self, phi_state: PyTree) -> PyTree:
    return {"edges": phi_state["edges"]}

  def genotype(self, phi: PyTree) -> nb201.Cell:
    return nb201.genotype_from_phi(self.softened(phi))

  def lookup(self, cell: nb201.Cell) -> tables.BenchmarkResult | None:
    return None if self.benchmark is None else self.benchmark.lookup(cell)

  def write_genotype(self, genotype: nb201.Cell, out_dir: str) -> list[str]:
    paths = [os.path.join(out_dir, "genotype.json"), os.path.join(out_dir, "cell.png")]
    meta = dict(self.meta, parameter_free=genotype.is_parameter_free())
    result = self.lookup(genotype)
    if result is not None:
      meta["benchmark"] = result.to_dict()
    genotype.save(paths[0], meta)
    title = str(genotype)
    if result is not None:
      title += (f"\nbenchmark: CIFAR-10 {result.cifar10:.2f}%, CIFAR-100 {result.cifar100:.2f}%, "
                f"ImageNet16-120 {result.imagenet16_120:.2f}% (rank {result.rank_cifar10}/{result.num_cells})")
    nb201.plot_cell(genotype, paths[1], title=title)
    return paths + self.write_latency_report(genotype, out_dir)

  def eval_metrics(self, phi: PyTree) -> dict[str, float]:
    """The mode cell's benchmark accuracies and rank (empty without a table); logged at every evaluation."""
    cell = self.genotype(phi)
    out = {"mode_parameter_free": float(cell.is_parameter_free())}
    result = self.lookup(cell)
    if result is not None:
      out.update(bench_cifar10=result.cifar10, bench_cifar100=result.cifar100,
                 bench_imagenet16_120=result.imagenet16_120, bench_rank=float(result.rank_cifar10))
    return out

  def selector_probabilities(self, phi: PyTree) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    probs = np.asarray(est.probabilities(self.softened(phi))["edges"])
    return {"edges": probs}, {"edges": list(nb201.OPS)}

  def latency_hooks(self, config, workdir, info):
    del info
    if not config.latency.enabled:
      return None
    self.latency = NB201TableLatency(config, workdir)
    return self.latency


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The ``nb201_search`` job: the search, then the found cell's benchmark accuracy (with a table)."""
  space = NB201SearchSpace(config)
  summary = loop.run_search(config, workdir, space)
  if "stopped_at" in summary:
    return summary
  cell = nb201.Cell.load(summary["genotype"])
  summary["arch"] = str(cell)
  summary["parameter_free"] = cell.is_parameter_free()
  result = space.lookup(cell)
  if result is not None:
    summary["benchmark"] = result.to_dict()
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, "summary.json"), summary)
    print(f"NB201 cell: {cell}", flush=True)
    if result is not None:
      print(f"benchmark ({space.benchmark.path}): CIFAR-10 {result.cifar10:.2f}%, CIFAR-100 {result.cifar100:.2f}%, "
            f"ImageNet16-120 {result.imagenet16_120:.2f}%, CIFAR-10 rank {result.rank_cifar10} of "
            f"{result.num_cells}", flush=True)
  return summary


__all__ = ["NB201SearchSpace", "run"]
