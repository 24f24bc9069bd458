#!/bin/bash
# The runs of this folder (2026-12-07), from the repository root of a copy with patch.diff applied
# (git apply experiments/results/compile_flags/no_barrier/patch.diff): UNAS_EXP_NO_BARRIER=1 makes
# fast_grad.isolated the identity. Cold compiles; run alone on the machine.
set -euo pipefail
OUT=${OUT:-/tmp/no_barrier}
mkdir -p "$OUT"
export PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off
Q="--config=configs/darts_cifar10.py:quick"
C5="$Q --config.model.cells=5 --config.model.channels=8 --config.batch_size=32 --config.data.image_size=32 --config.model.ops=unas7"
bench() {  # name, UNAS_EXP_NO_BARRIER, benchmark_search arguments...
  local name=$1 off=$2; shift 2
  UNAS_EXP_NO_BARRIER=$off python experiments/benchmark_search.py "$@" --parts=false --json="$OUT/$name.json"
}
bench c5_nobarrier_cold 1 $C5 --steps=6     # one run; its default twin is ../fusion_emitters/c5_default_cold.json
# :quick, ABBA
bench quick_barrier_a 0 $Q --steps=20
bench quick_nobarrier_a 1 $Q --steps=20
bench quick_nobarrier_b 1 $Q --steps=20
bench quick_barrier_b 0 $Q --steps=20
# 5 cells, 32x32, ABBA (2026-12-07 09:30-09:56 UTC, AMD EPYC, quiet: --quiet-check on, the default)
bench c5_barrier_a 0 $C5 --steps=6
bench c5_nobarrier_a 1 $C5 --steps=6
bench c5_nobarrier_b 1 $C5 --steps=6
bench c5_barrier_b 0 $C5 --steps=6
