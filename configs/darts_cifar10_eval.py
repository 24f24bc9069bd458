"""Train a DARTS-space cell from scratch on CIFAR-10 (docs/design.md section 7; UNAS/DARTS recipe).

NetworkCIFAR, 20 cells, 36 channels, auxiliary head (weight 0.4), drop-path 0.2
(ramped from 0), cutout 16, SGD momentum 0.9, weight decay 3e-4, batch 128,
lr 0.05 with 30 warm-up epochs then cosine, 600 epochs, gradient clip 5
(NVlabs/unas commands.sh, train_eval_cifar.py).

    python -m unas_jax.main --config=configs/darts_cifar10_eval.py --workdir=/tmp/eval_c10 \
        --config.data.data_dir=/path/to/tensorflow_datasets
    # a searched cell:     --config.model.genotype=/tmp/search/genotype/genotype.json
    # the summary only:    --config.summary_only=True
    # CPU smoke run (digits, small network, a few minutes):
    python -m unas_jax.main --config=configs/darts_cifar10_eval.py:quick --workdir=/tmp/eval_quick
"""
import ml_collections

from unas_jax.evaluation import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return defaults.cifar_recipe("darts_cifar10_eval", "cifar10", genotype="unas_cifar10", drop_path=0.2, arg=arg)
