#!/bin/bash
cd /work/main
export PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off
while pgrep -f "i11/sweep3.sh" > /dev/null; do sleep 10; done
echo "[$(date -u +%T)] reference-mode cells, :quick"
/work/venv/bin/python /work/runs/i11/refmode.py --config=configs/darts_cifar10.py:quick --steps=10 --parts=false --json=/work/runs/i11/flags/refmode.json 2>&1 | grep -v -i "onednn\|absl::Init" | tail -9
echo "[$(date -u +%T)] done"
