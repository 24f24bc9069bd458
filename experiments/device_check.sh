#!/bin/bash
# The accelerator check (issue 10) for when a GPU is lent: at most 8 minutes, one table.
#   experiments/device_check.sh                 # on the GPU host, paper sizes
#   DEVICE_CHECK_TINY=1 experiments/device_check.sh   # tiny sizes: checks the script on a CPU
# DARTS search step at 8 cells / 16 channels / 64 images in float32 and bfloat16, the ProxylessNAS
# supernet step at 224x224 in both, compiled memory and step times (experiments/device_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
mkdir -p experiments/results/device_check
exec timeout 480 "$PY" experiments/device_check.py --json=experiments/results/device_check/device_check.json "$@"
