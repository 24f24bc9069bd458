r"""Benchmarks the latency probe on this machine and fits the latency surrogate.

    PYTHONPATH=. python experiments/benchmark_latency_probe.py --out=/tmp/latency_bench [--num_archs=300]

Prints four tables and writes ``results.json``, ``surrogate_report.json`` and
``surrogate_scatter.png`` to ``--out``:

1. per architecture (built-ins, all-zero, all-k7_e6): compile time and latency
   (median, IQR) at two resolutions;
2. probe throughput (architectures per minute, compile + time) for: sequential
   (one thread, compile then time each), overlapped (2 background compile threads,
   exclusive timing), overlapped with timing *not* excluded from compiles (shows the
   latency inflation), and with JAX's persistent compilation cache cold and warm
   (each in a fresh process, as a resumed run would be);
3. the linear surrogate (ridge, lambda 1, 80/20 split) on ``--num_archs`` random
   architectures measured with interleaved, shuffled rounds;
4. the per-block table fast path (compiled blocks + one calibration scale) against
   the same measurements.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from unas_jax.latency import blocks as blocks_lib
from unas_jax.latency import probe as P
from unas_jax.latency import surrogate as S
from unas_jax.spaces import proxyless as sp


def _named_archs():
  return {"unas_proxyless": sp.BUILTIN_GENOTYPES["unas_proxyless"],
          "proxylessnas_gpu": sp.BUILTIN_GENOTYPES["proxylessnas_gpu"],
          "all_zero(k3_e3)": sp.all_zero_genotype(), "all_k7_e6": sp.uniform_genotype("k7_e6")}


def per_arch(args) -> list[dict]:
  rows = []
  for res, batch in ((args.res_a, args.batch_a), (args.res_b, args.batch_b)):
    cfg = P.ProbeConfig(batch_size=batch, resolution=res, widths=args.widths, num_classes=args.num_classes,
                        num_runs=args.num_runs)
    with P.LatencyProbe(None, cfg) as probe:
      named = _named_archs()
      ms = probe.measure_many(list(named.values()), rounds=3, chunk_size=len(named))
      for (name, _), m in zip(named.items(), ms):
        rows.append({"arch": name, "resolution": res, "batch": batch, "compile_s": m.compile_s,
                     "median_ms": m.median_ms, "iqr_ms": m.iqr_ms, "std_ms": m.std_ms})
  print("\n== 1. per architecture (widths %s, %d classes, %d runs in 3 interleaved rounds)" %
        (args.widths, args.num_classes, args.num_runs))
  print(f"{'arch':18s} {'res':>4s} {'batch':>5s} {'compile s':>9s} {'median ms':>9s} {'IQR ms':>7s} {'std ms':>7s}")
  for r in rows:
    print(f"{r['arch']:18s} {r['resolution']:4d} {r['batch']:5d} {r['compile_s']:9.2f} {r['median_ms']:9.3f} "
          f"{r['iqr_ms']:7.3f} {r['std_ms']:7.3f}")
  return rows


def _throughput_run(cfg, genotypes, *, threads, exclusive, overlap, pcache=None) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    with P.LatencyProbe(workdir, cfg, compile_threads=threads, exclusive_timing=exclusive,
                        persistent_cache_dir=pcache) as probe:
      if overlap:
        probe.submit(genotypes)
      ms = [probe.result(g) for g in genotypes]
      s = probe.stats()
    wall = time.perf_counter() - t0
  return {"archs_per_min": 60.0 * len(genotypes) / wall, "wall_s": wall, "mean_compile_s": s["mean_compile_s"],
          "median_latency_ms": float(np.median([m.median_ms for m in ms])),
          "latencies_ms": [m.median_ms for m in ms]}


def throughput(args) -> dict:
  cfg = P.ProbeConfig(batch_size=args.batch_a, resolution=args.res_a, widths=args.widths,
                      num_classes=args.num_classes, num_runs=args.num_runs)
  genotypes = sp.random_genotypes(1000, args.num_throughput)
  out = {
      "sequential": _throughput_run(cfg, genotypes, threads=1, exclusive=True, overlap=False),
      "overlap (2 threads, exclusive timing)": _throughput_run(cfg, genotypes, threads=2, exclusive=True,
                                                               overlap=True),
      "overlap, timing NOT exclusive": _throughput_run(cfg, genotypes, threads=2, exclusive=False, overlap=True),
  }
  # Persistent compilation cache: a fresh process each, so nothing is cached in memory.
  with tempfile.TemporaryDirectory() as pcache:
    for label in ("persistent cache cold (overlap)", "persistent cache warm (overlap)"):
      cmd = [sys.executable, __file__, "--mode=throughput_pcache", f"--pcache={pcache}",
             f"--num_throughput={args.num_throughput}", f"--res_a={args.res_a}", f"--batch_a={args.batch_a}",
             f"--widths={','.join(map(str, sp.resolve_widths(args.widths)))}", f"--num_classes={args.num_classes}",
             f"--num_runs={args.num_runs}"]
      res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
      out[label] = json.loads(res.stdout.strip().splitlines()[-1])
  print(f"\n== 2. probe throughput ({args.num_throughput} random archs, res {args.res_a}, batch {args.batch_a}; "
        "wall time includes building, compiling and timing)")
  print(f"{'mode':40s} {'archs/min':>9s} {'compile s/arch':>14s} {'median latency ms':>17s}")
  for k, v in out.items():
    print(f"{k:40s} {v['archs_per_min']:9.1f} {v['mean_compile_s']:14.2f} {v['median_latency_ms']:17.3f}")
  a = np.array(out["overlap (2 threads, exclusive timing)"]["latencies_ms"])
  b = np.array(out["overlap, timing NOT exclusive"]["latencies_ms"])
  print(f"latency measured while compiling / exclusive: median ratio {np.median(b / a):.2f}")
  out["inflation_median_ratio"] = float(np.median(b / a))
  return out


def surrogate(args) -> dict:
  """Measures ``num_archs`` random architectures (all compiled first, then timed in ``surrogate_rounds``
  interleaved, shuffled rounds over *all* of them, so that load drifts on a shared machine spread
  evenly), then fits the surrogate on the medians and, for comparison, on the minima."""
  cfg = P.ProbeConfig(batch_size=args.batch_a, resolution=args.res_a, widths=args.widths,
                      num_classes=args.num_classes, num_runs=args.surrogate_runs)
  genotypes = sp.random_genotypes(0, args.num_archs)
  os.makedirs(args.out, exist_ok=True)
  t0 = time.perf_counter()
  with P.LatencyProbe(args.out, cfg, compile_threads=2, persistent_cache_dir=args.pcache) as probe:
    def progress(done, total):
      print(f"  measured {done}/{total} in {time.perf_counter() - t0:.0f} s", flush=True)
    ms = probe.measure_many(genotypes, rounds=args.surrogate_rounds, chunk_size=args.chunk or len(genotypes),
                            progress_fn=progress)
    stats = probe.stats()
  wall = time.perf_counter() - t0
  out = {"n": len(ms), "wall_s": wall, "num_runs": cfg.num_runs, "rounds": args.surrogate_rounds,
         "genotypes": [str(g) for g in genotypes]}
  print(f"\n== 3. surrogate (ridge lambda 1, 80/20) on {len(ms)} random archs, {cfg.num_runs} runs each in "
        f"{args.surrogate_rounds} interleaved rounds over all archs; measured in {wall:.0f} s = "
        f"{60 * len(ms) / wall:.1f} archs/min, mean compile {stats['mean_compile_s']:.2f} s")
  for stat in ("median_ms", "min_ms"):
    y = np.array([getattr(m, stat) for m in ms])
    fitted, report = S.fit_surrogate(genotypes, y, lam=1.0)
    t = report["test"]
    print(f"  on {stat:9s}: range {y.min():.2f}..{y.max():.2f} ms; held-out n={t['n']}: MAE {t['mae_ms']:.3f} ms, "
          f"MAPE {t['mape_pct']:.1f}%, R^2 {t['r2']:.3f}, Kendall tau {t['kendall_tau']:.3f} "
          f"(train R^2 {report['train']['r2']:.3f})")
    out[stat] = {"latency_ms": y.tolist(),
                 "report": {k: v for k, v in report.items() if k not in ("y_test", "y_pred")}}
    if stat == "median_ms":
      fitted.save(os.path.join(args.out, "surrogate.npz"))
      S.write_report(out[stat]["report"], os.path.join(args.out, "surrogate_report.json"))
      S.scatter_plot(report["y_test"], report["y_pred"], os.path.join(args.out, "surrogate_scatter.png"),
                     f"linear surrogate: {args.widths} widths, res {cfg.resolution}, batch {cfg.batch_size}, CPU")
      print(f"  min reachable latency under the surrogate: {fitted.min_latency():.3f} ms")
  print(f"  median IQR of the runs {np.median([m.iqr_ms for m in ms]):.3f} ms")
  out["latency_ms"] = out["median_ms"]["latency_ms"]
  return out


def block_table(args, measured: dict) -> dict:
  cfg = P.ProbeConfig(batch_size=args.batch_a, resolution=args.res_a, widths=args.widths,
                      num_classes=args.num_classes, num_runs=args.num_runs)
  t0 = time.perf_counter()
  table, stats = blocks_lib.measure_block_table(cfg, rounds=3)
  wall = time.perf_counter() - t0
  genotypes = [sp.ProxylessGenotype.from_string(g) for g in measured["genotypes"]]
  y = np.array(measured["latency_ms"])
  n_cal = min(20, len(y) // 2)
  scaled, scale, _ = blocks_lib.calibrate(table, genotypes[:n_cal], y[:n_cal])
  rep = S.regression_report(y[n_cal:], scaled.latencies(genotypes[n_cal:]))
  print(f"\n== 4. per-block table: {len(stats)} blocks compiled+timed in {wall:.0f} s; scale {scale:.3f} "
        f"fitted on {n_cal} archs; on the other {rep['n']}: MAE {rep['mae_ms']:.3f} ms, MAPE {rep['mape_pct']:.1f}%, "
        f"R^2 {rep['r2']:.3f}, Kendall tau {rep['kendall_tau']:.3f}")
  return {"blocks": len(stats), "wall_s": wall, "scale": scale, "report": rep}


def accelerator(args) -> dict:
  """On a GPU: the paper's setting (GPU widths, 224x224, batch 32, 1000 classes), fp32 and bf16."""
  out = {}
  named = _named_archs()
  print(f"\n== accelerator: widths gpu, 224x224, batch {args.batch_gpu}, 1000 classes, {args.num_runs} runs "
        "in 3 interleaved rounds")
  print(f"{'arch':18s} {'dtype':>8s} {'compile s':>9s} {'median ms':>9s} {'IQR ms':>7s}")
  for dtype in ("float32", "bfloat16"):
    cfg = P.ProbeConfig(batch_size=args.batch_gpu, resolution=224, widths="gpu", num_classes=1000,
                        num_runs=args.num_runs, dtype=dtype)
    with P.LatencyProbe(args.out, cfg, compile_threads=4) as probe:
      ms = probe.measure_many(list(named.values()), rounds=3, chunk_size=len(named))
    for (name, _), m in zip(named.items(), ms):
      print(f"{name:18s} {dtype:>8s} {m.compile_s:9.2f} {m.median_ms:9.3f} {m.iqr_ms:7.3f}")
      out[f"{name}/{dtype}"] = {"compile_s": m.compile_s, "median_ms": m.median_ms, "iqr_ms": m.iqr_ms}
  cfg = P.ProbeConfig(batch_size=args.batch_gpu, resolution=224, widths="gpu", num_classes=1000,
                      num_runs=args.num_runs)
  genotypes = sp.random_genotypes(0, args.num_archs)
  t0 = time.perf_counter()
  with P.LatencyProbe(args.out, cfg, compile_threads=args.gpu_threads) as probe:
    ms = probe.measure_many(genotypes, rounds=3, chunk_size=32)
    stats = probe.stats()
  wall = time.perf_counter() - t0
  y = np.array([m.median_ms for m in ms])
  _, report = S.fit_surrogate(genotypes, y, lam=1.0)
  S.scatter_plot(report["y_test"], report["y_pred"], os.path.join(args.out, "surrogate_scatter_gpu.png"),
                 f"linear surrogate, {P.device_kind()}, 224, batch {args.batch_gpu}")
  t = report["test"]
  print(f"{len(y)} random archs in {wall:.0f} s ({60 * len(y) / wall:.1f} archs/min, {args.gpu_threads} compile "
        f"threads, mean compile {stats['mean_compile_s']:.2f} s); latency {y.min():.2f}..{y.max():.2f} ms")
  print(f"surrogate held-out n={t['n']}: MAE {t['mae_ms']:.3f} ms, MAPE {t['mape_pct']:.1f}%, R^2 {t['r2']:.3f}, "
        f"Kendall tau {t['kendall_tau']:.3f}")
  out["surrogate"] = {k: v for k, v in report.items() if k not in ("y_test", "y_pred")}
  out["probe_wall_s"] = wall
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="/tmp/benchmark_latency_probe")
  parser.add_argument("--mode", default="all", choices=["all", "per_arch", "throughput", "surrogate",
                                                        "throughput_pcache", "accelerator"])
  parser.add_argument("--widths", default="mobile")
  parser.add_argument("--num_classes", type=int, default=10)
  parser.add_argument("--res_a", type=int, default=32)
  parser.add_argument("--batch_a", type=int, default=16)
  parser.add_argument("--res_b", type=int, default=64)
  parser.add_argument("--batch_b", type=int, default=8)
  parser.add_argument("--num_runs", type=int, default=10)
  parser.add_argument("--num_throughput", type=int, default=8)
  parser.add_argument("--num_archs", type=int, default=200)
  parser.add_argument("--pcache", default=None)
  parser.add_argument("--surrogate_runs", type=int, default=60)
  parser.add_argument("--surrogate_rounds", type=int, default=6)
  parser.add_argument("--chunk", type=int, default=0, help="archs compiled before timing (0: all)")
  parser.add_argument("--batch_gpu", type=int, default=32)
  parser.add_argument("--gpu_threads", type=int, default=8)
  args = parser.parse_args()
  if "," in args.widths:
    args.widths = tuple(int(c) for c in args.widths.split(","))
  if args.mode == "throughput_pcache":
    cfg = P.ProbeConfig(batch_size=args.batch_a, resolution=args.res_a, widths=args.widths,
                        num_classes=args.num_classes, num_runs=args.num_runs)
    r = _throughput_run(cfg, sp.random_genotypes(1000, args.num_throughput), threads=2, exclusive=True,
                        overlap=True, pcache=args.pcache)
    print(json.dumps(r))
    return
  print(f"device: {P.device_kind()}")
  results = {"args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}}
  if args.mode == "accelerator":
    results["accelerator"] = accelerator(args)
  if args.mode in ("all", "per_arch"):
    results["per_arch"] = per_arch(args)
  if args.mode in ("all", "throughput"):
    results["throughput"] = throughput(args)
  if args.mode in ("all", "surrogate"):
    results["surrogate"] = surrogate(args)
    results["block_table"] = block_table(args, results["surrogate"])
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  print(f"\nwrote {args.out}/results.json" + (", surrogate_scatter.png" if "surrogate" in results else ""))


if __name__ == "__main__":
  main()
