r"""Float32 against bfloat16 curves of a search and an evaluation run (issue 10, mixed precision).

    PYTHONPATH=. python experiments/plot_mixed_precision.py --out_dir=experiments/results/mixed_precision \
        --search=WORKDIR_F32,WORKDIR_BF16 --eval=WORKDIR_F32,WORKDIR_BF16

Reads each workdir's ``history.jsonl``; plots the search's w loss and accuracy (warm-up and
search phases) and validation accuracy, and the evaluation's training loss and test top-1, float32
beside bfloat16; copies the histories next to the plot and prints the last values and their gap
(``gap.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "history.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def series(rows: list[dict], key: str, phases=None) -> tuple[list[int], list[float]]:
  pts = [(r["step"], r[key]) for r in rows if key in r and (phases is None or r.get("phase") in phases)]
  return [p[0] for p in pts], [float(p[1]) for p in pts]


def last(rows, key, phases=None):
  _, ys = series(rows, key, phases)
  return ys[-1] if ys else float("nan")


PANELS = {
    "search": [("w_loss", ("warmup", "search"), "w loss (train batch)"),
               ("w_acc", ("warmup", "search"), "w accuracy (train batch)"),
               ("val_acc", ("eval",), "validation accuracy (mode architecture)")],
    "eval": [("loss", None, "training loss"), ("acc", None, "training accuracy"),
             ("top1", ("test",), "test top-1")],
}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out_dir", required=True)
  p.add_argument("--search", default="", help="WORKDIR_F32,WORKDIR_BF16 of the search runs")
  p.add_argument("--eval", default="", help="WORKDIR_F32,WORKDIR_BF16 of the evaluation runs")
  args = p.parse_args()
  os.makedirs(args.out_dir, exist_ok=True)
  gap = {}
  for job, dirs in (("search", args.search), ("eval", args.eval)):
    if not dirs:
      continue
    runs = dict(zip(("float32", "bfloat16"), dirs.split(",")))
    hist = {dt: history(d) for dt, d in runs.items()}
    for dt, d in runs.items():
      shutil.copy(os.path.join(d, "history.jsonl"), os.path.join(args.out_dir, f"{job}_{dt}_history.jsonl"))
    panels = PANELS[job]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (key, phases, title) in zip(axes, panels):
      for dt, rows in hist.items():
        xs, ys = series(rows, key, phases)
        ax.plot(xs, ys, "o-" if len(xs) < 8 else "-", label=dt, ms=3)
      ax.set_title(title)
      ax.set_xlabel("step")
      ax.legend()
    fig.suptitle(f"{job}: float32 vs bfloat16 compute (CPU)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, f"{job}_curves.png"), dpi=110)
    plt.close(fig)
    gap[job] = {key: {dt: last(rows, key, phases) for dt, rows in hist.items()} for key, phases, _ in panels}
    for key, v in gap[job].items():
      v["bf16_minus_f32"] = v["bfloat16"] - v["float32"]
      print(f"{job:6s} {key:8s} float32 {v['float32']:.4f}  bfloat16 {v['bfloat16']:.4f}  "
            f"gap {v['bf16_minus_f32']:+.4f}")
  with open(os.path.join(args.out_dir, "gap.json"), "w") as f:
    json.dump(gap, f, indent=1)


if __name__ == "__main__":
  main()
