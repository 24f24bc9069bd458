r"""Accuracy against latency of finished latency-aware searches, with their targets.

    PYTHONPATH=. python experiments/plot_latency_searches.py --out=latency_searches.png \
        runs/proxyless_t45 runs/proxyless_unconstrained ...

Reads each workdir's ``summary.json`` (the mode architecture's search-val accuracy
at the end) and ``genotype/latency.json`` (its measured or looked-up latency, the
surrogate's prediction and the target), prints one row per search and plots
accuracy against latency with each target as a vertical line. With
``--eval=NAME``, the accuracy plotted is the test top-1 of the found architecture
trained from scratch, read from ``<workdir>/NAME/results.json`` (an evaluation
job's workdir, e.g. ``configs/proxyless_imagenet_eval.py:quick
--config.model.genotype=<workdir>/genotype/genotype.json --workdir=<workdir>/NAME``).
"""
from __future__ import annotations

import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read(workdir: str, eval_name: str | None = None) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, "genotype", "latency.json")) as f:
    latency = json.load(f)
  with open(summary["genotype"]) as f:
    genotype = json.load(f)
  if latency.get("c", 1.0) == 0.0:  # no latency term: the target was not in the objective
    latency["target_ms"] = None
  row = {"workdir": workdir, "val_acc": summary["final_eval"]["val_acc"], **latency, "genotype": genotype}
  if eval_name:
    with open(os.path.join(workdir, eval_name, "results.json")) as f:
      row["test_top1"] = json.load(f)["test"]["top1"]
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default="latency_searches.png")
  parser.add_argument("--eval", default=None, help="plot the test top-1 from <workdir>/EVAL/results.json")
  parser.add_argument("--title", default="latency-aware searches (dashed: targets)")
  args = parser.parse_args()
  rows = [read(w, args.eval) for w in args.workdirs]
  acc_key = "test_top1" if args.eval else "val_acc"
  print(f"{'workdir':40s} {'target ms':>9s} {'latency ms':>10s} {'predicted':>9s} {'met':>4s} {'val acc':>7s}"
        + (f" {'retrained top-1':>15s}" if args.eval else ""))
  for r in rows:
    target = r.get("target_ms")
    met = "-" if target is None else ("yes" if r["measured_ms"] <= target else "no")
    print(f"{os.path.basename(r['workdir'].rstrip('/')):40s} {target if target is not None else float('nan'):9.2f} "
          f"{r['measured_ms']:10.2f} {r['predicted_ms']:9.2f} {met:>4s} {r['val_acc']:7.4f}"
          + (f" {r['test_top1']:15.4f}" if args.eval else ""))
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, r in enumerate(rows):
    color = f"C{i}"
    label = os.path.basename(r["workdir"].rstrip("/"))
    ax.scatter(r["measured_ms"], r[acc_key], color=color, label=label, zorder=3)
    if r.get("target_ms") is not None:
      ax.axvline(r["target_ms"], color=color, linestyle="--", linewidth=1)
  ax.set_xlabel("latency of the found architecture (ms)")
  ax.set_ylabel("test top-1, trained from scratch" if args.eval else "search-val accuracy (mode architecture)")
  ax.set_title(args.title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(args.out, dpi=120)
  print(f"plot: {args.out}")


if __name__ == "__main__":
  main()
