"""Default config blocks of the evaluation configs (DESIGN.md section 7); imports no JAX.

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
  })


def train_block() -> ml_collections.ConfigDict:
  """``config.train``: the DARTS/UNAS CIFAR recipe (DESIGN.md section 7); configs override it."""
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
