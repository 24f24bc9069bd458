r"""How well the per-block table (``latency.source=blocks``) predicts whole-network latency, on this device.

Times every distinct block of the ProxylessNAS space once (:func:`unas_jax.latency.blocks.measure_block_table`,
one compile per distinct block), times ``--archs`` random whole networks with the probe
(:meth:`unas_jax.latency.probe.LatencyProbe.measure_many`, one compile each), fits the table's one
scale on the first ``--calibration`` of them and reports, on the rest (held out): MAPE, Kendall tau,
R^2 of the calibrated sum, and the uncalibrated sum's MAPE. Also the cost of each source: compiles
and seconds to price the space (blocks) versus per architecture (whole networks).

Defaults: the ``proxyless_latency.py:quick`` network (widths 16,8,16,16,24,32,48,64,128, 32x32,
batch 16, 10 classes), on this machine's first device.

    python experiments/latency_blocks_report.py --out=experiments/results/latency_blocks_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from unas_jax.latency import blocks as blocks_lib
from unas_jax.latency import probe as probe_lib
from unas_jax.latency.surrogate import regression_report
from unas_jax.spaces import proxyless as space


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--widths", default="16,8,16,16,24,32,48,64,128")
  p.add_argument("--resolution", type=int, default=32)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--num_runs", type=int, default=10)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--archs", type=int, default=40, help="whole networks timed (calibration + held out)")
  p.add_argument("--calibration", type=int, default=10)
  p.add_argument("--compile_threads", type=int, default=0, help="0: one per core")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  config = probe_lib.ProbeConfig(batch_size=args.batch, resolution=args.resolution, dtype=args.dtype,
                                 widths=args.widths, num_classes=args.classes, num_runs=args.num_runs)
  device = probe_lib.timing_device()
  load_start = os.getloadavg()
  t0 = time.perf_counter()
  table, stats = blocks_lib.measure_block_table(config, rounds=args.rounds, device=device,
                                                compile_threads=args.compile_threads)
  blocks_s = time.perf_counter() - t0
  print(f"blocks: {len(stats)} distinct blocks compiled and timed in {blocks_s:.1f} s "
        f"(compile {sum(s['compile_s'] for s in stats.values()):.1f} s summed over threads)", flush=True)
  genotypes = space.random_genotypes(args.seed + 1, args.archs)
  t0 = time.perf_counter()
  with probe_lib.LatencyProbe(None, config, compile_threads=args.compile_threads, device=device) as probe:
    ms = probe.measure_many(genotypes, rounds=args.rounds, chunk_size=16)
    probe_stats = probe.stats()
  whole_s = time.perf_counter() - t0
  measured = np.asarray([m.median_ms for m in ms])
  print(f"whole networks: {args.archs} compiled and timed in {whole_s:.1f} s "
        f"({60 * args.archs / whole_s:.1f} architectures/min)", flush=True)
  k = args.calibration
  scaled, scale, fit = blocks_lib.calibrate(table, genotypes[:k], measured[:k])
  held_out = regression_report(measured[k:], scaled.latencies(genotypes[k:]))
  raw = regression_report(measured[k:], table.latencies(genotypes[k:]))
  spread = regression_report(measured[k:], np.full(len(measured) - k, np.median(measured[:k])))
  print(f"held out ({args.archs - k} networks, {measured[k:].min():.3f}-{measured[k:].max():.3f} ms): "
        f"calibrated block sum MAPE {held_out['mape_pct']:.1f}%, Kendall tau {held_out['kendall_tau']:.3f}, "
        f"R^2 {held_out['r2']:.3f} (scale {scale:.3f}); uncalibrated MAPE {raw['mape_pct']:.1f}%, "
        f"tau {raw['kendall_tau']:.3f}; a constant (the calibration median) MAPE {spread['mape_pct']:.1f}%")
  result = {
      "device_kind": probe_lib.device_kind(device), "versions": probe_lib.versions(),
      "config": {k_: getattr(config, k_) for k_ in ("batch_size", "resolution", "dtype", "num_classes", "num_runs")},
      "widths": list(config.widths), "archs": args.archs, "calibration": k, "scale": scale,
      "held_out": held_out, "uncalibrated_held_out": raw, "constant_predictor_held_out": spread,
      "calibration_fit": fit, "num_blocks": len(stats), "blocks_seconds": blocks_s, "whole_seconds": whole_s,
      "whole_archs_per_min": 60 * args.archs / whole_s, "probe_stats": probe_stats,
      "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "cpu_count": os.cpu_count(),
      "jax_devices": str(jax.devices()),
  }
  print(f"load average {load_start} -> {result['loadavg_end']} on {os.cpu_count()} cores")
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
  sys.exit(main())
