"""DARTS-cell search on cifar10 with UNAS's defaults (docs/design.md sections 3-6).

    python -m unas_jax.main --config=configs/darts_cifar10.py --workdir=workdirs/darts_cifar10
    python -m unas_jax.main --config=configs/darts_cifar10.py:quick   # zero-download CPU variant (digits)
"""
from unas_jax.search.darts_configs import darts_search_config


def get_config(arg=None):
  config = darts_search_config("cifar10", arg)
  if arg != "quick":
    config.batch_size = 128  # UNAS: 32 per GPU on 4 GPUs
  return config
