r"""The ``evaluate`` job: train a found architecture from scratch (docs/design.md section 7).

    python -m unas_jax.main --config=configs/darts_cifar10_eval.py:quick --workdir=/tmp/eval
    python -m unas_jax.main --config=configs/darts_cifar10_eval.py \
        --config.model.genotype=/tmp/search/genotype/genotype.json --workdir=/tmp/eval
    python -m unas_jax.main --config=configs/darts_imagenet_eval.py --config.summary_only=True

Validates the config (one-line ``ConfigError`` messages), prints the network
summary (parameters with and without the auxiliary head, multiply-adds of one
image), then trains with :func:`unas_jax.evaluation.trainer.run_training`,
which writes checkpoints (rerun to resume), ``history.jsonl``, TensorBoard
scalars, curves and ``results.json`` (test top-1/top-5) to the workdir.

``--config.summary_only=True`` prints the summary, writes
``network_summary.json`` and stops. For cifar10, cifar100 and imagenet2012 it
needs no data (their class counts and image sizes are known).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from unas_jax import data as data_lib
from unas_jax import validation
from unas_jax.config import check_choice
from unas_jax.errors import ConfigError
from unas_jax.evaluation import networks
from unas_jax.evaluation import trainer
from unas_jax.nn import batchnorm

# Sources whose class count and native image size are known without loading them.
_KNOWN_SOURCES = {"cifar10": (10, 32, 3), "cifar100": (100, 32, 3), "imagenet2012": (1000, 224, 3)}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a missing block or a value out of range (before anything is built)."""
  for block in ("model", "train", "data", "mesh"):
    if block not in config:
      raise ConfigError(f"config.{block} is missing; start from configs/darts_cifar10_eval.py")
  # The stated range of every numeric key and the rules between keys (what jobs.validate
  # checks), again here for callers that build an evaluation without jobs.validate.
  validation.check_numbers(config)
  validation.check_cross(config)
  check_choice("config.train.bn", config.train.bn, batchnorm.MODES)
  if config.model.space == "proxyless" and config.train.drop_path:
    raise ConfigError("the ProxylessNAS network has no drop-path; set --config.train.drop_path=0")


def nominal_info(data_config: Any) -> data_lib.DatasetInfo | None:
  """The DatasetInfo of a tfds source without loading it (None for digits and npz)."""
  spec = data_lib.resolve(data_config)
  if spec.name not in _KNOWN_SOURCES:
    return None
  num_classes, size, channels = _KNOWN_SOURCES[spec.name]
  size = spec.image_size or size
  channels = spec.channels or channels
  return data_lib.DatasetInfo(name=spec.name, num_classes=num_classes, image_shape=(size, size, channels),
                              sizes={}, mean=(0.0,) * channels, std=(1.0,) * channels,
                              class_names=tuple(str(i) for i in range(num_classes)))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Job entry ``evaluate``: validate, summarise, train; returns the trainer's result."""
  check_config(config)
  network = networks.from_config(config.model, seed=config.seed)
  if config.summary_only:
    info = nominal_info(config.data) or data_lib.load(config.data).info
    summary = trainer.summarize(network, info)
    trainer.report_summary(summary, workdir)
    return {"summary": dataclasses.asdict(summary)}
  return trainer.run_training(config, workdir, network)
