"""DARTS-cell search on ImageNet (tfds imagenet2012) with UNAS's ImageNet settings.

ImageNet searches soften the logits (eps 0.08), use the cheaper 5-op set and the
ImageNet stem (docs/design.md sections 4-6).

    python -m unas_jax.main --config=configs/darts_imagenet.py --workdir=workdirs/darts_imagenet
    python -m unas_jax.main --config=configs/darts_imagenet.py:quick
"""
from unas_jax.search.darts_configs import darts_search_config


def get_config(arg=None):
  config = darts_search_config("imagenet2012", arg)
  if arg != "quick":
    config.data.image_size = 224
    config.model.ops = "unas5"
    config.model.stem = "imagenet"
    config.search.eps = 0.08
  return config
