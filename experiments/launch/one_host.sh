#!/bin/bash
# One host, every local device (GPUs or TPU cores): one process, a `data` mesh over all devices.
# The global batch (--config.batch_size) must divide by the device count.
set -euo pipefail
CONFIG=${CONFIG:-configs/darts_cifar10.py}
python -m unas_jax.main --config="$CONFIG" --workdir="${WORKDIR:-workdirs/one_host}" "$@"
# CPU rehearsal with N simulated devices:
#   XLA_FLAGS=--xla_force_host_platform_device_count=8 bash experiments/launch/one_host.sh
