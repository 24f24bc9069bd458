#!/bin/bash
# Cloud TPU pod slice: the same command on every worker; jax.distributed.initialize() configures
# itself from the TPU metadata. The workdir should be a gs:// bucket or shared filesystem.
set -euo pipefail
TPU=${TPU:?name of the TPU VM}; ZONE=${ZONE:?zone}
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="
  cd unas_jax && python -m unas_jax.main --config=configs/darts_imagenet.py \
      --workdir=${WORKDIR:-gs://BUCKET/unas/darts_imagenet} $*"
# Check the step compiles and fits before paying for the slice (on one host of the same kind):
#   python experiments/aot_compile.py --config=configs/darts_imagenet.py --devices=0
