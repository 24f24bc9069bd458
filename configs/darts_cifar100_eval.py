"""Train a DARTS-space cell from scratch on CIFAR-100 (DESIGN.md section 7; UNAS recipe).

As configs/darts_cifar10_eval.py with the UNAS CIFAR-100 cell and drop-path 0.3
(NVlabs/unas commands.sh).

    python -m unas_jax.main --config=configs/darts_cifar100_eval.py --workdir=/tmp/eval_c100
    python -m unas_jax.main --config=configs/darts_cifar100_eval.py:quick --workdir=/tmp/eval_quick
"""
import ml_collections

from unas_jax.evaluation import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = defaults.base_config("darts_cifar100_eval", "cifar100")
  config.data.cutout = 16
  config.model.genotype = "unas_cifar100"
  config.model.network = "cifar"
  config.model.channels = 36
  config.model.num_cells = 20
  config.model.auxiliary = True
  t = config.train
  t.epochs, t.warmup_epochs, t.lr, t.lr_reference_batch = 600, 30.0, 0.05, 128
  t.momentum, t.weight_decay, t.grad_clip = 0.9, 3e-4, 5.0
  t.aux_weight, t.drop_path, t.label_smoothing = 0.4, 0.3, 0.0
  if arg == "quick":
    config.data = defaults.data_config("digits")
    config.model.channels, config.model.num_cells = 8, 5
    config.batch_size = 64
    t.epochs, t.warmup_epochs = 3, 1.0
    config.log_every, config.checkpoint_every, config.eval_every_epochs = 5, 50, 1.0
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; use ':quick' or nothing")
  return config
