#!/bin/bash
# The runs of this folder (2026-12-07), from the repository root of a copy with patch.diff applied
# (git apply experiments/results/compile_flags/nested_cond/patch.diff): UNAS_EXP_NEST=1 runs each
# supernet forward (and so its backward) inside a lax.cond. Run alone on the machine. The first
# run compiles and writes the persistent cache, the second reads it (a warm start). The plain
# step's pair is ../fusion_emitters/c5_default_{cold,warm}.json.
set -euo pipefail
OUT=${OUT:-/tmp/nested_cond}
mkdir -p "$OUT"
export PYTHONPATH=. UNAS_EXP_NEST=1
C5="--config=configs/darts_cifar10.py:quick --config.model.cells=5 --config.model.channels=8 --config.batch_size=32 --config.data.image_size=32 --config.model.ops=unas7"
python experiments/benchmark_search.py $C5 --steps=6 --parts=false --compilation_cache="$OUT/cache" --json="$OUT/c5_nest_cold.json"
python experiments/benchmark_search.py $C5 --steps=6 --parts=false --compilation_cache="$OUT/cache" --json="$OUT/c5_nest_warm.json"
