#!/bin/bash
# issue 11: XLA:CPU flags against the :quick DARTS search step's compile (cold) and step time.
cd /work/main
export PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off
i=0
while read -r name flags; do
  echo "[$(date -u +%T)] $name: $flags"
  XLA_FLAGS="$flags" /work/venv/bin/python experiments/benchmark_search.py --config=configs/darts_cifar10.py:quick \
     --steps=10 --parts=false --json=/work/runs/i11/flags/$name.json 2>&1 | grep -v -i "onednn\|absl::Init" | tail -9
done <<'LIST'
baseline
no_expensive --xla_llvm_disable_expensive_passes=true
xnnpack --xla_cpu_use_xnnpack=true
no_unroll --xla_cpu_disable_loop_unrolling=true
no_slp --xla_cpu_disable_slp_vectorizer=true
size --xla_cpu_optimize_for_size=true
opt1 --xla_backend_optimization_level=1
LIST
echo "[$(date -u +%T)] done"
