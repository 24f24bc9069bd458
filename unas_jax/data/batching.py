"""Batches with a resumable position, sharded over processes.

In-memory sources (digits, .npz, CIFAR): a split of ``n`` examples is read as an
endless stream, the concatenation of per-epoch permutations
``pi_e = permutation(n; seed, split, e)``; stream position ``q`` holds example
``pi_{q div n}[q mod n]``, and step ``t`` of global batch ``B`` is positions
``[t B, (t + 1) B)``. So a batch is a pure function of ``(seed, step)``: a run
resumed at step ``t`` sees the batches of an uninterrupted run, and no example
is ever dropped (a batch may straddle two epochs). Augmentation parameters of
step ``t`` come from a generator seeded by ``(seed, split, t)``, drawn for the
whole global batch. Process ``p`` of ``P`` takes rows
``[p B / P, (p + 1) B / P)`` of each global batch, so the union of the shards is
the single-process batch, bit for bit.

The data position to checkpoint is therefore just the step (and the seed).
"""
from __future__ import annotations

import functools
import queue
import threading
from typing import Iterator, Union

import numpy as np

from unas_jax.data import imagenet
from unas_jax.data.augment import augment, augment_uint8, cutout_boxes, draw_params, normalize
from unas_jax.data.dataset import ArrayDataset, check_split
from unas_jax.errors import ConfigError, DataError

Dataset = Union[ArrayDataset, imagenet.StreamingDataset]
Batch = tuple[np.ndarray, np.ndarray]

# Distinct random streams per split (and for augmentation), so the search-train
# and full-train streams of one seed are independent.
_SPLIT_TAG = {"train": 1, "search_train": 2, "search_val": 3, "test": 4}
_AUGMENT_TAG = 0xA06


def check_sharding(global_batch: int, process_index: int, process_count: int) -> int:
  """Returns the per-process batch; ConfigError unless ``P`` divides ``B``."""
  if isinstance(global_batch, bool) or not isinstance(global_batch, (int, np.integer)) or global_batch < 1:
    raise ConfigError(f"global batch size {global_batch!r} must be a positive integer")
  if not isinstance(process_count, (int, np.integer)) or process_count < 1:
    raise ConfigError(f"process_count={process_count!r} must be a positive integer")
  if not 0 <= process_index < process_count:
    raise ConfigError(f"process_index={process_index!r} must lie in [0, {process_count})")
  if global_batch % process_count:
    raise ConfigError(f"global batch size {global_batch} is not divisible by the {process_count} "
                      "processes; choose a multiple of the process count")
  return int(global_batch) // int(process_count)


def _seed(seed: int) -> int:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ConfigError(f"seed={seed!r} must be an integer")
  return int(seed) & 0xFFFFFFFFFFFFFFFF  # SeedSequence takes non-negative entropy


@functools.lru_cache(maxsize=32)
def _permutation(seed: int, tag: int, epoch: int, n: int) -> np.ndarray:
  perm = np.random.default_rng(np.random.SeedSequence([seed, tag, epoch])).permutation(n)
  perm.flags.writeable = False
  return perm


def stream_positions(dataset: ArrayDataset, split: str, seed: int, start: int, count: int) -> np.ndarray:
  """Indices into the split's image array of stream positions ``[start, start + count)``."""
  _, _, indices = dataset.arrays(split)
  n = len(indices)
  positions = np.arange(start, start + count)
  epochs, within = np.divmod(positions, n)
  out = np.empty(count, np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = _permutation(seed, _SPLIT_TAG[split], int(epoch), n)[within[sel]]
  return indices[out]


def batch_at(dataset: ArrayDataset, split: str, global_batch: int, seed: int, step: int, *,
             process_index: int = 0, process_count: int = 1, augment_batch: bool = True,
             raw: bool = False) -> Batch | dict[str, np.ndarray]:
  """This process's shard of the global batch at ``step``: a pure function of its arguments.

  Returns:
    ``(x, y)``: ``x`` float32 ``[B/P, H, W, C]`` normalised (and augmented with
    the dataset's :class:`AugmentSpec` if ``augment_batch``), ``y`` int32 ``[B/P]``.
    With ``raw``, the same batch before normalisation (:mod:`unas_jax.data.device`
    finishes it on the device): ``{"image": uint8 [B/P, H, W, C] (cropped, flipped),
    "label": y}`` and, when cutout is on, ``"cutout": int32 [B/P, 4]`` boxes
    ``(y0, y1, x0, x1)`` to zero after normalisation.
  """
  if not isinstance(dataset, ArrayDataset):
    raise DataError("batch_at needs an in-memory dataset; streaming data is read with train_batches")
  check_split(split)
  local = check_sharding(global_batch, process_index, process_count)
  seed = _seed(seed)
  if step < 0:
    raise ConfigError(f"step={step} must be >= 0")
  images, labels, _ = dataset.arrays(split)
  start = step * global_batch + process_index * local
  rows = stream_positions(dataset, split, seed, start, local)
  x, y = images[rows], labels[rows]
  info = dataset.info
  if augment_batch:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_TAG[split], _AUGMENT_TAG, step]))
    params = draw_params(rng, global_batch, dataset.augment, *info.image_shape[:2])
    shard = slice(process_index * local, (process_index + 1) * local)
    params = {k: v[shard] for k, v in params.items()}
    if raw:
      out = {"image": augment_uint8(x, params, dataset.augment), "label": y}
      if dataset.augment.cutout:
        out["cutout"] = cutout_boxes(params["centre"], dataset.augment.cutout, *info.image_shape[:2])
      return out
    return augment(x, params, dataset.augment, np.asarray(info.mean), np.asarray(info.std)), y
  if raw:
    return {"image": x, "label": y}
  return normalize(x, np.asarray(info.mean), np.asarray(info.std)), y


