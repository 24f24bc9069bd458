#!/bin/bash
# The runs of this folder (2026-12-06), from the repository root; each writes its JSON to $OUT.
# Cold compiles throughout. Run alone on the machine: the JSONs' quiet_check shows other load.
set -euo pipefail
OUT=${OUT:-/tmp/compile_flags}
mkdir -p "$OUT"
export PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off
Q="--config=configs/darts_cifar10.py:quick"
C5="$Q --config.model.cells=5 --config.model.channels=8 --config.batch_size=32 --config.data.image_size=32 --config.model.ops=unas7"
bench() {  # name, XLA_FLAGS, benchmark_search arguments...
  local name=$1 flags=$2; shift 2
  XLA_FLAGS="$flags" python experiments/benchmark_search.py "$@" --parts=false --json="$OUT/$name.json"
}
# Flags on the :quick step (the first table)
bench baseline "" $Q --steps=10
bench no_expensive "--xla_llvm_disable_expensive_passes=true" $Q --steps=10
bench xnnpack "--xla_cpu_use_xnnpack=true" $Q --steps=10
bench opt1 "--xla_backend_optimization_level=1" $Q --steps=10
bench kxla "" $Q --config.model.kernels=xla --steps=10
bench kxla_xnnpack "--xla_cpu_use_xnnpack=true" $Q --config.model.kernels=xla --steps=10
bench kxla_onednn "--xla_cpu_use_onednn=true" $Q --config.model.kernels=xla --steps=10
bench baseline2 "" $Q --config.model.kernels=cpu --steps=10
python experiments/results/compile_flags/benchmark_reference_cells.py $Q --steps=10 --parts=false --json="$OUT/reference_cells.json"
# LLVM level 1 on the 5-cell step, ABBA (the second table)
bench c5_default_a "" $C5 --steps=6
bench c5_opt1_a "--xla_backend_optimization_level=1" $C5 --steps=6
bench c5_opt1_b "--xla_backend_optimization_level=1" $C5 --steps=6
bench c5_default_b "" $C5 --steps=6
# Through the job's steps at commit 2fed2a7 (level 1 built in; level 3 by XLA_FLAGS), the third table
bench after_quick_l3_a "--xla_backend_optimization_level=3" $Q --steps=20
bench after_quick_l1_a "" $Q --steps=20
bench after_quick_l1_b "" $Q --steps=20
bench after_quick_l3_b "--xla_backend_optimization_level=3" $Q --steps=20
bench after_c5_l1 "" $C5 --steps=6
# Edge-by-edge against batched cells, quiet ABBA (section "Edge-by-edge against batched cells")
mkdir -p "$OUT/reference_vs_batched"
python experiments/benchmark_search.py $Q --steps=20 --parts=false --json="$OUT/reference_vs_batched/batched_a.json"
python experiments/results/compile_flags/benchmark_reference_cells.py $Q --steps=20 --parts=false --json="$OUT/reference_vs_batched/reference_a.json"
python experiments/results/compile_flags/benchmark_reference_cells.py $Q --steps=20 --parts=false --json="$OUT/reference_vs_batched/reference_b.json"
python experiments/benchmark_search.py $Q --steps=20 --parts=false --json="$OUT/reference_vs_batched/batched_b.json"
