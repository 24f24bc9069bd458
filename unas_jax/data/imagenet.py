"""Streaming imagenet2012 from a prepared tfds ``data_dir`` through tf.data.

Splits: ``train`` and ``test`` (tfds's ``train`` and ``validation``); the search
splits are the contiguous slices ``train[:m]`` and ``train[m:]`` with
``m = round(train_portion * n)`` (tfds shuffles ImageNet when it prepares it, so
a slice is a random subset, and a slice is read without touching the rest).

Multi-host: process ``p`` of ``P`` reads only its own contiguous ``1/P`` of
every split and returns batches of ``global_batch / P``; with streaming data the
global batch is therefore the union of per-process streams and depends on ``P``
(unlike the in-memory sources, whose global batches do not).

Training stream (per process): epoch ``e`` reads the slice with tfds's file
shuffle seeded by ``(seed, split, e)``, a seeded shuffle buffer, then
random-resized crop (area in ``[min_crop_area, 1]``, aspect in ``[3/4, 4/3]``,
Szegedy et al. 2015) and flip with *stateless* ops keyed by
``(seed, split, e, position)``. An epoch is ``floor(n_min / b)`` whole batches
(``n_min`` the smallest process slice; at most ``b - 1`` examples of a shuffled
epoch are left out), so step ``t`` is batch ``t mod K`` of epoch ``t div K``.

What is resumable: restarting at ``start_step = t`` rebuilds epoch ``t div K``
and skips its first ``(t mod K) * b`` records before decoding (reading cost
only), giving exactly the batches of an uninterrupted run, for the same seed,
``P`` and tfds files. Evaluation (resize the short side to
``image_size / eval_crop_fraction``, center crop) is a fixed in-order pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from unas_jax.data.config import DataSpec
from unas_jax.data.dataset import DatasetInfo, check_split
from unas_jax.data.sources import STATS, hide_gpus_from_tensorflow, tfds_builder
from unas_jax.errors import DataError

_TFDS_SPLIT = {"train": "train", "search_train": "train", "search_val": "train", "test": "validation"}


@dataclasses.dataclass(frozen=True, eq=False)
class StreamingDataset:
  """A prepared tfds image dataset read batch by batch (imagenet2012).

  ``ranges[split] = (tfds_split, start, stop)``: the examples of ``split``.
  """
  info: DatasetInfo
  builder: Any
  ranges: dict[str, tuple[str, int, int]]
  spec: DataSpec


def load_imagenet(spec: DataSpec) -> StreamingDataset:
  """Opens a prepared imagenet2012 (DataError with preparation steps otherwise)."""
  builder = tfds_builder(spec)
  hide_gpus_from_tensorflow()
  splits = builder.info.splits
  missing = [s for s in ("train", "validation") if s not in splits]
  if missing:
    raise DataError(f"tfds {spec.name} in {builder.data_dir} lacks split(s) {missing}: put "
                    "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into <data_dir>/downloads/manual/ "
                    "and prepare it again")
  n = splits["train"].num_examples
  n_val = splits["validation"].num_examples
  m = int(round(spec.train_portion * n))
  if not 0 < m < n:
    raise DataError(f"train_portion={spec.train_portion} leaves an empty search split of {n} examples")
  ranges = {"train": ("train", 0, n), "search_train": ("train", 0, m),
            "search_val": ("train", m, n), "test": ("validation", 0, n_val)}
  size = spec.image_size or 224
  mean, std = (spec.mean, spec.std) if spec.mean is not None else STATS["imagenet2012"]
  if len(mean) != 3:
    raise DataError(f"config.data.mean/std have {len(mean)} entries for 3-channel images")
  label = builder.info.features["label"]
  info = DatasetInfo(name=spec.name, num_classes=label.num_classes, image_shape=(size, size, 3),
                     sizes={k: hi - lo for k, (_, lo, hi) in ranges.items()}, mean=tuple(mean),
                     std=tuple(std), class_names=tuple(label.names), streaming=True)
  return StreamingDataset(info=info, builder=builder, ranges=ranges, spec=spec)


def local_range(dataset: StreamingDataset, split: str, process_index: int,
                process_count: int) -> tuple[str, int, int]:
  """This process's contiguous ``1/P`` share of ``split``: ``(tfds_split, start, stop)``."""
  check_split(split)
  name, lo, hi = dataset.ranges[split]
  n = hi - lo
  return name, lo + n * process_index // process_count, lo + n * (process_index + 1) // process_count


def _seeds(seed: int, tag: int, epoch: int) -> tuple[int, int, int]:
  state = np.random.SeedSequence([seed, tag, epoch]).generate_state(3, np.uint32)
  return tuple(int(s) & 0x7FFFFFFF for s in state)


