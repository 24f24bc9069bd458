"""The search of configs/darts_cifar10.py (UNAS's defaults) on cifar100.

    python -m unas_jax.main --config=configs/darts_cifar100.py --workdir=workdirs/darts_cifar100
    python -m unas_jax.main --config=configs/darts_cifar100.py:quick   # the same zero-download digits run
"""
from unas_jax.search.darts_configs import darts_search_config


def get_config(arg=None):
  return darts_search_config("cifar100", arg)
