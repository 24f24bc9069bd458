r"""A latency table of all 15,625 NAS-Bench-201 cells, measured on this machine (issue 13).

    PYTHONPATH=. python experiments/nb201_latency_table.py \
        --csv=/tmp/nb201_latency_cpu.csv --out=experiments/results/nb201_latency

No per-cell latency table ships with the project (HW-NAS-Bench's is not bundled), so
this builds one the way a hardware team would: the benchmark's own network
(``NB201Supernet.discrete`` at C=16, N=5, 32x32, inference mode, batch ``--batch``)
is compiled with XLA and timed on this device for the five cells whose six edges all
hold one op and ``--fit`` random cells; a linear model is fitted to those timings
(least squares, op costs >= 0),

    ms(cell) = b + d * [cell disconnected] + sum_{op} l_op * live_op(cell),

where ``live_op`` counts the edges holding ``op`` whose output reaches the cell's
output: XLA removes the others from the compiled network (dead code), so they cost
nothing (``none`` costs nothing either). The table is the model's value for every
cell. The model is checked on ``--check`` other random cells, each compiled and timed
(held-out MAPE and Kendall tau in ``<out>/report.json``). Timings: ``--rounds``
interleaved, shuffled rounds of ``--runs`` calls per network, the statistic over all
calls (``--statistic``; min by default, steadier on a shared CPU). The CSV
(``arch,ms``, about 1.2 MB) feeds ``--config.latency.table_path`` of
``configs/nb201_cifar10.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import optimize
from scipy import stats

from unas_jax.nn.nb201_supernet import NB201Supernet
from unas_jax.spaces import nb201
from unas_jax.spaces import nb201_tables as tables


def compiled_forward(model: NB201Supernet, cell: nb201.Cell, x: jax.Array):
  """The discrete network of ``cell`` compiled for ``x``; weights are arguments, so XLA folds nothing."""
  graphdef, state = nnx.split(model)

  def forward(state, x):
    return nnx.merge(graphdef, state).discrete(x, cell, train=False)

  compiled = jax.jit(forward).lower(state, x).compile()
  return lambda: compiled(state, x).block_until_ready()


FEATURES = ("base", "disconnected") + tuple(f"live_{op}" for op in nb201.OPS if op != "none")


def live_edges(cell: nb201.Cell) -> list[str]:
  """The ops of the edges whose output reaches the cell's output (node 3); XLA drops the rest."""
  used = {nb201.NUM_NODES - 1}
  for j in range(nb201.NUM_NODES - 2, 0, -1):
    if any(i == j and t in used and op != "none" for (i, t), op in zip(nb201.EDGES, cell.ops)):
      used.add(j)
  return [op for (_, t), op in zip(nb201.EDGES, cell.ops) if t in used and op != "none"]


def features(cells) -> np.ndarray:
  """``[N, len(FEATURES)]``: 1, the disconnected flag, and the live-edge count of each op."""
  rows = []
  for cell in cells:
    live = live_edges(cell)
    rows.append([1.0, float(cell.is_disconnected())] + [float(live.count(f[len('live_'):])) for f in FEATURES[2:]])
  return np.asarray(rows)


