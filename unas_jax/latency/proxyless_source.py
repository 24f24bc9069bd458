r"""The latency sources of the ProxylessNAS space, as :class:`unas_jax.latency.hooks.LatencyHooks`.

:class:`ProxylessLatency` prices the architectures the search samples (job
``proxyless_search``, :mod:`unas_jax.search.proxyless`; docs/design.md sections 3 and 8)
and fits the linear surrogate ``g(z) = sum_ij l_ij z_ij + b`` that RELAX uses as control
(:data:`unas_jax.latency.additive.predict`).

Latency sources (``config.latency.source``):

* ``probe``: ``jit``-compile the discrete subnetwork for this device, time it
  (median of ``num_runs``), cache the result in ``<workdir>/latency`` (a resumed
  run never re-measures). While the device runs step ``t``, the architectures of
  step ``t + 1`` are predicted from the current phi and the next step's Gumbel
  noise (known in advance from the key) and compiled in a background thread;
  phi moves slowly, so most are the ones actually drawn, and the step waits for
  the timing only.
* ``lut``: a ProxylessNAS-format YAML of per-block latencies measured once on a
  target device (e.g. a phone), summed over the network's blocks.
* ``blocks``: a per-block table timed on this device (:mod:`unas_jax.latency.blocks`:
  one compile per distinct block, 68 for the space instead of one per architecture),
  scaled by one factor fitted to ``blocks_calibration_archs`` whole-network
  measurements and checked against ``blocks_test_archs`` others (held-out MAPE and
  Kendall tau in ``<workdir>/latency/blocks_report.json``); then summed per
  architecture like a LUT. The way to search on an accelerator without thousands of
  whole-network compiles (and autotuning runs) before step 1.

The probe times in ``latency.dtype`` (default: the compute dtype ``model.dtype``).

The surrogate is fitted by ridge regression on ``surrogate_archs`` measured
random architectures before the search (held-out MAE, MAPE, R^2, Kendall tau and
a scatter plot in ``<workdir>/latency``), saved with checkpoints, and optionally
refitted every ``refit_every`` steps from the measurements the search keeps
making. A target below the fastest architecture is refused before step 1
(:func:`unas_jax.latency.hooks.check_target`).
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from chex import ArrayTree as PyTree

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError
from unas_jax.latency import additive
from unas_jax.latency import blocks as blocks_lib
from unas_jax.latency import hooks
from unas_jax.latency import lut as lut_lib
from unas_jax.latency import probe as probe_lib
from unas_jax.latency import surrogate as surrogate_lib
from unas_jax.latency import tables
from unas_jax.parallel import distributed
from unas_jax.spaces import proxyless as space
from unas_jax.utils import files

SOURCES = ("probe", "lut", "blocks")
STATISTICS = ("median", "min")


def probe_config(config: ml_collections.ConfigDict, num_classes: int) -> probe_lib.ProbeConfig:
  """The probe's settings from ``config.latency``; its dtype defaults to the compute dtype ``model.dtype``."""
  lc = config.latency
  return probe_lib.ProbeConfig(
      batch_size=lc.batch_size, resolution=lc.resolution, dtype=lc.dtype or config.model.dtype,
      widths=config.model.widths, num_classes=num_classes, num_runs=lc.num_runs, num_warmup=lc.num_warmup,
      depthwise_impl=config.model.depthwise_impl, seed=config.seed)


