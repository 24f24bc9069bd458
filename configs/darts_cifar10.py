"""DARTS-cell search on cifar10 with UNAS's defaults (docs/design.md sections 3-6).

    python -m unas_jax.main --config=configs/darts_cifar10.py --workdir=workdirs/darts_cifar10
    python -m unas_jax.main --config=configs/darts_cifar10.py:quick   # zero-download CPU variant (digits)
"""
from unas_jax.search.darts_configs import darts_search_config


def get_config(arg=None):
  return darts_search_config("cifar10", arg)
