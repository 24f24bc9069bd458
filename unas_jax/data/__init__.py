"""Datasets for search and evaluation: tfds (CIFAR, ImageNet), .npz files, digits.

Usage::

  dataset = data.load(config.data)          # .info: DatasetInfo
  for (x_t, y_t), (x_v, y_v) in data.search_batches(dataset, 64, seed, start_step): ...
  for x, y in data.train_batches(dataset, 128, seed, start_step): ...
  for x, y, mask in data.eval_batches(dataset, 256): ...

Sources (``config.data.name``, keys in :mod:`unas_jax.data.config`):
  ``digits``        scikit-learn's 1797 handwritten digits, shipped with the
                    package: the zero-download default (upsampled to 32x32x3).
  ``npz``           a user's arrays x_train, y_train, x_test, y_test.
  ``cifar10``, ``cifar100``   tfds, decoded once into memory.
  ``imagenet2012``  tfds, streamed through tf.data.
A tfds dataset that is not prepared in ``data_dir`` raises DataError naming the
command that prepares it; nothing here downloads anything.

Batches are numpy arrays on the host (float32 NHWC normalised images, int32
labels), this process's shard of each global batch. With ``raw=True`` they stay
uint8 (``{"image", "label", ...}``) and :mod:`unas_jax.data.device` normalises them
on the devices, one step ahead (what the search and training loops do). For in-memory sources the
batch at step ``t`` is a pure function of ``(seed, t)`` (see
:mod:`unas_jax.data.batching`): checkpoint the step, resume with
``start_step=step``.
"""
from __future__ import annotations

from typing import Any

from unas_jax.data import sources
from unas_jax.data.augment import AugmentSpec
from unas_jax.data.batching import (Dataset, batch_at, check_sharding, eval_batches, num_eval_batches,
                                    prefetch, search_batches, steps_per_epoch, train_batches)
from unas_jax.data.config import SOURCES, DataSpec, default_config, resolve
from unas_jax.data.dataset import SPLITS, ArrayDataset, DatasetInfo
from unas_jax.data.imagenet import StreamingDataset

__all__ = [
    "SOURCES", "SPLITS", "ArrayDataset", "AugmentSpec", "DataSpec", "Dataset", "DatasetInfo",
    "StreamingDataset", "batch_at", "check_sharding", "default_config", "eval_batches", "load",
    "num_eval_batches", "prefetch", "resolve", "search_batches", "steps_per_epoch", "train_batches",
]


def load(config: Any = None) -> Dataset:
  """Opens the dataset that ``config`` (the ``config.data`` block, a mapping or a name) names.

  Raises:
    ConfigError: a bad key or value in the block (e.g. train_portion outside (0, 1)).
    DataError: the data is missing or malformed; the message says how to fix it.
  """
  spec = resolve(config)
  if spec.name == "digits":
    return sources.load_digits(spec)
  if spec.name == "npz":
    return sources.load_npz(spec)
  if spec.name in ("cifar10", "cifar100"):
    return sources.load_cifar(spec)
  from unas_jax.data import imagenet  # pylint: disable=import-outside-toplevel
  return imagenet.load_imagenet(spec)
