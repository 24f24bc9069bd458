#!/bin/bash
# issue 11: LLVM optimisation level 1 against the default on the 5-cell, 8-channel, 32x32 search step (ABBA)
cd /work/main
export PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off
while pgrep -f "i11/sweep2.sh" > /dev/null; do sleep 10; done
while read -r name flags; do
  echo "[$(date -u +%T)] $name: $flags"
  XLA_FLAGS="$flags" /work/venv/bin/python experiments/benchmark_search.py --config=configs/darts_cifar10.py:quick \
    --config.model.cells=5 --config.model.channels=8 --config.batch_size=32 --config.data.image_size=32 --config.model.ops=unas7 \
    --steps=6 --parts=false --json=/work/runs/i11/flags/c5_$name.json 2>&1 | grep -v -i "onednn\|absl::Init" | tail -9
done <<'LIST'
default_a
opt1_a --xla_backend_optimization_level=1
opt1_b --xla_backend_optimization_level=1
default_b
LIST
echo "[$(date -u +%T)] done"
