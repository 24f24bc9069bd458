"""latency.source=blocks: one compile per distinct block, a calibrated sum, its held-out error; probe keys."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from unas_jax.latency import blocks as B
from unas_jax.latency import probe as P
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.latency import proxyless_source
from unas_jax.spaces import proxyless as sp

WIDTHS = (8, 8, 8, 8, 8, 8, 8, 8, 16)
TINY = P.ProbeConfig(batch_size=2, resolution=16, widths=WIDTHS, num_classes=4, num_runs=3, num_warmup=1,
                     depthwise_impl="xla")


def _distinct_blocks(config):
  ids = {"stem", "head"}
  for spec, h in zip(sp.layer_specs(config.widths), sp.feature_sizes(config.resolution)):
    ids |= {B.block_id(spec, op, h) for op in sp.MBCONV_OPS}
  return ids


def test_block_table_compiles_each_distinct_block_once(monkeypatch):
  compiled = []
  original = B.compile_forward

  def counting(module, shape, *args, **kwargs):
    compiled.append(shape)
    return original(module, shape, *args, **kwargs)

  monkeypatch.setattr(B, "compile_forward", counting)
  table, stats = B.measure_block_table(TINY, rounds=1, compile_threads=2)
  distinct = _distinct_blocks(TINY)
  # Layers of one shape share blocks: far fewer compiles than 21 layers x 6 ops.
  assert len(compiled) == len(stats) == len(distinct) < 21 * 6 and set(stats) == distinct
  assert all(s["median_ms"] > 0 and s["num_runs"] == 3 for s in stats.values())
  g = sp.random_genotypes(0, 1)[0]
  by_hand = stats["stem"]["median_ms"] + stats["head"]["median_ms"] + sum(
      0.0 if op == "zero" else stats[B.block_id(spec, op, h)]["median_ms"]
      for spec, op, h in zip(sp.layer_specs(WIDTHS), g.ops, sp.feature_sizes(TINY.resolution)))
  assert table.latency(g) == pytest.approx(by_hand, rel=1e-12)


def test_calibration_scale_is_the_least_squares_ratio():
  rng = np.random.default_rng(0)
  table = AdditiveLatency({s.name: rng.uniform(0.1, 1.0, len(s.choices)) for s in sp.layer_specs(WIDTHS)}, 1.0)
  gs = sp.random_genotypes(1, 12)
  scaled, scale, report = B.calibrate(table, gs, 2.5 * table.latencies(gs))
  assert scale == pytest.approx(2.5) and report["mape_pct"] < 1e-9
  assert scaled.latency(gs[0]) == pytest.approx(2.5 * table.latency(gs[0]))
  noisy = 2.5 * table.latencies(gs) * rng.uniform(0.9, 1.1, len(gs))
  assert B.calibrate(table, gs, noisy)[2]["mape_pct"] > 1.0  # the report sees the error


def _config(workdir_source="blocks", model_dtype=None, latency_dtype=""):
  config = ml_collections.ConfigDict({
      "seed": 0, "search": {"eps": 0.0},
      "model": {"widths": ",".join(map(str, WIDTHS)), "depthwise_impl": "xla", "dtype": model_dtype or "float32"},
      "latency": {"source": workdir_source, "statistic": "median", "batch_size": 2, "resolution": 16,
                  "dtype": latency_dtype, "num_runs": 3, "num_warmup": 1, "compile_threads": 0, "rounds": 1,
                  "chunk_size": 8, "surrogate_archs": 200, "surrogate_seed": 0, "ridge_lambda": 1.0,
                  "refit_every": 0, "penalty": "linear", "target_ms": 1e3, "blocks_calibration_archs": 2,
                  "blocks_test_archs": 3, "reserve_device": False, "estimator": "relax"}})
  return config


def test_blocks_source_fits_reports_held_out_error_and_is_reused(tmp_path, monkeypatch):
  config = _config()
  latency = proxyless_source.ProxylessLatency(config, str(tmp_path), 4)
  report = json.loads((tmp_path / "latency" / "blocks_report.json").read_text())
  assert report["num_blocks"] == len(_distinct_blocks(TINY)) and report["scale"] > 0
  assert report["test"]["n"] == 3 and np.isfinite(report["test"]["mape_pct"])
  assert -1.0 <= report["test"]["kendall_tau"] <= 1.0
  latency.fit()  # the surrogate on table sums: free, any number of architectures
  gs = sp.random_genotypes(5, 4)
  values = latency.measure(jax.tree.map(np.asarray, sp.genotype_to_arch(gs)))
  np.testing.assert_allclose(values, latency.table.latencies(gs), rtol=1e-12)
  latency.close()
  # A second run on the workdir reads the table back: no block is timed again.
  monkeypatch.setattr(B, "measure_block_table", lambda *a, **k: pytest.fail("re-measured the block table"))
  again = proxyless_source.ProxylessLatency(config, str(tmp_path), 4)
  np.testing.assert_allclose(again.table.latencies(gs), latency.table.latencies(gs), rtol=0)
  again.close()


def test_probe_dtype_defaults_to_the_compute_dtype_and_keys_hold_versions():
  assert proxyless_source.probe_config(_config(), 4).dtype == "float32"
  assert proxyless_source.probe_config(_config(model_dtype="bfloat16"), 4).dtype == "bfloat16"
  assert proxyless_source.probe_config(_config(model_dtype="bfloat16", latency_dtype="float16"), 4).dtype == "float16"
  probe = P.LatencyProbe(None, TINY)
  key = probe.key(sp.random_genotypes(0, 1)[0])
  import jaxlib  # pylint: disable=import-outside-toplevel
  assert f"jax{jax.__version__}" in key and f"jaxlib{jaxlib.__version__}" in key
  assert key.split("|")[2].startswith(jax.local_devices()[0].platform + ":")  # the backend
  assert "|float32|" in key
  assert probe.device == jax.local_devices()[0]
  assert probe._pool._max_workers == P.default_compile_threads()  # pylint: disable=protected-access
  probe.close()
