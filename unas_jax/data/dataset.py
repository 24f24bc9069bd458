"""Dataset description and the in-memory dataset shared by digits, .npz and CIFAR.

Splits (names used everywhere in the data API):
  ``train``         the whole training set (evaluation phase, docs/design.md section 7);
  ``search_train``  a fixed ``train_portion`` share of it (search, w updates);
  ``search_val``    the rest of it (search, phi updates; docs/design.md section 6);
  ``test``          the test set (for imagenet2012: tfds's ``validation`` split).
The search split is a permutation of the training indices drawn once from
``split_seed`` and cut at ``round(train_portion * n)``: deterministic, and a
class-sorted file (as users' .npz files often are) is still split evenly.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from unas_jax.data.augment import AugmentSpec, resize
from unas_jax.data.config import DataSpec
from unas_jax.errors import DataError

SPLITS = ("train", "search_train", "search_val", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a training loop need to know about a dataset.

  Attributes:
    name: the source (``config.data.name``).
    num_classes: number of labels; labels are ``0 .. num_classes - 1``.
    image_shape: ``(H, W, C)`` of every batch element, after preprocessing.
    sizes: examples per split (keys :data:`SPLITS`).
    mean, std: per-channel normalisation applied to batches, in [0, 1] units.
    class_names: one name per label.
    streaming: True when batches are read from disk (imagenet2012), False when
      the arrays are in memory (batches are pure functions of seed and step).
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  sizes: dict[str, int]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  class_names: tuple[str, ...]
  streaming: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
  """Images held in memory as uint8 NHWC, with the split index arrays.

  ``x_train``/``y_train`` hold the whole training set; ``indices[split]`` selects
  a split's examples from ``x_train`` (``train``, ``search_*``) or ``x_test``.
  """
  info: DatasetInfo
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  indices: dict[str, np.ndarray]
  augment: AugmentSpec

  def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, labels, indices)`` of ``split``: its examples are ``images[indices]``."""
    check_split(split)
    if split == "test":
      return self.x_test, self.y_test, self.indices[split]
    return self.x_train, self.y_train, self.indices[split]


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; choose one of {list(SPLITS)}")


def search_split(n: int, train_portion: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices of search-train and search-val: a fixed permutation cut at ``round(p * n)``."""
  n_train = int(round(train_portion * n))
  if not 0 < n_train < n:
    raise DataError(f"train_portion={train_portion} leaves an empty search split of a training set "
                    f"of {n} examples; choose a portion closer to 0.5 or use more data")
  perm = np.random.default_rng(np.random.SeedSequence([split_seed, 0x5EA7C4])).permutation(n)
  return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and standard deviation of uint8 images, in [0, 1] units."""
  c = images.shape[-1]
  total, total_sq, count = np.zeros(c), np.zeros(c), 0
  for start in range(0, len(images), chunk):
    x = images[start:start + chunk].reshape(-1, c).astype(np.float64) / 255.0
    total += x.sum(0)
    total_sq += np.square(x).sum(0)
    count += len(x)
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  std = np.where(std > 1e-6, std, 1.0)  # a constant channel: leave its scale alone
  return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _to_nhwc(x: np.ndarray, key: str, origin: str) -> np.ndarray:
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise DataError(f"{origin}: {key} has shape {x.shape}; expected uint8 images [N, H, W, C] with "
                    "C = 1 or 3, or grayscale [N, H, W]")
  if x.dtype != np.uint8:
    if np.issubdtype(x.dtype, np.integer) and x.size and x.min() >= 0 and x.max() <= 255:
      x = x.astype(np.uint8)
    else:
      raise DataError(f"{origin}: {key} has dtype {x.dtype}; expected uint8 pixels in 0..255 "
                      "(convert floats in [0, 1] with (x * 255).round().astype('uint8'))")
  return x


def _to_labels(y: np.ndarray, key: str, n: int, origin: str) -> np.ndarray:
  if y.ndim == 2 and y.shape[1] == 1:  # keras-style [N, 1] labels
    y = y[:, 0]
  if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{origin}: {key} has shape {y.shape} and dtype {y.dtype}; expected {n} integer "
                    "labels (one per image)")
  if y.size and y.min() < 0:
    raise DataError(f"{origin}: {key} has negative labels; expected 0 .. num_classes - 1")
  return y.astype(np.int32)


