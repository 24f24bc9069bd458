#!/bin/bash
cd /work/main
export PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off
while pgrep -f "i11/sweep.sh" > /dev/null; do sleep 10; done
while read -r name kern flags; do
  echo "[$(date -u +%T)] $name: kernels=$kern $flags"
  XLA_FLAGS="$flags" /work/venv/bin/python experiments/benchmark_search.py --config=configs/darts_cifar10.py:quick \
     --config.model.kernels=$kern --steps=10 --parts=false --json=/work/runs/i11/flags/$name.json 2>&1 | grep -v -i "onednn\|absl::Init" | tail -9
done <<'LIST'
kxla xla
kxla_xnnpack xla --xla_cpu_use_xnnpack=true
kxla_onednn xla --xla_cpu_use_onednn=true
baseline2 cpu
LIST
echo "[$(date -u +%T)] done"
