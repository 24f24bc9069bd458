r"""UNAS's latency surrogate: linear in the one-hot architecture, fitted by ridge regression.

.. math::
   g(z) = \sum_{ij} l_{ij} z_{ij} + b, \qquad
   (l, b) = \arg\min \sum_n (g(z_n) - y_n)^2 + \lambda \lVert l \rVert^2

on measured architectures ``(z_n, y_n)`` (docs/design.md section 8; UNAS: lambda = 1,
~10k random architectures, 80/20 split). ``z`` is the flattened one-hot architecture
(:func:`unas_jax.spaces.proxyless.flatten_arch`, 141 entries). Unlike the reference
(which appends a column of ones and penalises the intercept too), the intercept is
not penalised: the data are centred first, so the fit does not depend on the latency's
offset. ``g`` evaluated on a relaxed ``zeta`` is RELAX's control variate
(:meth:`LinearSurrogate.predict`); being additive, it also gives the smallest
reachable latency ``b + sum_i min_j l_ij``.
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import Sequence

from etils import epath
import numpy as np
import scipy.stats

from unas_jax.errors import ConfigError
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.spaces import proxyless as space
from unas_jax.utils import files


def ridge(x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> tuple[np.ndarray, float]:
  r"""``argmin ||x l + b - y||^2 + lam ||l||^2`` with an unpenalised intercept ``b`` (float64)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ConfigError(f"ridge needs x [N, D] and y [N], got {x.shape} and {y.shape}")
  if x.shape[0] < 2:
    raise ConfigError(f"need at least 2 measured architectures to fit the surrogate, got {x.shape[0]}")
  x_mean, y_mean = x.mean(0), y.mean()
  xc, yc = x - x_mean, y - y_mean
  gram = xc.T @ xc + lam * np.eye(x.shape[1])
  # lstsq, not solve: with lam = 0 the one-hot columns are collinear (each layer sums to 1);
  # the minimum-norm solution still gives the unique least-squares predictions.
  coef = np.linalg.lstsq(gram, xc.T @ yc, rcond=None)[0]
  return coef, float(y_mean - x_mean @ coef)


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """MAE (ms), MAPE (%), R^2, Kendall tau and the sample count."""
  y_true = np.asarray(y_true, np.float64)
  y_pred = np.asarray(y_pred, np.float64)
  err = y_pred - y_true
  ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
  tau = scipy.stats.kendalltau(y_true, y_pred)[0] if len(y_true) > 1 else float("nan")
  return {
      "n": int(len(y_true)),
      "mae_ms": float(np.mean(np.abs(err))),
      "mape_pct": float(100.0 * np.mean(np.abs(err) / np.abs(y_true))),
      "r2": float(1.0 - np.sum(err ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
      "kendall_tau": float(tau),
      "mean_ms": float(y_true.mean()),
  }


@dataclasses.dataclass
class LinearSurrogate(AdditiveLatency):
  """A fitted linear surrogate; an :class:`AdditiveLatency` (``predict`` is RELAX's control_fn).

  Attributes (besides the table and bias): ``lam``, ``num_fit`` (training examples), and
  ``report`` (held-out metrics, when fitted with :func:`fit_surrogate`).
  """
  lam: float = 1.0
  num_fit: int = 0
  report: dict | None = None

  @classmethod
  def fit(cls, genotypes: Sequence[space.ProxylessGenotype], latencies_ms: Sequence[float],
          lam: float = 1.0) -> "LinearSurrogate":
    """Ridge fit on all given measurements."""
    if len(genotypes) != len(latencies_ms):
      raise ConfigError(f"{len(genotypes)} architectures but {len(latencies_ms)} latencies")
    coef, bias = ridge(space.genotypes_to_flat(genotypes), np.asarray(latencies_ms), lam)
    base = AdditiveLatency.from_flat(coef, bias)
    return cls(base.table, base.bias, source="surrogate", lam=lam, num_fit=len(genotypes))

  def to_arrays(self) -> dict[str, np.ndarray]:
    """Plain arrays (checkpointable): coef [141], bias, lam, num_fit."""
    return {"coef": self.coef, "bias": np.asarray(self.bias), "lam": np.asarray(self.lam),
            "num_fit": np.asarray(self.num_fit)}

  @classmethod
  def from_arrays(cls, arrays, source: str = "surrogate") -> "LinearSurrogate":
    base = AdditiveLatency.from_flat(np.asarray(arrays["coef"]), float(np.asarray(arrays["bias"])))
    return cls(base.table, base.bias, source=source, lam=float(np.asarray(arrays.get("lam", 1.0))),
               num_fit=int(np.asarray(arrays.get("num_fit", 0))))

  def save(self, path: str) -> None:
    """``.npz`` of :meth:`to_arrays` (plus the report as JSON next to it, if any)."""
    buffer = io.BytesIO()
    np.savez(buffer, **self.to_arrays())
    files.write_bytes(path, buffer.getvalue())
    if self.report is not None:
      files.write_json(os.path.splitext(path)[0] + "_report.json", self.report, indent=2)

  @classmethod
  def load(cls, path: str) -> "LinearSurrogate":
    if not files.is_file(path):
      raise ConfigError(f"surrogate file {path!r} does not exist")
    with np.load(io.BytesIO(epath.Path(path).read_bytes())) as data:
      return cls.from_arrays(dict(data))


def fit_surrogate(genotypes: Sequence[space.ProxylessGenotype], latencies_ms: Sequence[float], *,
                  lam: float = 1.0, test_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[LinearSurrogate, dict]:
  """Fits on a random ``1 - test_fraction`` split, reports on the rest, refits on everything.

  Returns ``(surrogate, report)``; ``report`` has ``train`` and ``test`` metrics
  (:func:`regression_report`), ``lam``, and the held-out ``y_test`` / ``y_pred`` lists
  for plotting. The returned surrogate is refitted on all measurements (the held-out
  numbers describe a fit on 80%, a slightly pessimistic estimate of the final one).
  """
  n = len(genotypes)
  if not 0.0 < test_fraction < 1.0:
    raise ConfigError(f"test_fraction={test_fraction} must lie in (0, 1)")
  n_test = max(1, int(round(test_fraction * n)))
  if n - n_test < 2:
    raise ConfigError(f"need more measured architectures to fit and test the surrogate (got {n})")
  y = np.asarray(latencies_ms, np.float64)
  perm = np.random.default_rng(seed).permutation(n)
  test, train = perm[:n_test], perm[n_test:]
  split_fit = LinearSurrogate.fit([genotypes[i] for i in train], y[train], lam)
  y_pred = split_fit.latencies([genotypes[i] for i in test])
  report = {
      "lam": lam, "num_train": int(len(train)), "num_test": int(len(test)),
      "train": regression_report(y[train], split_fit.latencies([genotypes[i] for i in train])),
      "test": regression_report(y[test], y_pred),
      "y_test": y[test].tolist(), "y_pred": np.asarray(y_pred).tolist(),
  }
  final = LinearSurrogate.fit(list(genotypes), y, lam)
  final.report = {k: v for k, v in report.items() if k not in ("y_test", "y_pred")}
  return final, report


def write_report(report: dict, path: str) -> None:
  files.write_json(path, report, indent=2)


def scatter_plot(y_true: Sequence[float], y_pred: Sequence[float], path: str, title: str = "") -> None:
  """Predicted vs measured latency (held-out), with the identity line, as a PNG."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  y_true = np.asarray(y_true)
  y_pred = np.asarray(y_pred)
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  ax.scatter(y_true, y_pred, s=10, alpha=0.7)
  lo = float(min(y_true.min(), y_pred.min()))
  hi = float(max(y_true.max(), y_pred.max()))
  ax.plot([lo, hi], [lo, hi], "k--", lw=1)
  m = regression_report(y_true, y_pred)
  ax.set_xlabel("measured latency (ms)")
  ax.set_ylabel("predicted latency (ms)")
  ax.set_title(title or "latency surrogate (held out)", fontsize=10)
  ax.text(0.03, 0.97, f"n={m['n']}  MAE={m['mae_ms']:.3f} ms\nMAPE={m['mape_pct']:.1f}%  R²={m['r2']:.3f}\n"
          f"Kendall τ={m['kendall_tau']:.3f}", transform=ax.transAxes, va="top", fontsize=8)
  fig.tight_layout()
  files.save_figure(fig, path, dpi=120)
  plt.close(fig)


class LatencyDataset:
  """A growing set of measurements ``(genotype, ms)`` for (re)fitting the surrogate.

  Keeps the latest measurement of each architecture (a re-measurement replaces it).
  """

  def __init__(self):
    self._data: dict[str, tuple[space.ProxylessGenotype, float]] = {}

  def add(self, genotype: space.ProxylessGenotype, latency_ms: float) -> None:
    self._data[str(genotype)] = (genotype, float(latency_ms))

  def extend(self, genotypes, latencies_ms) -> None:
    for g, y in zip(genotypes, latencies_ms):
      self.add(g, y)

  def __len__(self) -> int:
    return len(self._data)

  @property
  def genotypes(self) -> list[space.ProxylessGenotype]:
    return [g for g, _ in self._data.values()]

  @property
  def latencies(self) -> np.ndarray:
    return np.array([y for _, y in self._data.values()])

  def refit(self, lam: float = 1.0, test_fraction: float = 0.2, seed: int = 0
            ) -> tuple[LinearSurrogate, dict]:
    """:func:`fit_surrogate` on everything measured so far."""
    return fit_surrogate(self.genotypes, self.latencies, lam=lam, test_fraction=test_fraction, seed=seed)
