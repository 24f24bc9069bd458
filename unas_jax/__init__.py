"""unas_jax: UNAS neural architecture search in JAX/Flax.

Folders, one per concern:
  estimators/  gradient estimators over products of categoricals (REINFORCE,
               Gumbel-softmax, REBAR, RELAX) and the Gumbel samplers they share.
  spaces/      search spaces declared apart from networks (DARTS cell, ProxylessNAS).
  nn/          Flax NNX modules: ops, supernets and evaluation networks.
  objectives/  search losses (L_train, L_val, L_gen, pairing, latency).
  latency/     latency probe (timing compiled subnetworks), lookup tables, surrogate.
  data/        datasets (tfds, .npz, zero-download digits) and augmentation.
  search/      the architecture-search loop.
  evaluation/  training a found architecture from scratch.
  parallel/    meshes, shardings, multi-host start-up.
  utils/       checkpoints, metric writers, progress, plots.
"""

import os as _os

# TensorFlow (behind tfds and clu's TensorBoard writer) logs at INFO by default;
# keep the console for our progress and errors. Set the variable to override.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