def train_batches(dataset: Dataset, global_batch: int, seed: int, start_step: int = 0, *,
                  split: str = "train", process_index: int = 0, process_count: int = 1,
                  augment_batches: bool = True, raw: bool = False) -> Iterator[Batch]:
  """Endless training batches ``(x, y)`` of ``split`` from ``start_step`` on (this process's shard).

  ``raw``: uint8 batches to finish on the device (see :func:`batch_at`).
  """
  # Arguments are checked here, not at the first next(): errors surface at the call.
  check_split(split)
  check_sharding(global_batch, process_index, process_count)
  seed = _seed(seed)
  if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) or start_step < 0:
    raise ConfigError(f"start_step={start_step!r} must be an integer >= 0")
  if isinstance(dataset, imagenet.StreamingDataset):
    return imagenet.stream(dataset, split, global_batch, seed, _SPLIT_TAG[split], int(start_step),
                           process_index, process_count, augment_batches, raw=raw)
  if not isinstance(dataset, ArrayDataset):
    raise DataError(f"expected a dataset from unas_jax.data.load, got {type(dataset).__name__}")

  def generate():
    step = int(start_step)
    while True:
      yield batch_at(dataset, split, global_batch, seed, step, process_index=process_index,
                     process_count=process_count, augment_batch=augment_batches, raw=raw)
      step += 1

  return generate()


def search_batches(dataset: Dataset, global_batch: int, seed: int, start_step: int = 0, *,
                   process_index: int = 0, process_count: int = 1,
                   augment_batches: bool = True, raw: bool = False) -> Iterator[tuple[Batch, Batch]]:
  """Endless paired ``((x_train, y_train), (x_val, y_val))`` of search-train and search-val.

  Both halves have the same size, so example ``i`` of the train batch pairs
  with example ``i`` of the val batch (L_gen, docs/design.md section 3). Both are
  augmented, as in the DARTS/UNAS search (search-val is a share of the
  training set, read with the training transform).
  """
  kwargs = dict(process_index=process_index, process_count=process_count,
                augment_batches=augment_batches, raw=raw)
  return zip(train_batches(dataset, global_batch, seed, start_step, split="search_train", **kwargs),
             train_batches(dataset, global_batch, seed, start_step, split="search_val", **kwargs))


def num_eval_batches(dataset: Dataset, global_batch: int, split: str = "test",
                     process_count: int = 1) -> int:
  """Batches in one :func:`eval_batches` pass (the same on every process)."""
  check_split(split)
  n = dataset.info.sizes[split]
  if isinstance(dataset, imagenet.StreamingDataset):
    largest = -(-n // process_count)  # the biggest per-process slice
    return -(-largest // (global_batch // process_count))
  return -(-n // global_batch)


def eval_batches(dataset: Dataset, global_batch: int, *, split: str = "test", process_index: int = 0,
                 process_count: int = 1, raw: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """One pass over ``split`` without augmentation: ``(x, y, mask)`` per batch.

  Every example appears exactly once with ``mask`` True; the last batch is
  padded with zero images, label 0 and ``mask`` False, so shapes never change
  (no recompilation) and no example is dropped. Metrics are
  ``sum(mask * metric) / sum(mask)`` summed over batches (and processes).
  ``raw``: ``{"image": uint8, "label", "mask"}`` instead, normalised on the device
  (:mod:`unas_jax.data.device`, which also zeroes the padding).
  """
  check_split(split)
  local = check_sharding(global_batch, process_index, process_count)
  if isinstance(dataset, imagenet.StreamingDataset):
    return imagenet.eval_stream(dataset, split, global_batch, process_index, process_count, raw=raw)
  images, labels, indices = dataset.arrays(split)
  info = dataset.info
  mean, std = np.asarray(info.mean), np.asarray(info.std)
  n = len(indices)

  def generate():
    for step in range(num_eval_batches(dataset, global_batch, split)):
      positions = step * global_batch + process_index * local + np.arange(local)
      mask = positions < n
      rows = indices[np.minimum(positions, n - 1)]
      y = np.where(mask, labels[rows], 0).astype(np.int32)
      if raw:
        x = images[rows]
        x[~mask] = 0
        yield {"image": x, "label": y, "mask": mask}
        continue
      x = normalize(images[rows], mean, std)
      x[~mask] = 0.0
      yield x, y, mask

  return generate()


def steps_per_epoch(dataset: Dataset, split: str, global_batch: int, process_count: int = 1) -> int:
  """Steps that make one epoch of ``split``: ``max(1, n // B)`` in memory (see imagenet docs)."""
  check_split(split)
  if isinstance(dataset, imagenet.StreamingDataset):
    return imagenet.steps_per_epoch(dataset, split, global_batch, process_count)
  return max(1, dataset.info.sizes[split] // global_batch)


_DONE = object()


def prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Runs ``iterator`` in a background thread, ``size`` items ahead.

  numpy gathers and TensorFlow release the GIL, so host batch preparation
  overlaps with the (asynchronously dispatched) JAX step. Exceptions from the
  producer are re-raised in the consumer; closing the returned generator stops
  the thread.
  """
  items: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()

  def put(entry) -> bool:
    while not stop.is_set():
      try:
        items.put(entry, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for item in iterator:
        if not put((item, None)):
          return
      put((_DONE, None))
    except BaseException as e:  # pylint: disable=broad-except
      put((_DONE, e))

  thread = threading.Thread(target=produce, daemon=True, name="unas-data-prefetch")
  thread.start()
  try:
    while True:
      item, error = items.get()
      if item is _DONE:
        if error is not None:
          raise error
        return
      yield item
  finally:
    stop.set()
