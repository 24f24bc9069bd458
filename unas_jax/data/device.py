r"""Batches finished on the device: uint8 to the device, normalised there, put one step ahead.

The host prepares ``raw`` batches (:func:`unas_jax.data.train_batches` and friends with
``raw=True``): uint8 images, already cropped and flipped (in-memory sources) or decoded,
cropped and resized (tf.data), with int32 labels and, if cutout is on, int32 boxes. They
cross to the device as uint8, a quarter of the float32 bytes (150 KB instead of 602 KB
per 224x224 image), and one jitted function finishes them there, sharded along ``data``:

.. math::
   x = \mathrm{float32}(u) \cdot s - t, \qquad s = \frac{1}{255\,\sigma},\; t = \frac{\mu}{\sigma}

per channel (the host's :func:`unas_jax.data.augment.normalize`, with the same float32
constants, so the batch differs from the host-normalised one by float rounding at most),
then cutout's boxes and an evaluation batch's padding set to 0.

:func:`device_prefetch` keeps the next batch's transfer and normalisation in flight while
the current step runs: ``jax.device_put`` and jitted calls dispatch asynchronously, so
putting batch ``t + 1`` before yielding batch ``t`` overlaps the copy with step ``t``.
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from unas_jax.data.dataset import DatasetInfo
from unas_jax.parallel import mesh as mesh_lib

RawBatch = dict[str, np.ndarray]


def normalize_constants(info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
  """``(scale, shift)`` float32 ``[C]``: ``x = u * scale - shift`` (as the host's normalize)."""
  std = np.asarray(info.std, np.float64)
  scale = (1.0 / (255.0 * std)).astype(np.float32)
  shift = (np.asarray(info.mean, np.float64) / std).astype(np.float32)
  return scale, shift


def finish(raw: dict[str, jax.Array], scale: jax.Array, shift: jax.Array) -> tuple[jax.Array, ...]:
  """Raw batch -> ``(x, y)`` (training) or ``(x, y, mask)`` (evaluation, mask float32).

  ``x`` float32 normalised; pixels inside a ``cutout`` box ``[y0, y1) x [x0, x1)`` and
  the images of padding rows (``mask`` False) are 0, as on the host.
  """
  u = raw["image"]
  x = u.astype(jnp.float32) * scale - shift
  if "cutout" in raw:
    box = raw["cutout"]
    rows = jnp.arange(u.shape[1])[None, :, None]
    cols = jnp.arange(u.shape[2])[None, None, :]
    inside = ((rows >= box[:, 0, None, None]) & (rows < box[:, 1, None, None]) &
              (cols >= box[:, 2, None, None]) & (cols < box[:, 3, None, None]))
    x = jnp.where(inside[..., None], 0.0, x)
  if "mask" in raw:
    mask = raw["mask"]
    x = jnp.where(mask[:, None, None, None], x, 0.0)
    return x, raw["label"], mask.astype(jnp.float32)
  return x, raw["label"]


def make_finisher(info: DatasetInfo, mesh: Mesh) -> Callable[[RawBatch], tuple[jax.Array, ...]]:
  """A function host raw batch (this process's rows) -> finished global batch, sharded along ``data``.

  The copy is :func:`unas_jax.parallel.mesh.put_batch` of the uint8 arrays; the
  normalisation one jitted call (compiled once per batch structure and shape).
  """
  scale, shift = normalize_constants(info)
  sharded = mesh_lib.batch_sharded(mesh)
  consts = mesh_lib.put_replicated((scale, shift), mesh)
  fn = jax.jit(finish, out_shardings=sharded)

  def put(raw: RawBatch):
    return fn(mesh_lib.put_batch(raw, mesh), *consts)
  return put


def device_prefetch(raw_batches: Iterator[Any], put_fn: Callable[[Any], Any], ahead: int = 1) -> Iterator[Any]:
  """Yields ``put_fn(batch)`` for each host batch, ``ahead`` batches put before they are needed.

  ``put_fn`` is applied to each item (e.g. a pair of raw batches, mapped by the caller),
  so up to ``ahead + 1`` batches are on the device at once.
  """
  if ahead < 0:
    raise ValueError(f"ahead={ahead} must be >= 0")
  queue: collections.deque = collections.deque()
  for item in raw_batches:
    queue.append(put_fn(item))
    if len(queue) > ahead:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def search_pairs(raw_pairs: Iterator[tuple[RawBatch, RawBatch]], info: DatasetInfo, mesh: Mesh,
                 ahead: int = 1) -> Iterator[tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]]:
  """Device batches ``((x_t, y_t), (x_v, y_v))`` from :func:`unas_jax.data.search_batches` ``(raw=True)``."""
  put = make_finisher(info, mesh)
  return device_prefetch(raw_pairs, lambda pair: (put(pair[0]), put(pair[1])), ahead)


def batches(raw_batches: Iterator[RawBatch], info: DatasetInfo, mesh: Mesh, ahead: int = 1) -> Iterator[tuple]:
  """Device batches ``(x, y)`` (or ``(x, y, mask)``) from raw training (or evaluation) batches."""
  return device_prefetch(raw_batches, make_finisher(info, mesh), ahead)
