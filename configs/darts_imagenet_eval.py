"""Train a DARTS-space cell from scratch on ImageNet, mobile setting (docs/design.md section 7).

NetworkImageNet, 14 cells, 48 channels (unas_imagenet: 595M multiply-adds at
224x224, under the 600M of the mobile setting), auxiliary head (weight 0.4),
label smoothing 0.1, no drop-path. Optimiser as NVlabs/unas
darts/train_eval_imagenet.py: SGD momentum 0.9, weight decay 3e-5, lr 0.1 per
128 images scaled linearly with the global batch (8 GPUs x 128 = 1024 there),
5 warm-up epochs then cosine, 250 epochs, gradient clip 5. (UNAS picks the
channel count as the largest under 600M multiply-adds; 48 is the DARTS and
issue setting.)

    python -m unas_jax.main --config=configs/darts_imagenet_eval.py --workdir=/tmp/eval_in \
        --config.data.data_dir=/path/to/tensorflow_datasets
    python -m unas_jax.main --config=configs/darts_imagenet_eval.py --config.summary_only=True
    python -m unas_jax.main --config=configs/darts_imagenet_eval.py:quick --workdir=/tmp/eval_quick

The quick variant trains the ImageNet-stem network on digits at 64x64 without
the auxiliary head (its 5x5 pooling needs the 7x7 map of a 224x224 input).
"""
import ml_collections

from unas_jax.evaluation import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = defaults.base_config("darts_imagenet_eval", "imagenet2012")
  config.batch_size = 1024
  config.model.genotype = "unas_imagenet"
  config.model.network = "imagenet"
  config.model.channels, config.model.num_cells = defaults.DARTS_SIZES["imagenet"]
  t = config.train  # what differs from the CIFAR recipe (train_block)
  t.epochs, t.warmup_epochs, t.lr, t.weight_decay = 250, 5.0, 0.1, 3e-5
  t.drop_path, t.label_smoothing = 0.0, 0.1
  config.log_every, config.checkpoint_every, config.eval_every_epochs = 100, 2000, 1.0
  if arg == "quick":
    defaults.quick_variant(config, batch_size=32, epochs=2, warmup_epochs=0.5)
    config.data.image_size = 64
    config.model.auxiliary = False
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; use ':quick' or nothing")
  return config