def build(spec: DataSpec, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
          y_test: np.ndarray, *, origin: str, class_names: Sequence[str] | None = None,
          num_classes: int | None = None, native_size: int | None = None,
          default_channels: int | None = None,
          stats: tuple[Sequence[float], Sequence[float]] | None = None) -> ArrayDataset:
  """Validates raw arrays and applies the config: resize, channels, split, statistics.

  Args:
    spec: the validated config block.
    x_train, y_train, x_test, y_test: raw arrays (uint8 NHWC or NHW, int labels).
    origin: where the arrays came from, for error messages.
    class_names: optional label names.
    num_classes: known number of classes (else from class_names or the labels).
    native_size: working size when ``spec.image_size`` is None (else the arrays' own).
    default_channels: channels when ``spec.channels`` is None (else the arrays' own).
    stats: published (mean, std) for this source; None computes them on x_train.
  """
  x_train = _to_nhwc(np.asarray(x_train), "x_train", origin)
  x_test = _to_nhwc(np.asarray(x_test), "x_test", origin)
  if x_train.shape[1:] != x_test.shape[1:]:
    raise DataError(f"{origin}: x_train images are {x_train.shape[1:]} but x_test images are "
                    f"{x_test.shape[1:]}; both must have the same [H, W, C]")
  if len(x_train) == 0 or len(x_test) == 0:
    raise DataError(f"{origin}: x_train and x_test must both hold at least one image")
  y_train = _to_labels(np.asarray(y_train), "y_train", len(x_train), origin)
  y_test = _to_labels(np.asarray(y_test), "y_test", len(x_test), origin)
  seen = int(max(y_train.max(), y_test.max())) + 1
  if class_names is not None:
    class_names = tuple(str(c) for c in class_names)
    if num_classes is None:
      num_classes = len(class_names)
  if num_classes is None:
    num_classes = seen
  if seen > num_classes:
    raise DataError(f"{origin}: labels go up to {seen - 1} but there are only {num_classes} classes")
  if class_names is None or len(class_names) != num_classes:
    class_names = tuple(str(i) for i in range(num_classes))

  size = spec.image_size or native_size
  if size is not None:
    x_train = resize(x_train, size, size)
    x_test = resize(x_test, size, size)
  channels = spec.channels or default_channels or x_train.shape[-1]
  if channels != x_train.shape[-1]:
    if x_train.shape[-1] != 1:
      raise DataError(f"{origin}: config.data.channels={channels} but the images have "
                      f"{x_train.shape[-1]} channels; only grayscale can be replicated to 3")
    x_train = np.repeat(x_train, channels, axis=-1)
    x_test = np.repeat(x_test, channels, axis=-1)
  height, width = x_train.shape[1:3]

  if spec.mean is not None:
    mean, std = spec.mean, spec.std
  elif stats is not None:
    mean, std = tuple(stats[0]), tuple(stats[1])
  else:
    mean, std = channel_stats(x_train)
  if len(mean) != channels:
    raise DataError(f"{origin}: config.data.mean/std have {len(mean)} entries for {channels}-channel "
                    "images")

  search_train, search_val = search_split(len(x_train), spec.train_portion, spec.split_seed)
  indices = {"train": np.arange(len(x_train)), "search_train": search_train,
             "search_val": search_val, "test": np.arange(len(x_test))}
  crop = spec.crop_padding if spec.crop_padding is not None else int(round(4 * height / 32))
  flip = spec.flip if spec.flip is not None else spec.name != "digits"
  info = DatasetInfo(name=spec.name, num_classes=num_classes, image_shape=(height, width, channels),
                     sizes={k: int(len(v)) for k, v in indices.items()}, mean=tuple(mean),
                     std=tuple(std), class_names=class_names, streaming=False)
  return ArrayDataset(info=info, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                      indices=indices, augment=AugmentSpec(crop, flip, spec.cutout))
