"""Train a DARTS-space cell from scratch on CIFAR-10 (DESIGN.md section 7; UNAS/DARTS recipe).

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
  config = defaults.base_config("darts_cifar10_eval", "cifar10")
  config.data.cutout = 16
  config.model.genotype = "unas_cifar10"
  config.model.network = "cifar"
  config.model.channels = 36
  config.model.num_cells = 20
  config.model.auxiliary = True
  t = config.train
  t.epochs, t.warmup_epochs, t.lr, t.lr_reference_batch = 600, 30.0, 0.05, 128
  t.momentum, t.weight_decay, t.grad_clip = 0.9, 3e-4, 5.0
  t.aux_weight, t.drop_path, t.label_smoothing = 0.4, 0.2, 0.0
  if arg == "quick":
    config.data = defaults.data_config("digits")
    config.model.channels, config.model.num_cells = 8, 5
    config.batch_size = 64
    t.epochs, t.warmup_epochs = 3, 1.0
    config.log_every, config.checkpoint_every, config.eval_every_epochs = 5, 50, 1.0
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; use ':quick' or nothing")
  return config