def time_calls(fns: dict, rounds: int, runs: int, statistic: str, seed: int) -> dict:
  """Interleaved rounds (shuffled order each round) of ``runs`` timed calls per function; ms."""
  rng = np.random.default_rng(seed)
  samples = {k: [] for k in fns}
  for fn in fns.values():
    fn()  # warm-up
  for _ in range(rounds):
    for k in rng.permutation(list(fns)):
      fn = fns[k]
      for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples[k].append(1e3 * (time.perf_counter() - t0))
  reduce = np.min if statistic == "min" else np.median
  return {k: float(reduce(v)) for k, v in samples.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--csv", required=True, help="where the 15,625-row table is written")
  parser.add_argument("--out", default="experiments/results/nb201_latency")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--cells_per_stage", type=int, default=5)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--runs", type=int, default=20)
  parser.add_argument("--statistic", choices=["min", "median"], default="min")
  parser.add_argument("--fit", type=int, default=40, help="random cells timed to fit the model (with the 5 uniform)")
  parser.add_argument("--check", type=int, default=20, help="other random cells timed to check the model")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--reuse_timings", action="store_true", help="refit from <out>/timings.json, no timing")
  args = parser.parse_args()
  t_start = time.time()
  model = NB201Supernet(num_classes=10, channels=args.channels, cells_per_stage=args.cells_per_stage,
                        rngs=nnx.Rngs(params=args.seed))
  x = jax.random.normal(jax.random.key(args.seed), (args.batch, args.image_size, args.image_size, 3), jnp.float32)
  uniform = [nb201.Cell.from_indices([i] * nb201.NUM_EDGES) for i in range(nb201.NUM_OPS)]
  random_cells = nb201.random_cells(args.seed + 1, args.fit + args.check)
  fit_cells, check_cells = uniform + random_cells[:args.fit], random_cells[args.fit:]
  cells = {str(c): c for c in fit_cells + check_cells}
  print(f"compiling {len(cells)} networks (batch {args.batch}, C={args.channels}, N={args.cells_per_stage}, "
        f"{args.image_size}x{args.image_size})", flush=True)
  os.makedirs(args.out, exist_ok=True)
  timings_path = os.path.join(args.out, "timings.json")
  if args.reuse_timings and os.path.exists(timings_path):
    ms = json.load(open(timings_path))["ms"]
    print(f"timings from {timings_path}", flush=True)
  else:
    fns = {name: compiled_forward(model, cell, x) for name, cell in cells.items()}
    print(f"timing: {args.rounds} rounds x {args.runs} calls each, {args.statistic}", flush=True)
    ms = time_calls(fns, args.rounds, args.runs, args.statistic, args.seed)
    with open(timings_path, "w") as f:
      json.dump({"ms": ms, "load_avg": os.getloadavg()}, f, indent=1)
  y_fit = np.asarray([ms[str(c)] for c in fit_cells])
  # Least squares with the ops' costs >= 0 (an op never makes a network faster); the base
  # and the disconnected offset (XLA drops everything before a disconnected cell) are free.
  low = [-np.inf, -np.inf] + [0.0] * (len(FEATURES) - 2)
  coef = optimize.lsq_linear(features(fit_cells), y_fit, bounds=(low, np.inf)).x
  all_cells = list(nb201.all_cells())
  table_ms = features(all_cells) @ coef
  if table_ms.min() <= 0:
    raise SystemExit(f"the fitted model gives a non-positive latency ({table_ms.min():.4f} ms), "
                     f"{dict(zip(FEATURES, coef))}; time again on a quieter machine")
  os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
  tables.write_latency_csv(args.csv, all_cells, table_ms)
  measured = np.asarray([ms[str(c)] for c in check_cells])
  predicted = features(check_cells) @ coef
  report = {
      "device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
      "network": {"channels": args.channels, "cells_per_stage": args.cells_per_stage, "image_size": args.image_size,
                  "batch": args.batch, "mode": "inference"},
      "timing": {"rounds": args.rounds, "runs": args.runs, "statistic": args.statistic},
      "model": dict(zip(FEATURES, coef.tolist())),
      "fit": {"cells": [str(c) for c in fit_cells], "measured_ms": y_fit.tolist(),
              "mape_pct": float(100 * np.mean(np.abs(features(fit_cells) @ coef - y_fit) / y_fit))},
      "table": {"min_ms": float(table_ms.min()), "max_ms": float(table_ms.max()),
                "quantiles_ms": {q: float(np.quantile(table_ms, float(q))) for q in ("0.1", "0.25", "0.5", "0.75")}},
      "check": {"cells": [str(c) for c in check_cells], "measured_ms": measured.tolist(),
                "predicted_ms": predicted.tolist(),
                "mape_pct": float(100 * np.mean(np.abs(predicted - measured) / measured)),
                "kendall_tau": float(stats.kendalltau(predicted, measured)[0])},
      "load_avg": os.getloadavg(), "wall_s": time.time() - t_start, "csv": args.csv,
  }
  with open(os.path.join(args.out, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
  print(json.dumps({k: report[k] for k in ("model", "table")}, indent=1))
  print(f"the model on {args.check} held-out whole networks: MAPE {report['check']['mape_pct']:.2f}%, "
        f"Kendall tau {report['check']['kendall_tau']:.3f}; table: {args.csv}", flush=True)


if __name__ == "__main__":
  main()
