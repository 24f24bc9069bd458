r"""NAS-Bench-201 with a latency target: the ablation's row for issue 13.

    PYTHONPATH=. nice -n 10 python experiments/nb201_latency_target.py \
        --npz=../shared/data/cifar10_subset.npz --table=../shared/data/nb201_accuracy.csv \
        --latency_table=/tmp/nb201_latency_cpu.csv --out=experiments/results/nb201_latency_target

The ablation's REBAR + L_val setting (``configs/nb201_cifar10.py:quick``, the
ablation's step count) with ``latency.source=table``: the latency table of
``experiments/nb201_latency_table.py`` (this CPU), the target its ``--quantile``
quantile (25% by default), each of ``--penalties`` (the lagrangian multiplier at its
defaults; ``lagrangian-mode`` with ``latency.constraint=mode``; ``lagrangian-expected-hinge``
with ``latency.lagrangian_term=hinge``; and the hinge at its defaults) for ``--seeds`` seeds. A found cell is
judged by both tables: its benchmark CIFAR-10 accuracy, its latency / target, and
beside them the best cell that meets the target and the mean of all cells that meet
it (what a random feasible cell would give). Resumable: one JSON per finished search
in ``<out>/runs``; ``--aggregate_only`` rebuilds ``results.md`` and ``results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb201_ablation  # noqa: E402  (the ablation's config, so the row is comparable)

ESTIMATOR, OBJECTIVE = "rebar", "val"


def target_ms(latency_table: str, quantile: float) -> float:
  from unas_jax.spaces import nb201_tables  # pylint: disable=import-outside-toplevel
  return float(np.quantile(nb201_tables.LatencyTable(latency_table).ms, quantile))


def feasible_summary(args, target: float) -> dict:
  """The cells that meet the target: how many, the best and the mean benchmark CIFAR-10 accuracy."""
  from unas_jax.spaces import nb201_tables  # pylint: disable=import-outside-toplevel
  bench = nb201_tables.BenchmarkTable(args.table)
  lat = nb201_tables.LatencyTable(args.latency_table)
  acc = np.asarray([bench.lookup(c).cifar10 for c in lat.cells])
  ok = lat.ms <= target
  best = int(np.argmax(np.where(ok, acc, -np.inf)))
  return {"num_cells": int(len(acc)), "num_feasible": int(ok.sum()), "best_feasible_cifar10": float(acc[best]),
          "best_feasible_arch": str(lat.cells[best]), "best_feasible_ms": float(lat.ms[best]),
          "mean_feasible_cifar10": float(acc[ok].mean()), "best_cifar10": float(acc.max()),
          "mean_cifar10": float(acc.mean())}


def run_one(args, penalty: str, seed: int, target: float) -> dict:
  from unas_jax.search import nb201 as nb201_search  # pylint: disable=import-outside-toplevel
  config = nb201_ablation.make_config(args, ESTIMATOR, OBJECTIVE, seed)
  config.latency.enabled = True
  config.latency.source = "table"
  config.latency.table_path = args.latency_table
  # "penalty[-constraint[-term[-selection[-min_ratio]]]]": e.g. "lagrangian-mode" (latency.constraint=mode: the mode
  # cell's latency held to ratio * target instead of E_p_phi[lat]), "lagrangian-expected-hinge"
  # (latency.lagrangian_term=hinge: lambda * relu(lat - target) / target),
  # "lagrangian-mode-hinge-constrained_mode" (latency.selection=constrained_mode: the found cell is
  # the most probable one whose surrogate latency meets the target),
  # "lagrangian-mode-hinge-constrained_mode-0.9" (latency.min_ratio=0.9: ... and uses at least 0.9
  # of it), "...-0.9-0" (latency.verify_rounds=0: judged by the surrogate alone; the default since
  # 2026-12-06 is 4 measured rounds, the table's look-ups here). The settings a label leaves out
  # are the defaults of the day it ran (command.sh dates each invocation; min_ratio did not exist
  # before 2026-12-01, i.e. 0; verify_rounds before 2026-12-06, i.e. 0).
  parts = penalty.split("-")
  config.latency.penalty = parts[0]
  if len(parts) > 1:
    config.latency.constraint = parts[1]
  if len(parts) > 2:
    config.latency.lagrangian_term = parts[2]
  if len(parts) > 3:
    config.latency.selection = parts[3]
  if len(parts) > 4:
    config.latency.min_ratio = float(parts[4])
  if len(parts) > 5:
    config.latency.verify_rounds = int(parts[5])
  config.latency.target_ms = target
  workdir = os.path.join(args.workdirs, f"{penalty}_seed{seed}")
  t0 = time.time()
  summary = nb201_search.run(config, workdir)
  history = [json.loads(l) for l in open(os.path.join(workdir, "history.jsonl"))]
  curve = [(r["step"], r["latency_expected_ms"]) for r in history
           if r.get("phase") == "search" and "latency_expected_ms" in r]
  return {"penalty": penalty, "seed": seed, "target_ms": target, "arch": summary["arch"],
          "benchmark": summary["benchmark"], "latency": summary["latency"], "parameter_free": summary["parameter_free"],
          "expected_ms_curve": curve, "wall_s_this_process": time.time() - t0, "steps": summary["steps"],
          "settings": {k: config.latency[k] for k in ("penalty", "c", "constraint", "lagrangian_term", "selection",
                                                        "lambda_lr", "damping", "ratio", "min_ratio",
                                                        "verify_rounds")}}


def aggregate(args, target: float) -> dict:
  runs_dir = os.path.join(args.out, "runs")
  runs = [json.load(open(os.path.join(runs_dir, f))) for f in sorted(os.listdir(runs_dir)) if f.endswith(".json")]
  feasible = feasible_summary(args, target)
  lines = [f"Target {target:.3f} ms (the {100 * args.quantile:g}% quantile of the latency table); "
           f"{feasible['num_feasible']} of {feasible['num_cells']} cells meet it: best CIFAR-10 "
           f"{feasible['best_feasible_cifar10']:.2f} ({feasible['best_feasible_arch']}, "
           f"{feasible['best_feasible_ms']:.3f} ms), mean {feasible['mean_feasible_cifar10']:.2f} "
           f"(all cells: best {feasible['best_cifar10']:.2f}, mean {feasible['mean_cifar10']:.2f}).", "",
           "| penalty | seed | found cell | CIFAR-10 | latency | latency / target | meets | best feasible - found |",
           "|---|---|---|---|---|---|---|---|"]
  for r in sorted(runs, key=lambda r: (r["penalty"], r["seed"])):
    lat = r["latency"]
    lines.append(f"| {r['penalty']} | {r['seed']} | `{r['arch']}` | {r['benchmark']['cifar10']:.2f} | "
                 f"{lat['measured_ms']:.3f} ms | {lat['ratio']:.3f} | {'yes' if lat['meets_target'] else 'no'} | "
                 f"{feasible['best_feasible_cifar10'] - r['benchmark']['cifar10']:.2f} |")
  for penalty in sorted({r["penalty"] for r in runs}):
    rs = [r for r in runs if r["penalty"] == penalty]
    acc = np.asarray([r["benchmark"]["cifar10"] for r in rs])
    ratio = np.asarray([r["latency"]["ratio"] for r in rs])
    lines.append(f"| **{penalty}, mean of {len(rs)}** | | | {acc.mean():.2f} | | {ratio.mean():.3f} | "
                 f"{sum(r['latency']['meets_target'] for r in rs)}/{len(rs)} | "
                 f"{feasible['best_feasible_cifar10'] - acc.mean():.2f} |")
  result = {"target_ms": target, "quantile": args.quantile, "feasible": feasible, "runs": runs}
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines), flush=True)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--npz", required=True)
  parser.add_argument("--table", required=True, help="NB201 benchmark table")
  parser.add_argument("--latency_table", required=True, help="NB201 latency table (arch,ms)")
  parser.add_argument("--quantile", type=float, default=0.25)
  parser.add_argument("--penalties", default="lagrangian,hinge")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=0, help=">0: override search.max_steps")
  parser.add_argument("--out", default="experiments/results/nb201_latency_target")
  parser.add_argument("--workdirs", default="/tmp/nb201_latency_target")
  parser.add_argument("--cache", default="/tmp/nb201_ablation_xla_cache")
  parser.add_argument("--aggregate_only", action="store_true")
  args = parser.parse_args()
  os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
  target = target_ms(args.latency_table, args.quantile)
  if not args.aggregate_only:
    path = os.path.join(args.out, "command.sh")
    with open(path, "a") as f:  # every invocation (e.g. one per penalty), in order
      if f.tell() == 0:
        f.write("# run from the repository root, PYTHONPATH=$PWD\n")
      f.write(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
      f.write("nice -n 10 python " + " ".join(shlex.quote(a) for a in sys.argv) + "\n")
    from unas_jax.utils import compilation_cache  # pylint: disable=import-outside-toplevel
    compilation_cache.enable(args.cache)
    for seed in range(args.seeds):
      for penalty in args.penalties.split(","):
        path = os.path.join(args.out, "runs", f"{penalty}_seed{seed}.json")
        if os.path.exists(path):
          continue
        print(f"=== {penalty} seed {seed}, target {target:.3f} ms ===", flush=True)
        record = run_one(args, penalty, seed, target)
        with open(path + ".tmp", "w") as f:
          json.dump(record, f, indent=1)
        os.replace(path + ".tmp", path)
        print(f"=== {penalty} seed {seed}: {record['arch']} CIFAR-10 {record['benchmark']['cifar10']:.2f}, "
              f"latency / target {record['latency']['ratio']:.3f}", flush=True)
  aggregate(args, target)


if __name__ == "__main__":
  main()
