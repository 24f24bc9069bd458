"""The ``config.data`` block: its keys, defaults and validation.

Keys (every one optional except where a source needs it):

  name               'digits' (default, zero download) | 'npz' | 'cifar10' |
                     'cifar100' | 'imagenet2012' (tensorflow-datasets names).
  data_dir           tfds data directory holding prepared datasets; None: tfds's
                     default ($TFDS_DATA_DIR or ~/tensorflow_datasets).
  npz_path           the .npz file for name='npz' (x_train, y_train, x_test,
                     y_test, optional class_names).
  train_portion      fraction of the training set used as search-train; the rest
                     is search-val (docs/design.md section 6: 0.9). Must lie in (0, 1).
  split_seed         seed of the fixed permutation that assigns training examples
                     to search-train / search-val (independent of the run seed so
                     every run searches on the same split).
  image_size         working height = width. None: 32 for digits (upsampled from
                     8x8) and cifar, the file's own size for npz, 224 for imagenet.
                     In-memory sources are resized once at load time.
  channels           None: 3 for digits, the source's own otherwise; 3 replicates
                     a grayscale source to RGB.
  crop_padding       CIFAR-style random crop: zero padding in pixels at the working
                     size. None: 4 * image_size / 32 (DARTS's 4 pixels at 32x32).
                     0 disables the crop.
  flip               random horizontal flip; None: True, except for digits.
  cutout             cutout square side in pixels (0: off; 16 in the CIFAR
                     evaluation recipe, docs/design.md section 7). In-memory sources.
  min_crop_area      imagenet2012: smallest area fraction of the random-resized
                     crop (0.08, Inception/ProxylessNAS).
  eval_crop_fraction imagenet2012: evaluation resizes the short side to
                     image_size / fraction and center-crops (0.875).
  mean, std          per-channel normalisation in [0, 1] units; None: published
                     constants for cifar/imagenet, computed on x_train otherwise.
  shuffle_buffer     imagenet2012: examples in the tf.data shuffle buffer.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections

from unas_jax.config import check_choice, check_number, optional
from unas_jax.errors import ConfigError

SOURCES = ("digits", "npz", "cifar10", "cifar100", "imagenet2012")
TFDS_SOURCES = ("cifar10", "cifar100", "imagenet2012")


def default_config(name: str = "digits") -> ml_collections.ConfigDict:
  """The ``config.data`` block with every key at its default (see module doc)."""
  return ml_collections.ConfigDict({
      "name": name,
      "data_dir": optional(str),
      "npz_path": optional(str),
      "train_portion": 0.9,
      "split_seed": 0,
      "image_size": optional(int),
      "channels": optional(int),
      "crop_padding": optional(int),
      "flip": optional(bool),
      "cutout": 0,
      "min_crop_area": 0.08,
      "eval_crop_fraction": 0.875,
      "mean": optional(tuple),
      "std": optional(tuple),
      "shuffle_buffer": 10_000,
  })


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """A validated ``config.data`` block (see the module docstring for meanings)."""
  name: str
  data_dir: str | None
  npz_path: str | None
  train_portion: float
  split_seed: int
  image_size: int | None
  channels: int | None
  crop_padding: int | None
  flip: bool | None
  cutout: int
  min_crop_area: float
  eval_crop_fraction: float
  mean: tuple[float, ...] | None
  std: tuple[float, ...] | None
  shuffle_buffer: int


def _as_dict(config: Any) -> dict[str, Any]:
  if config is None:
    return {}
  if isinstance(config, str):
    return {"name": config}
  if isinstance(config, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
    return config.to_dict()
  if isinstance(config, Mapping):
    return dict(config)
  raise ConfigError(f"config.data must be a ConfigDict or a mapping, got {type(config).__name__}")


def resolve(config: Any) -> DataSpec:
  """Fills defaults into ``config`` and validates it.

  Raises:
    ConfigError: an unknown key (a typo would otherwise be ignored), an unknown
      source, ``train_portion`` outside (0, 1), or a malformed value.
  """
  values = default_config().to_dict()
  given = _as_dict(config)
  unknown = sorted(set(given) - set(values))
  if unknown:
    raise ConfigError(f"unknown config.data key(s) {unknown}; known keys: {sorted(values)}")
  values.update(given)

  name = values["name"]
  check_choice("config.data.name", name, SOURCES)
  if name == "npz" and not values["npz_path"]:
    raise ConfigError("config.data.name='npz' needs --config.data.npz_path=/path/to/file.npz")
  portion = values["train_portion"]
  if isinstance(portion, bool) or not isinstance(portion, (int, float)) or not 0.0 < portion < 1.0:
    raise ConfigError(f"config.data.train_portion={portion!r} must lie in (0, 1) "
                      "(fraction of the training set used as search-train, e.g. 0.9)")
  split_seed = check_number("config.data.split_seed", values["split_seed"], 0, integer=True, optional=True)
  image_size = check_number("config.data.image_size", values["image_size"], 1, integer=True, optional=True)
  channels = check_number("config.data.channels", values["channels"], 1, integer=True, optional=True)
  if channels not in (None, 1, 3):
    raise ConfigError(f"config.data.channels={channels!r} must be 1, 3 or None")
  crop_padding = check_number("config.data.crop_padding", values["crop_padding"], 0, integer=True, optional=True)
  cutout = check_number("config.data.cutout", values["cutout"], 0, integer=True, optional=True) or 0
  flip = values["flip"]
  if flip is not None and not isinstance(flip, bool):
    raise ConfigError(f"config.data.flip={flip!r} must be true, false or None")
  min_crop_area = float(values["min_crop_area"])
  if not 0.0 < min_crop_area <= 1.0:
    raise ConfigError(f"config.data.min_crop_area={min_crop_area!r} must lie in (0, 1]")
  eval_crop_fraction = float(values["eval_crop_fraction"])
  if not 0.0 < eval_crop_fraction <= 1.0:
    raise ConfigError(f"config.data.eval_crop_fraction={eval_crop_fraction!r} must lie in (0, 1]")
  shuffle_buffer = check_number("config.data.shuffle_buffer", values["shuffle_buffer"], 1, integer=True,
                                optional=True)
  mean, std = values["mean"], values["std"]
  if (mean is None) != (std is None):
    raise ConfigError("config.data.mean and config.data.std must be given together (or both None)")
  if mean is not None:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != len(std) or any(s <= 0 for s in std):
      raise ConfigError(f"config.data.mean={mean} / std={std} need equal lengths and std > 0")
  if name == "imagenet2012" and cutout:
    raise ConfigError("config.data.cutout is not supported for imagenet2012; set it to 0")
  return DataSpec(name=name, data_dir=values["data_dir"], npz_path=values["npz_path"],
                  train_portion=float(portion), split_seed=split_seed, image_size=image_size,
                  channels=channels, crop_padding=crop_padding, flip=flip, cutout=cutout,
                  min_crop_area=min_crop_area, eval_crop_fraction=eval_crop_fraction,
                  mean=mean, std=std, shuffle_buffer=shuffle_buffer)
