"""Default config blocks of the evaluation configs (docs/design.md section 7); imports no JAX.

Top-level keys (as the search configs): ``job``, ``name``, ``seed``,
``batch_size`` (global), ``data`` (:func:`unas_jax.data.default_config`),
``mesh.num_devices`` (0: every device), ``log_every``, ``checkpoint_every``
(steps), plus ``model`` (:func:`model_block`, keys in :mod:`unas_jax.evaluation.networks`),
``train`` (:func:`train_block`), ``eval_every_epochs`` and ``summary_only``
(print parameters and multiply-adds of the network, write
``network_summary.json`` and stop without training).
"""
from __future__ import annotations

import ml_collections

from unas_jax import data as data_lib

# The DARTS-space evaluation networks at their published sizes (DARTS, UNAS):
# network -> (initial channels C, cells). ``config.model.channels`` and
# ``num_cells`` of 0 mean these.
DARTS_SIZES = {"cifar": (36, 20), "imagenet": (48, 14)}


def model_block(space: str = "darts") -> ml_collections.ConfigDict:
  """``config.model`` with every key (meanings in :mod:`unas_jax.evaluation.networks`)."""
  return ml_collections.ConfigDict({
      "space": space,
      "genotype": "unas_cifar10" if space == "darts" else "unas_proxyless",
      "network": "cifar",
      "channels": 0,
      "num_cells": 0,
      "num_nodes": 4,
      "auxiliary": space == "darts",
      "aux_head_bn": "auto",
      "widths": "gpu",
      "dropout": 0.0,
      "depthwise_impl": "auto",
      "kernels": "auto",           # auto (CPU kernels on the CPU backend, plain XLA ops elsewhere) | cpu | xla
      "dtype": "float32",          # compute dtype: float32 | bfloat16 | float16 (parameters stay float32)
      "remat": "none",             # none | cell | cell_inputs (darts) | layer | layer_inputs (proxyless)
      "scan_cells": False,         # darts, True: repeated cells as one lax.scan (CPU: compile -34%, steps +8-16%)
  })


def train_block() -> ml_collections.ConfigDict:
  """``config.train``: the DARTS/UNAS CIFAR recipe (docs/design.md section 7); configs override it."""
  return ml_collections.ConfigDict({
      "epochs": 600,
      "max_steps": 0,              # > 0: train this many steps (overrides epochs for the schedules)
      "stop_at_step": -1,          # >= 0: save and stop there, as if interrupted (tests)
      "warmup_epochs": 30.0,       # linear warm-up from 0, then cosine decay to 0
      "lr": 0.05,
      "lr_reference_batch": 128,   # lr is for this global batch, scaled linearly (0: no scaling)
      "momentum": 0.9,
      "nesterov": False,
      "weight_decay": 3e-4,        # L2 added to the gradient, as PyTorch's SGD
      "no_decay_bn": False,        # True: no weight decay on BatchNorm scale/bias (ProxylessNAS)
      "grad_clip": 5.0,            # global norm; 0: off
      "label_smoothing": 0.0,
      "aux_weight": 0.4,           # loss weight of the auxiliary head (when model.auxiliary)
      "drop_path": 0.2,            # final drop-path rate, ramped linearly from 0
      "ema_decay": 0.0,            # > 0: evaluate an exponential moving average of the weights
      "bn": "local",               # BatchNorm statistics: local (per device, as the reference) | sync
  })


def data_config(name: str) -> ml_collections.ConfigDict:
  """``unas_jax.data.default_config(name)`` with ``data_dir`` and ``npz_path`` as strings ('' = unset).

  ml_collections cannot override a field whose value is None from the command
  line (``--config.data.npz_path=...`` fails with "Type NoneType ... is not
  supported for overriding"); the data layer reads '' as unset.
  """
  config = data_lib.default_config(name)
  config.data_dir = ""
  config.npz_path = ""
  return config


def base_config(name: str, dataset: str, space: str = "darts") -> ml_collections.ConfigDict:
  """The whole config of an ``evaluate`` job with the default blocks."""
  config = ml_collections.ConfigDict()
  config.job = "evaluate"
  config.name = name
  config.seed = 0
  config.batch_size = 128
  config.data = data_config(dataset)
  config.mesh = ml_collections.ConfigDict({"num_devices": 0})
  config.model = model_block(space)
  config.train = train_block()
  config.log_every = 50
  config.checkpoint_every = 1000
  config.eval_every_epochs = 5.0
  config.summary_only = False
  return config


def quick_variant(config: ml_collections.ConfigDict, *, batch_size: int, epochs: float,
                  warmup_epochs: float) -> ml_collections.ConfigDict:
  """``:quick``, an evaluation config's CPU smoke run (a few minutes): digits, a few epochs,
  frequent logs and checkpoints; a DARTS network shrinks to 8 channels and 5 cells."""
  config.name += "_quick"
  config.data = data_config("digits")
  if config.model.space == "darts":
    config.model.channels, config.model.num_cells = 8, 5
  config.batch_size = batch_size
  config.train.epochs, config.train.warmup_epochs = epochs, warmup_epochs
  config.log_every, config.checkpoint_every, config.eval_every_epochs = 5, 50, 1.0
  return config


def cifar_recipe(name: str, dataset: str, genotype: str, drop_path: float,
                 arg: str | None = None) -> ml_collections.ConfigDict:
  """The DARTS/UNAS CIFAR evaluation recipe (NVlabs/unas commands.sh, train_eval_cifar.py).

  NetworkCIFAR, 20 cells, 36 channels, auxiliary head (weight 0.4), drop-path
  ``drop_path`` (ramped from 0), cutout 16, SGD momentum 0.9, weight decay 3e-4,
  batch 128, lr 0.05 with 30 warm-up epochs then cosine, 600 epochs, gradient
  clip 5. ``arg='quick'``: a CPU smoke run on digits with a small network.
  """
  config = base_config(name, dataset)
  config.data.cutout = 16
  config.model.genotype = genotype  # model_block: network 'cifar', auxiliary head
  config.model.channels, config.model.num_cells = DARTS_SIZES["cifar"]
  config.train.drop_path = drop_path  # train_block is this recipe but for drop_path
  if arg == "quick":
    quick_variant(config, batch_size=64, epochs=3, warmup_epochs=1.0)
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; use ':quick' or nothing")
  return config
