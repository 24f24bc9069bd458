#!/bin/bash
# The runs of this folder (2026-12-07 00:50-01:25 UTC), from the repository root; each writes its
# JSON to $OUT. Run alone on the machine: each JSON's quiet_check shows other load.
set -euo pipefail
OUT=${OUT:-/tmp/fusion_emitters}
mkdir -p "$OUT"
export PYTHONPATH=.
Q="--config=configs/darts_cifar10.py:quick"
C5="$Q --config.model.cells=5 --config.model.channels=8 --config.batch_size=32 --config.data.image_size=32 --config.model.ops=unas7"
NOFE="--xla_cpu_use_fusion_emitters=false"
bench() {  # name, XLA_FLAGS, benchmark_search arguments...
  local name=$1 flags=$2; shift 2
  XLA_FLAGS="$flags" python experiments/benchmark_search.py "$@" --parts=false --json="$OUT/$name.json"
}
# :quick, cold compiles, ABBA
UNAS_JAX_COMPILATION_CACHE=off bench quick_default_a "" $Q --steps=20
UNAS_JAX_COMPILATION_CACHE=off bench quick_nofe_a "$NOFE" $Q --steps=20
UNAS_JAX_COMPILATION_CACHE=off bench quick_nofe_b "$NOFE" $Q --steps=20
UNAS_JAX_COMPILATION_CACHE=off bench quick_default_b "" $Q --steps=20
# 5 cells, 32x32: cold (writing a persistent cache), then warm (reading it)
bench c5_nofe_cold "$NOFE" $C5 --steps=6 --compilation_cache="$OUT/cache_nofe"
bench c5_default_cold "" $C5 --steps=6 --compilation_cache="$OUT/cache_default"
bench c5_nofe_warm "$NOFE" $C5 --steps=6 --compilation_cache="$OUT/cache_nofe"
bench c5_default_warm "" $C5 --steps=6 --compilation_cache="$OUT/cache_default"
