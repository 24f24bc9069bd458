#!/bin/bash
# N processes on one machine over 127.0.0.1 (JAX's distributed runtime, gloo CPU collectives).
# Each process reads its own rows of every global batch; only process 0 writes logs, plots and
# genotypes; all processes write the checkpoint through orbax. Usage: N=2 bash loopback.sh [flags]
set -euo pipefail
N=${N:-2}
PORT=${PORT:-$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
CONFIG=${CONFIG:-configs/darts_cifar10.py:quick}
export XLA_FLAGS=${XLA_FLAGS:---xla_force_host_platform_device_count=1}   # devices per process (CPU)
pids=()
for ((i = 0; i < N; i++)); do
  python -m unas_jax.main --config="$CONFIG" --workdir="${WORKDIR:-workdirs/loopback}" \
      --coordinator_address=127.0.0.1:$PORT --num_processes=$N --process_id=$i "$@" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
