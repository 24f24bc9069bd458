"""Shared builder of the DARTS-space search configs (configs/darts_*.py)."""
from __future__ import annotations

import ml_collections

from unas_jax.search import defaults


def darts_search_config(dataset: str, arg: str | None) -> ml_collections.ConfigDict:
  """UNAS defaults (docs/design.md section 6) for ``dataset``; ``arg='quick'``: a few CPU minutes on digits."""
  config = defaults.base_config("darts_search", f"darts_{dataset}", dataset)
  config.model = ml_collections.ConfigDict({
      "ops": "unas7",            # unas7 | unas5 | unas4 | unas3 | darts8 | comma-separated op names
      "nodes": 4,
      "channels": 16,
      "cells": 8,
      "stem_multiplier": 3,
      "stem": "cifar",           # cifar | imagenet
      "depthwise_impl": "auto",  # auto (slices on CPU, XLA grouped conv elsewhere) | slices | xla
      "kernels": "auto",         # auto (CPU kernels on the CPU backend, plain XLA ops elsewhere) | cpu | xla
      "dtype": "float32",        # compute dtype: float32 | bfloat16 | float16 (phi, w, BN stats stay float32)
      "remat": "none",           # none | cell: jax.checkpoint each cell, keeping conv outputs
  })
  if arg in (None, ""):
    return config
  if arg != "quick":
    raise ValueError(f"unknown config variant {arg!r}; use ':quick' or nothing")
  # Zero-download, a few minutes on a 2-core CPU.
  config.name = f"darts_{dataset}_quick"
  config.data = defaults.data_lib.default_config("digits")
  config.data.image_size = 16
  config.batch_size = 32
  config.model.cells = 5
  config.model.channels = 8
  config.model.ops = "unas5"
  config.search.epochs = 6
  config.search.init_epochs = 1
  # A few hundred steps instead of ~30k: the UNAS w learning rate (3e-4) leaves a supernet
  # trained on random per-example architectures at chance level for that long (measured:
  # CIFAR-10 loss 2.4 after 280 warm-up steps); 10x lets w and then phi move.
  config.search.w_lr = 3e-3
  config.search.w_lr_min = 3e-4
  config.search.phi_lr = 1e-2
  config.search.phi_lr_min = 3e-3
  config.log_every = 5
  config.checkpoint_every = 50
  return config
