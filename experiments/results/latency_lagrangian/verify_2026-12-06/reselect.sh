#!/bin/bash
# The selection of a finished search again, with the code checked out now: a copy of the
# search's workdir (checkpoint at its last step, the surrogate, the probe's measurement
# cache) resumed by the same command runs no step and selects again. Used on 2026-12-06 for
# the two probe searches (t3.5 s0, t2.5 s1) that finished before commit a1f5398 (the
# bracketed shift) and whose rounds it changes; on t2.5 s0 and t3 s0 it takes the same steps.
# usage: reselect.sh RUNS COPIES NAME TARGET SEED   (from the repository root)
set -euo pipefail
runs=$1; copies=$2; name=$3; target=$4; seed=$5
mkdir -p "$copies"
rm -rf "${copies:?}/$name" && cp -a "$runs/$name" "$copies/" && rm -rf "${copies:?}/$name/eval"
python -m unas_jax.main --config=configs/proxyless_latency.py:quick --workdir="$copies/$name" \
  --config.latency.target_ms="$target" --config.latency.penalty=lagrangian --config.seed="$seed" \
  --config.search.init_epochs=1 --config.search.max_steps=200 > "$copies/$name/reselect.log" 2>&1
python - "$copies/$name" "$name" <<'PY'
import json, os, sys
workdir, name = sys.argv[1:]
s = json.load(open(os.path.join(workdir, "summary.json")))
g = json.load(open(os.path.join(workdir, "genotype", "genotype.json")))
out = {"name": name, "target_ms": s["latency"]["target_ms"], "ratio": s["latency"]["ratio"], "genotype": g,
       "latency": s["latency"]}
json.dump(out, open(os.path.join(workdir, "reselected.json"), "w"), indent=1)
print(name, "ratio", round(s["latency"]["ratio"], 3), "rounds",
      [(round(t["predicted_ms"], 3), round(t["measured_ms"], 3)) for t in s["latency"]["selection_trail"]])
PY
