r"""Times the found architectures of latency searches again: is "meets the target" repeatable?

    PYTHONPATH=. python experiments/remeasure_found.py --repeats=3 \
        experiments/results/latency_lagrangian/verify_2026-12-06/probe_*.json

A search judges its found architecture by one measurement on a busy machine (the probe's
minimum or median of ``latency.num_runs`` forward passes). This script measures each found
architecture (the ``genotype`` of each result JSON of ``experiments/latency_lagrangian.py``)
``--repeats`` more times with a fresh probe (no measurement cache; every repeat in its own
interleaved, shuffled rounds, as the surrogate's measurements are), with the ``:quick``
config's probe settings, and prints each architecture's search-time measurement beside the
repeats, as latency / target. Run it alone on the machine that ran the searches.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from unas_jax.config import load_config_file
from unas_jax.latency import probe as probe_lib
from unas_jax.latency import proxyless_source
from unas_jax.spaces import proxyless as space

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NUM_CLASSES = 10  # the :quick searches' digits (the probe times the network with its classifier)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("results", nargs="+", help="result JSONs of experiments/latency_lagrangian.py (part probe)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="", help="also write the re-timed ratios as JSON here")
  args = parser.parse_args()
  config = load_config_file(os.path.join(ROOT, "configs", "proxyless_latency.py") + ":quick")
  lc = config.latency
  rows = [json.load(open(p)) for p in args.results]
  genotypes = [space.ProxylessGenotype.from_dict(r["genotype"]) for r in rows]
  repeats = []
  for i in range(args.repeats):
    probe = probe_lib.LatencyProbe(None, proxyless_source.probe_config(config, NUM_CLASSES))  # no cache: time afresh
    ms = probe.measure_many(genotypes, rounds=lc.rounds, chunk_size=lc.chunk_size, seed=i)
    repeats.append([m.min_ms if lc.statistic == "min" else m.median_ms for m in ms])
    probe.close()
  repeats = np.asarray(repeats)  # [repeat, architecture]
  print(f"| run | target | at the search: latency / target | {args.repeats} repeats: latency / target | "
        "meets in repeats |\n|---|---|---|---|---|")
  out = []
  for j, r in enumerate(rows):
    t = r["target_ms"]
    again = repeats[:, j] / t
    print(f"| {r['name']} | {t:g} ms | {r['ratio']:.3f} | {', '.join(f'{x:.3f}' for x in again)} | "
          f"{int((again <= 1.0).sum())}/{len(again)} |")
    out.append({"name": r["name"], "target_ms": t, "ratio_at_search": r["ratio"], "ratios_again": again.tolist()})
  spread = repeats / repeats.mean(0, keepdims=True)
  print(f"repeat-to-repeat spread: sd {100 * spread.std():.1f}% of the mean, range "
        f"{100 * (spread.min() - 1):+.1f}% .. {100 * (spread.max() - 1):+.1f}%")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"statistic": lc.statistic, "num_runs": lc.num_runs, "rounds": lc.rounds, "rows": out,
                 "device": probe_lib.device_kind(probe_lib.timing_device())}, f, indent=1)


if __name__ == "__main__":
  main()
