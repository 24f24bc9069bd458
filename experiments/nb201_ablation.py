r"""The UNAS ablation on NAS-Bench-201 at the ``:quick`` proxy scale.

Estimators {REINFORCE (leave-one-out baseline), Gumbel-softmax, REBAR} x objectives
{L_val, L_gen}, ``--seeds`` searches each (``configs/nb201_cifar10.py:quick``), plus
random sampling of as many cells as each setting has searches. Every found cell
is judged by the benchmark table (its 200-epoch CIFAR-10 / CIFAR-100 /
ImageNet16-120 test accuracy).

    nice -n 10 python experiments/nb201_ablation.py \
        --npz=../shared/data/cifar10_subset.npz --table=../shared/data/nb201_accuracy.csv \
        --out=experiments/results/nb201_ablation --workdirs=/tmp/nb201_ablation

Resumable: each finished search writes ``<out>/runs/<setting>_seed<k>.json`` and is
skipped on a rerun; an interrupted search resumes from its checkpoint in
``--workdirs``. Runs are ordered seed by seed, so a partial sweep has balanced
settings. ``--aggregate_only`` rebuilds the table and plot from the JSON files.

Outputs in ``--out``: ``results.md`` (the table), ``results.json``, ``curves.png``
(benchmark CIFAR-10 accuracy of the mode cell over search steps, mean and range
over seeds per setting), ``command.sh``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np

SETTINGS = [  # (name, estimator, objective)
    ("reinforce_val", "reinforce", "val"), ("reinforce_gen", "reinforce", "gen"),
    ("gumbel_val", "gumbel_softmax", "val"), ("gumbel_gen", "gumbel_softmax", "gen"),
    ("rebar_val", "rebar", "val"), ("rebar_gen", "rebar", "gen"),
]
LABELS = {"reinforce_val": "REINFORCE (LOO) + L_val", "reinforce_gen": "REINFORCE (LOO) + L_gen",
          "gumbel_val": "Gumbel-softmax + L_val", "gumbel_gen": "Gumbel-softmax + L_gen",
          "rebar_val": "REBAR + L_val", "rebar_gen": "REBAR + L_gen (UNAS default)",
          "random": "random cells (no search)"}
# REINFORCE's baseline: leave-one-out over the batch's other per-example samples (an RLOO
# baseline), chosen over the moving average because with one architecture per example the
# per-sample losses share the batch's difficulty, which the other samples' mean removes.
REINFORCE_BASELINE = "leave_one_out"


def make_config(args, estimator: str, objective: str, seed: int):
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
  import nb201_cifar10  # pylint: disable=import-outside-toplevel
  config = nb201_cifar10.get_config("quick")
  config.data.npz_path = args.npz
  config.benchmark.table = args.table
  config.seed = seed
  config.search.estimator = estimator
  config.search.objective = objective
  config.search.baseline = REINFORCE_BASELINE
  if args.steps:
    config.search.max_steps = args.steps
  return config


def run_one(args, name: str, estimator: str, objective: str, seed: int) -> dict:
  from unas_jax.search import nb201 as nb201_search  # pylint: disable=import-outside-toplevel
  workdir = os.path.join(args.workdirs, f"{name}_seed{seed}")
  config = make_config(args, estimator, objective, seed)
  t0 = time.time()
  summary = nb201_search.run(config, workdir)
  wall = time.time() - t0
  history = [json.loads(l) for l in open(os.path.join(workdir, "history.jsonl"))]
  curve = [(r["step"], r["bench_cifar10"]) for r in history if r.get("phase") == "eval"]
  return {"setting": name, "estimator": estimator, "objective": objective, "seed": seed,
          "baseline": REINFORCE_BASELINE if estimator == "reinforce" else None,
          "arch": summary["arch"], "parameter_free": summary["parameter_free"], "benchmark": summary["benchmark"],
          "wall_s_this_process": wall, "compile_seconds": summary["compile_seconds"], "steps": summary["steps"],
          "curve": curve, "final_entropy": summary["final_eval"].get("entropy"),
          "load_avg_at_end": os.getloadavg()[0]}


def random_runs(args, n: int) -> tuple[list[dict], dict]:
  from unas_jax.spaces import nb201  # pylint: disable=import-outside-toplevel
  from unas_jax.spaces import nb201_tables  # pylint: disable=import-outside-toplevel
  table = nb201_tables.BenchmarkTable(args.table)
  out = []
  for seed in range(n):
    cell = nb201.random_cells(1000 + seed, 1)[0]
    out.append({"setting": "random", "seed": seed, "arch": str(cell), "parameter_free": cell.is_parameter_free(),
                "benchmark": table.lookup(cell).to_dict()})
  return out, table.summary()


def _claim(path: str) -> bool:
  """Claims a run for this process (a file holding its pid); False if a live process holds it."""
  if os.path.exists(path):
    try:
      pid = int(open(path).read().strip() or 0)
      os.kill(pid, 0)
      return False  # another worker is running it
    except (ValueError, ProcessLookupError):
      os.remove(path)  # left by a dead worker: take it over (the search resumes from its checkpoint)
    except PermissionError:
      return False
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    f.write(str(os.getpid()))
  return True


def _disconnected(arch: str) -> bool:
  from unas_jax.spaces import nb201  # pylint: disable=import-outside-toplevel
  return nb201.Cell.from_string(arch).is_disconnected()


def _mean_std(values):
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def aggregate(args) -> dict:
  runs_dir = os.path.join(args.out, "runs")
  runs = [json.load(open(os.path.join(runs_dir, f))) for f in sorted(os.listdir(runs_dir)) if f.endswith(".json")]
  by_setting = {name: [r for r in runs if r["setting"] == name] for name, _, _ in SETTINGS}
  n_random = max([len(v) for v in by_setting.values()] + [args.seeds])
  randoms, table_summary = random_runs(args, n_random)
  by_setting["random"] = randoms
  rows = []
  for name, rs in by_setting.items():
    if not rs:
      continue
    row = {"setting": name, "label": LABELS[name], "n": len(rs),
           "parameter_free": int(sum(r["parameter_free"] for r in rs)),
           "disconnected": int(sum(_disconnected(r["arch"]) for r in rs))}
    for ds in ("cifar10", "cifar100", "imagenet16_120"):
      row[ds] = _mean_std([r["benchmark"][ds] for r in rs])
    row["rank_cifar10_median"] = float(np.median([r["benchmark"]["rank_cifar10"] for r in rs]))
    if name != "random":
      row["wall_s"] = _mean_std([r["wall_s_this_process"] for r in rs])
    row["archs"] = [r["arch"] for r in rs]
    rows.append(row)
  result = {"rows": rows, "table": table_summary, "runs": runs, "random": randoms}
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
  lines = ["| setting | n | CIFAR-10 | CIFAR-100 | ImageNet16-120 | median rank (C-10) | parameter-free | disconnected | "
           "wall s / search |", "|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    fmt = lambda ms: f"{ms[0]:.2f} ± {ms[1]:.2f}"
    wall = f"{row['wall_s'][0]:.0f} ± {row['wall_s'][1]:.0f}" if "wall_s" in row else "-"
    lines.append(f"| {row['label']} | {row['n']} | {fmt(row['cifar10'])} | {fmt(row['cifar100'])} | "
                 f"{fmt(row['imagenet16_120'])} | {row['rank_cifar10_median']:.0f} | {row['parameter_free']}/{row['n']} | {row['disconnected']}/{row['n']} | "
                 f"{wall} |")
  lines.append("")
  lines.append(f"Table: {table_summary['num_cells']} cells, best CIFAR-10 {table_summary['best_cifar10']:.2f}, "
               f"mean {table_summary['mean_cifar10']:.2f}, median {table_summary['median_cifar10']:.2f}. "
               "Mean ± sample std over searches (seeds). Wall time on a shared, loaded 2-core CPU.")
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  _plot(by_setting, os.path.join(args.out, "curves.png"), table_summary)
  return result


def _plot(by_setting, path, table_summary):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(10.5, 5))
  for name, _, _ in SETTINGS:
    rs = [r for r in by_setting.get(name, []) if r.get("curve")]
    if not rs:
      continue
    steps = [s for s, _ in rs[0]["curve"]]
    curves = np.asarray([[v for _, v in r["curve"]] for r in rs if len(r["curve"]) == len(steps)])
    line, = ax.plot(steps, curves.mean(0), label=f"{LABELS[name]} (n={len(curves)})",
                    linestyle="-" if name.endswith("gen") else "--")
    ax.fill_between(steps, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.12)
  ax.axhline(table_summary["mean_cifar10"], color="grey", lw=0.8, ls=":", label="mean of all cells")
  ax.axhline(table_summary["best_cifar10"], color="black", lw=0.8, ls=":", label="best cell")
  ax.set_xlabel("search step (w-only warm-up first)")
  ax.set_ylabel("benchmark CIFAR-10 accuracy of the mode cell (%)")
  ax.set_title("NB201 :quick proxy: mode cell over the search (mean, min-max over seeds)", fontsize=10)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--npz", required=True, help="CIFAR-10 npz (x_train, y_train, x_test, y_test)")
  parser.add_argument("--table", required=True, help="NB201 benchmark table (arch,cifar10,cifar100,imagenet16_120)")
  parser.add_argument("--out", default="experiments/results/nb201_ablation")
  parser.add_argument("--workdirs", default="/tmp/nb201_ablation")
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--steps", type=int, default=0, help=">0: override search.max_steps")
  parser.add_argument("--settings", default="", help="comma-separated subset of settings (default: all)")
  parser.add_argument("--cache", default="/tmp/nb201_ablation_xla_cache", help="persistent XLA compilation cache")
  parser.add_argument("--reverse", action="store_true", help="run the (seed, setting) list backwards (a 2nd worker)")
  parser.add_argument("--aggregate_only", action="store_true")
  args = parser.parse_args()
  os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
  if not args.aggregate_only:
    with open(os.path.join(args.out, "command.sh"), "w") as f:
      f.write("# run from the repository root, PYTHONPATH=$PWD\n")
      f.write("nice -n 10 python " + " ".join(shlex.quote(a) for a in sys.argv) + "\n")
    from unas_jax.utils import compilation_cache  # pylint: disable=import-outside-toplevel
    # Seeds of one setting compile the same step: compile once per setting.
    compilation_cache.enable(args.cache)
    wanted = set(filter(None, args.settings.split(",")))
    order = [(seed, setting) for seed in range(args.seeds) for setting in SETTINGS]
    if args.reverse:  # a second worker starts from the other end
      order = order[::-1]
    for seed, (name, estimator, objective) in order:
      if wanted and name not in wanted:
        continue
      path = os.path.join(args.out, "runs", f"{name}_seed{seed}.json")
      if os.path.exists(path) or not _claim(path + ".claim"):
        continue
      try:
        print(f"=== {name} seed {seed} ===", flush=True)
        record = run_one(args, name, estimator, objective, seed)
        with open(path + ".tmp", "w") as f:
          json.dump(record, f, indent=1)
        os.replace(path + ".tmp", path)
        print(f"=== {name} seed {seed}: {record['arch']} CIFAR-10 {record['benchmark']['cifar10']:.2f} "
              f"({record['wall_s_this_process']:.0f} s)", flush=True)
      finally:
        os.remove(path + ".claim")
      aggregate(args)
  aggregate(args)


if __name__ == "__main__":
  main()
