r"""The NAS-Bench-201 latency source: a per-cell table, as :class:`unas_jax.latency.hooks.LatencyHooks`.

Job ``nb201_search`` (:mod:`unas_jax.search.nb201`) with ``latency.enabled`` and
``latency.source=table``: a CSV of NB201 string -> ms
(:class:`~unas_jax.spaces.nb201_tables.LatencyTable`) prices every sampled cell;
RELAX's control is a linear surrogate

.. math::
   g(z) = \sum_{e,k} l_{ek} z_{ek} + b

on the one-hot cell (:data:`predict`), fitted by ridge regression
(``latency.ridge_lambda``) on a random 80% of the table's cells, its held-out error
on the other 20% reported in ``<workdir>/latency``, then refitted on every row.
A target below the table's fastest cell is refused at once
(:func:`unas_jax.latency.hooks.check_target`).
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from chex import ArrayTree as PyTree

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError, DataError
from unas_jax.latency import hooks
from unas_jax.latency import surrogate as surrogate_lib
from unas_jax.spaces import nb201
from unas_jax.spaces import nb201_tables as tables
from unas_jax.utils import files

LATENCY_SOURCES = ("table",)

# ``g(arch) = flatten_arch(arch) . coef + bias`` on ``{'edges': [S, 6, 5]}``, one-hot or relaxed.
predict = hooks.LinearControl(nb201.flatten_arch)


def check_latency_config(lc: ml_collections.ConfigDict) -> None:
  """Raises ConfigError unless ``config.latency`` names a source this space has and its table."""
  check_choice("latency.source", lc.source, LATENCY_SOURCES, hint="for the nb201 space")
  if not lc.table_path:
    raise ConfigError("latency.source=table needs --config.latency.table_path=/path/to/latency.csv "
                      "(header arch,ms; one row per NB201 cell)")


class NB201TableLatency:
  """:class:`unas_jax.latency.hooks.LatencyHooks` from a per-architecture latency table."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    lc = config.latency
    check_latency_config(lc)
    self.config = lc
    self.eps = config.search.eps
    self.table = tables.LatencyTable(lc.table_path)
    self.directory = files.makedirs(os.path.join(workdir, "latency"))
    self.coef = np.zeros(nb201.NUM_EDGES * nb201.NUM_OPS)
    self.bias = 0.0
    self.report: dict = {}
    self.fit()

  def fit(self) -> dict:
    """Ridge fit on 80% of the table, held-out report on 20%, final fit on all rows (deterministic)."""
    lc = self.config
    x = nb201.cells_to_flat(self.table.cells)
    y = self.table.ms
    n = len(y)
    n_test = max(1, int(round(lc.test_fraction * n)))
    if n - n_test < 2:
      raise DataError(f"latency table {self.table.path} has {n} rows; the surrogate needs at least 3")
    perm = np.random.default_rng(lc.surrogate_seed).permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    coef, bias = surrogate_lib.ridge(x[train], y[train], lc.ridge_lambda)
    y_pred = x[test] @ coef + bias
    self.report = {"source": "table", "table": self.table.path, "lam": lc.ridge_lambda,
                   "num_train": int(len(train)), "num_test": int(len(test)),
                   "train": surrogate_lib.regression_report(y[train], x[train] @ coef + bias),
                   "test": surrogate_lib.regression_report(y[test], y_pred)}
    self.coef, self.bias = surrogate_lib.ridge(x, y, lc.ridge_lambda)
    if jax.process_index() == 0:
      surrogate_lib.write_report(self.report, os.path.join(self.directory, "surrogate_report.json"))
      surrogate_lib.scatter_plot(y[test], y_pred, os.path.join(self.directory, "surrogate_scatter.png"),
                                 "NB201 latency surrogate, held-out (table)")
      t = self.report["test"]
      print(f"latency surrogate (table, {n} cells): held-out MAE {t['mae_ms']:.4f} ms, MAPE {t['mape_pct']:.2f}%, "
            f"R^2 {t['r2']:.3f}, Kendall tau {t['kendall_tau']:.3f}", flush=True)
    fastest = int(np.argmin(self.table.ms))
    hooks.check_target(lc.target_ms, float(self.table.ms[fastest]),
                       f"the fastest cell of the table, {self.table.cells[fastest]}", lc.penalty)
    return self.report

  def mode_report(self, cell: nb201.Cell) -> dict:
    """The found (mode) cell's table latency against the target: ``ratio = latency / target``."""
    return hooks.target_report(self.table.latency(cell),
                               float(nb201.cells_to_flat([cell])[0] @ self.coef + self.bias), self.config)

  def measure(self, z: PyTree) -> np.ndarray:
    return self.table.latencies(nb201.genotypes_from_arch(z))

  def control_params(self) -> dict[str, jax.Array]:
    return hooks.control_params(self.coef, self.bias)

  control_fn = predict

  def expected_latency(self, phi: PyTree) -> float:
    """``E_{z ~ p_phi}[g(z)]`` (exact: g is linear)."""
    return float(predict.expected(self.control_params(), phi, self.eps))

  def after_step(self, step: int, phi: PyTree) -> dict[str, float]:
    del step
    return {"latency_expected_ms": self.expected_latency(phi),
            "latency_mode_ms": self.table.latency(nb201.genotype_from_phi(phi))}

  def speculate(self, z: PyTree) -> None:
    del z  # a table needs no preparation

  def state_dict(self) -> dict:
    return {"coef": self.coef.tolist(), "bias": float(self.bias)}

  def load_state_dict(self, state: dict) -> None:
    self.coef, self.bias = np.asarray(state["coef"]), float(state["bias"])
