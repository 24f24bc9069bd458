"""Train a ProxylessNAS-space network from scratch on ImageNet (docs/design.md section 7).

The 21-layer MBConv network of the genotype (GPU widths), trained as
ProxylessNAS trains its networks (mit-han-lab/proxylessnas
search/imagenet_run_exp.py and run_manager.py): SGD with Nesterov momentum 0.9,
lr 0.05 per 256 images (scaled linearly with the global batch), per-step cosine
decay to 0 with no warm-up, 300 epochs, weight decay 4e-5 with none on
BatchNorm, label smoothing 0.1, no dropout, no gradient clipping, no auxiliary
head, no drop-path.

    python -m unas_jax.main --config=configs/proxyless_imagenet_eval.py --workdir=/tmp/eval_px \
        --config.data.data_dir=/path/to/tensorflow_datasets
    # the ProxylessNAS-GPU network:  --config.model.genotype=proxylessnas_gpu
    # mobile widths:                 --config.model.widths=mobile
    python -m unas_jax.main --config=configs/proxyless_imagenet_eval.py --config.summary_only=True
    python -m unas_jax.main --config=configs/proxyless_imagenet_eval.py:quick --workdir=/tmp/eval_quick
"""
import ml_collections

from unas_jax.evaluation import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = defaults.base_config("proxyless_imagenet_eval", "imagenet2012", space="proxyless")
  config.batch_size = 256
  config.model.genotype = "unas_proxyless"
  config.model.widths = "gpu"
  config.model.auxiliary = False
  config.model.dropout = 0.0
  t = config.train
  t.epochs, t.warmup_epochs, t.lr, t.lr_reference_batch = 300, 0.0, 0.05, 256
  t.momentum, t.nesterov, t.weight_decay, t.no_decay_bn, t.grad_clip = 0.9, True, 4e-5, True, 0.0
  t.aux_weight, t.drop_path, t.label_smoothing = 0.0, 0.0, 0.1
  config.log_every, config.checkpoint_every, config.eval_every_epochs = 100, 2000, 1.0
  if arg == "quick":
    defaults.quick_variant(config, batch_size=64, epochs=3, warmup_epochs=t.warmup_epochs)
    config.model.widths = "8,8,8,16,16,24,24,32,64"
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; use ':quick' or nothing")
  return config
