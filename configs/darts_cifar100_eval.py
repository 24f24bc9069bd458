"""Train a DARTS-space cell from scratch on CIFAR-100 (docs/design.md section 7; UNAS recipe).

As configs/darts_cifar10_eval.py with the UNAS CIFAR-100 cell and drop-path 0.3
(NVlabs/unas commands.sh).

    python -m unas_jax.main --config=configs/darts_cifar100_eval.py --workdir=/tmp/eval_c100
    python -m unas_jax.main --config=configs/darts_cifar100_eval.py:quick --workdir=/tmp/eval_quick
"""
import ml_collections

from unas_jax.evaluation import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return defaults.cifar_recipe("darts_cifar100_eval", "cifar100", genotype="unas_cifar100", drop_path=0.3, arg=arg)