def _normalize(tf, image, info: DatasetInfo):
  mean = tf.constant(info.mean, tf.float32)
  std = tf.constant(info.std, tf.float32)
  return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def _to_uint8(tf, image):
  """Resized float pixels rounded back to uint8: a quarter of the bytes to the device (normalised there)."""
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _train_example_fn(dataset: StreamingDataset, crop_base: int, flip_base: int, augment: bool,
                      raw: bool = False):
  """Maps ``(position, example)`` to a normalised ``[S, S, 3]`` image and its label.

  ``raw``: the image as uint8 (rounded after resizing), to normalise on the device.
  """
  finish = (lambda tf, image, info: _to_uint8(tf, image)) if raw else _normalize  # noqa: E731
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  info, spec = dataset.info, dataset.spec
  size = info.image_shape[0]
  flip = spec.flip if spec.flip is not None else True

  def fn(position, example):
    data = example["image"]
    if not augment:
      return _eval_image(tf, data, size, spec.eval_crop_fraction, info, finish), example["label"]
    position = tf.cast(position, tf.int64)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(data), tf.zeros([0, 0, 4], tf.float32),
        seed=tf.stack([tf.constant(crop_base, tf.int64), position]), min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(spec.min_crop_area, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
    image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    if flip:
      image = tf.image.stateless_random_flip_left_right(
          image, seed=tf.stack([tf.constant(flip_base, tf.int64), position]))
    image = tf.ensure_shape(image, [size, size, 3])
    return finish(tf, image, info), example["label"]

  return fn


def _eval_image(tf, data, size: int, fraction: float, info: DatasetInfo, finish=_normalize):
  """Resize the short side to ``size / fraction``, then a central ``size x size`` crop."""
  image = tf.io.decode_jpeg(data, channels=3)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = (size / fraction) / tf.reduce_min(shape)
  new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
  image = tf.image.resize(image, new, method="bilinear", antialias=True)
  top = (new[0] - size) // 2
  left = (new[1] - size) // 2
  image = tf.ensure_shape(image[top:top + size, left:left + size], [size, size, 3])
  return finish(tf, image, info)


def _read(dataset: StreamingDataset, name: str, lo: int, hi: int, *, shuffle_seed: int | None):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False)
  return dataset.builder.as_dataset(
      split=f"{name}[{lo}:{hi}]", shuffle_files=shuffle_seed is not None, read_config=read_config,
      decoders={"image": tfds.decode.SkipDecoding()})


def steps_per_epoch(dataset: StreamingDataset, split: str, global_batch: int, process_count: int) -> int:
  """Whole local batches per epoch, the same on every process (see module doc)."""
  _, lo, hi = dataset.ranges[split]
  smallest = (hi - lo) // process_count
  steps = smallest // (global_batch // process_count)
  if steps == 0:
    raise DataError(f"split {split} has {hi - lo} examples, fewer than one global batch of "
                    f"{global_batch}; use a smaller batch")
  return steps


def stream(dataset: StreamingDataset, split: str, global_batch: int, seed: int, tag: int,
           start_step: int, process_index: int, process_count: int,
           augment: bool, raw: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Infinite training batches ``(x float32 [b,S,S,3], y int32 [b])`` from ``start_step``.

  ``raw``: ``{"image": uint8 [b,S,S,3], "label": y}`` instead, normalised on the device.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  b = global_batch // process_count
  name, lo, hi = local_range(dataset, split, process_index, process_count)
  per_epoch = steps_per_epoch(dataset, split, global_batch, process_count)
  epoch, first = divmod(start_step, per_epoch)
  while True:
    file_seed, crop_base, flip_base = _seeds(seed, tag, epoch)
    ds = _read(dataset, name, lo, hi, shuffle_seed=file_seed)
    ds = ds.shuffle(dataset.spec.shuffle_buffer, seed=file_seed, reshuffle_each_iteration=False)
    # Skip before decoding: resuming mid-epoch costs reading, not decoding.
    ds = ds.take(per_epoch * b).skip(first * b).enumerate(start=first * b)
    ds = ds.map(_train_example_fn(dataset, crop_base, flip_base, augment, raw),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(b, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    for x, y in tfds.as_numpy(ds):
      yield {"image": x, "label": y.astype(np.int32)} if raw else (x, y.astype(np.int32))
    epoch, first = epoch + 1, 0


def eval_stream(dataset: StreamingDataset, split: str, global_batch: int, process_index: int,
                process_count: int, raw: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """One in-order pass ``(x, y, mask)``; every process yields the same number of batches."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  b = global_batch // process_count
  name, lo, hi = local_range(dataset, split, process_index, process_count)
  _, glo, ghi = dataset.ranges[split]
  largest = -(-(ghi - glo) // process_count)
  num_batches = -(-largest // b)
  ds = _read(dataset, name, lo, hi, shuffle_seed=None).enumerate()
  ds = ds.map(_train_example_fn(dataset, 0, 0, augment=False, raw=raw), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(b).prefetch(tf.data.AUTOTUNE)
  shape = (b,) + dataset.info.image_shape
  dtype = np.uint8 if raw else np.float32
  pack = (lambda x, y, mask: {"image": x, "label": y, "mask": mask}) if raw else (lambda *t: t)  # noqa: E731
  count = 0
  for x, y in tfds.as_numpy(ds):
    n = len(x)
    mask = np.arange(b) < n
    if n < b:
      x = np.concatenate([x, np.zeros((b - n,) + shape[1:], dtype)])
      y = np.concatenate([y, np.zeros(b - n, y.dtype)])
    yield pack(x, y.astype(np.int32), mask)
    count += 1
  for _ in range(count, num_batches):
    yield pack(np.zeros(shape, dtype), np.zeros(b, np.int32), np.zeros(b, bool))