class ProxylessLatency:
  """The latency hooks of :class:`unas_jax.latency.hooks.LatencyHooks` for the ProxylessNAS space.

  Multi-host: process 0 alone measures (its probe times on a device local to it) and fits
  the surrogate; every latency value and every surrogate it makes reaches the other
  processes through :func:`unas_jax.parallel.distributed.broadcast_from_main`, so all
  processes feed bitwise-identical latency inputs and control to the step. Every process
  therefore calls :meth:`fit`, :meth:`measure` and :meth:`after_step` at the same points
  (they are collectives); :meth:`measure_local` (final genotype) is process 0's alone.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, num_classes: int):
    lc = config.latency
    check_choice("latency.source", lc.source, SOURCES)
    check_choice("latency.statistic", lc.statistic, STATISTICS)
    self.config = lc
    self.eps = config.search.eps
    self.directory = os.path.join(workdir, "latency")
    files.makedirs(self.directory)
    self.is_main = jax.process_index() == 0
    self.probe = None
    self.table = None
    self.timing_device = None
    if not self.is_main:
      pass  # process 0 measures and fits; this process receives (see the class docstring)
    elif lc.source == "lut":
      lut_path = tables.resolve(lc.lut_path)
      if not lut_path or not files.is_file(lut_path):
        raise ConfigError(f"latency.lut_path={lc.lut_path!r} is not a file; give a ProxylessNAS-format latency "
                          f"YAML or {tables.MOBILE_TABLE!r} (the published phone table), or use latency.source=probe")
      # The table prices the deployed network, whose widths may differ from the
      # (narrower) supernet that estimates accuracy: latency.widths, else model.widths.
      self.table = lut_lib.LatencyLUT.from_yaml(lut_path).additive(
          lc.widths or config.model.widths, lc.resolution, lc.lut_num_classes)
    else:
      self.timing_device = probe_lib.timing_device(lc.reserve_device)
      self.probe = probe_lib.LatencyProbe(
          self.directory, probe_config(config, num_classes), compile_threads=lc.compile_threads,
          device=self.timing_device)
      if lc.source == "blocks":
        self.table = self._block_table()
    self.measurements = surrogate_lib.LatencyDataset()
    self.surrogate = None
    self.report: dict = {}

  def _block_table(self):
    """The calibrated per-block table (measured once per workdir, then read back)."""
    lc = self.config
    path = os.path.join(self.directory, "blocks_table.json")
    key = self.probe.key(space.uniform_genotype("k3_e3"))  # device, dtype, shapes, versions
    if files.exists(path):
      saved = files.read_json(path)
      if saved.get("key") == key:
        return additive.AdditiveLatency({k: np.asarray(v) for k, v in saved["table"].items()}, saved["bias"],
                               source="blocks*calibrated")
    print(f"latency: timing every distinct block on {self.probe.device_kind} ...", flush=True)
    table, block_stats = blocks_lib.measure_block_table(
        self.probe.config, rounds=lc.rounds, device=self.timing_device, gate=self.probe.gate,
        compile_threads=lc.compile_threads)
    n_cal, n_test = int(lc.blocks_calibration_archs), int(lc.blocks_test_archs)
    if n_cal < 1:
      raise ConfigError(f"latency.blocks_calibration_archs={n_cal} must be >= 1")
    genotypes = space.random_genotypes(lc.surrogate_seed + 1, n_cal + n_test)
    ms = self.probe.measure_many(genotypes, rounds=lc.rounds, chunk_size=lc.chunk_size)
    values = np.asarray([m.median_ms if lc.statistic == "median" else m.min_ms for m in ms])
    scaled, scale, fit_report = blocks_lib.calibrate(table, genotypes[:n_cal], values[:n_cal])
    report = {"scale": scale, "num_blocks": len(block_stats), "calibration": fit_report,
              "block_compile_s": float(sum(b["compile_s"] for b in block_stats.values())),
              "test": (surrogate_lib.regression_report(values[n_cal:], scaled.latencies(genotypes[n_cal:]))
                       if n_test >= 2 else {})}
    surrogate_lib.write_report(report, os.path.join(self.directory, "blocks_report.json"))
    t = report["test"]
    if t:
      print(f"latency blocks: {len(block_stats)} blocks, scale {scale:.3f}; held-out whole networks ({n_test}): "
            f"MAPE {t['mape_pct']:.1f}%, Kendall tau {t['kendall_tau']:.3f}", flush=True)
    files.write_json(path, {"key": key, "bias": scaled.bias,
                            "table": {k: np.asarray(v).tolist() for k, v in scaled.table.items()},
                            "report": report}, indent=None)
    return scaled

  # -- measuring

  def _measure_genotypes(self, genotypes: list[space.ProxylessGenotype]) -> np.ndarray:
    if self.table is not None:
      return np.asarray([self.table.latency(g) for g in genotypes])
    values = []
    for g in genotypes:
      m = self.probe.result(g)
      values.append(m.median_ms if self.config.statistic == "median" else m.min_ms)
    return np.asarray(values)

  def _measure_everywhere(self, genotypes: list[space.ProxylessGenotype]) -> np.ndarray:
    """Process 0's measurements (float64 ms), on every process (a collective)."""
    values = self._measure_genotypes(genotypes) if self.is_main else np.zeros(len(genotypes))
    return distributed.broadcast_from_main(np.asarray(values, np.float64))

  def measure(self, z: PyTree) -> np.ndarray:
    genotypes = space.genotypes_from_arch(z)
    values = self._measure_everywhere(genotypes)
    self.measurements.extend(genotypes, values)
    return values

  def measure_local(self, genotypes: list[space.ProxylessGenotype]) -> np.ndarray:
    """Process 0 only (not a collective): e.g. the final genotype's latency (the whole network
    timed when there is a probe, also for ``source=blocks``)."""
    if not self.is_main:
      raise RuntimeError("ProxylessLatency.measure_local runs on process 0 only")
    if self.probe is not None:
      return np.asarray([self.probe.result(g).median_ms if self.config.statistic == "median" else
                         self.probe.result(g).min_ms for g in genotypes])
    return self._measure_genotypes(genotypes)

  def _share_surrogate(self) -> None:
    """Replaces the surrogate on every process by process 0's, bit for bit (a collective)."""
    n = space.FLAT_DIM
    arrays = (self.surrogate.to_arrays() if self.is_main else
              {"coef": np.zeros(n), "bias": np.zeros(()), "lam": np.zeros(()), "num_fit": np.zeros((), np.int64)})
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    arrays["num_fit"] = arrays["num_fit"].astype(np.int64)
    shared = distributed.broadcast_from_main(arrays)
    report = None if self.surrogate is None else self.surrogate.report
    self.surrogate = surrogate_lib.LinearSurrogate.from_arrays(shared)
    self.surrogate.report = report

  def speculate(self, z: PyTree) -> None:
    """Compiles the architectures a coming step will probably draw, in the background."""
    if self.probe is not None:
      self.probe.submit(space.genotypes_from_arch(z))

  # -- the surrogate

  def fit(self) -> dict:
    """Measures ``surrogate_archs`` random architectures and fits the surrogate (once per workdir).

    Process 0 measures, fits and writes; the others receive its surrogate (a collective).
    """
    if self.is_main:
      self._fit_main()
    self._share_surrogate()
    t = self.report.get("test", {})
    if self.is_main and t:
      print(f"latency surrogate: held-out MAE {t.get('mae_ms', float('nan')):.3f} ms, R^2 {t.get('r2', float('nan')):.3f}, "
            f"Kendall tau {t.get('kendall_tau', float('nan')):.3f}", flush=True)
    self._check_target()
    return self.report

  def _fit_main(self) -> None:
    lc = self.config
    path = os.path.join(self.directory, "surrogate.npz")
    if files.exists(path):
      self.surrogate = surrogate_lib.LinearSurrogate.load(path)
      self.report = files.read_json(os.path.join(self.directory, "surrogate_report.json"))
      return
    genotypes = space.random_genotypes(lc.surrogate_seed, lc.surrogate_archs)
    if self.table is not None:
      values = self._measure_genotypes(genotypes)
    else:
      print(f"latency: measuring {len(genotypes)} random architectures on {self.probe.device_kind} "
            f"(batch {lc.batch_size}, {lc.resolution}x{lc.resolution}, {self.probe.config.dtype}) to fit the "
            "surrogate ...", flush=True)
      progress = lambda done, total: print(f"  latency: {done}/{total} measured", flush=True)  # noqa: E731
      ms = self.probe.measure_many(genotypes, rounds=lc.rounds, chunk_size=lc.chunk_size, progress_fn=progress)
      values = np.asarray([m.median_ms if lc.statistic == "median" else m.min_ms for m in ms])
    self.surrogate, report = surrogate_lib.fit_surrogate(genotypes, values, lam=lc.ridge_lambda)
    self.report = {k: v for k, v in report.items() if k not in ("y_test", "y_pred")}
    if self.probe is not None:
      self.report["probe"] = self.probe.stats()
    self.surrogate.save(path)
    surrogate_lib.write_report(self.report, os.path.join(self.directory, "surrogate_report.json"))
    surrogate_lib.scatter_plot(report["y_test"], report["y_pred"],
                               os.path.join(self.directory, "surrogate_scatter.png"),
                               f"latency surrogate, held-out ({lc.source})")
    self.measurements.extend(genotypes, values)

  def _check_target(self) -> None:
    """A target below the fastest architecture can never be met: say so now (a collective)."""
    lc = self.config
    if lc.penalty not in hooks.TARGET_PENALTIES:
      return  # no target to meet (linear): spare the fastest architecture's measurement
    fastest = self.surrogate.min_genotype()
    measured = float(self._measure_everywhere([fastest])[0])
    hooks.check_target(lc.target_ms, min(measured, self.surrogate.min_latency()),
                       f"{measured:.3f} ms measured for the fastest architecture, {fastest}", lc.penalty)

  def mode_report(self, genotype: space.ProxylessGenotype) -> dict:
    """The found (mode) architecture's latency against the target: ``ratio = latency / target``."""
    return hooks.target_report(float(self.measure_local([genotype])[0]), float(self.surrogate.latency(genotype)),
                               self.config)

  # -- the loop's interface

  def control_params(self):
    return self.surrogate.control_params()

  control_fn = additive.predict

  def after_step(self, step: int, phi: PyTree) -> dict[str, float]:
    out = {"latency_expected_ms": float(additive.predict.expected(self.control_params(), phi, self.eps)),
           "latency_measured_archs": float(len(self.measurements))}
    if self.config.refit_every and step % self.config.refit_every == 0:
      if self.is_main:
        self.surrogate, report = self.measurements.refit(lam=self.config.ridge_lambda)
        out["latency_surrogate_mae"] = float(report["test"]["mae_ms"])
      self._share_surrogate()
    if self.probe is not None:
      out["latency_probe_archs_per_min"] = float(self.probe.stats()["archs_per_min"])
    return out

  def state_dict(self) -> dict:
    return {"surrogate": {k: np.asarray(v).tolist() for k, v in self.surrogate.to_arrays().items()},
            "num_measurements": len(self.measurements)}

  def load_state_dict(self, state: dict) -> None:
    self.surrogate = surrogate_lib.LinearSurrogate.from_arrays({k: np.asarray(v) for k, v in state["surrogate"].items()})

  def close(self) -> None:
    if self.probe is not None:
      self.probe.close()
