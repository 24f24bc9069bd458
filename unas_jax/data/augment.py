"""Host-side (numpy) augmentation and resizing of uint8 NHWC batches.

CIFAR-style training augmentation (DARTS/UNAS ``train_transform``), in its order:
zero-pad by ``p`` and crop back to ``H x W`` at a random offset, flip horizontally
with probability 1/2, normalise ``(x / 255 - mean) / std``, then cutout (a
``L x L`` square, clipped at the borders, set to 0 after normalisation, as in
DeVries & Taylor 2017 and the DARTS code).

Why numpy on the host and not a jitted JAX function: on a 2-core CPU the
accelerator *is* the CPU, so device-side augmentation would compete with the
search step for the same cores and add a compilation per batch shape, while
this numpy version takes about 0.6 ms per 64 CIFAR images (about 1e5 images/s
on one core here, against a search step of seconds). It touches no JAX device,
so data can be prepared before ``jax.distributed.initialize()``, and it runs in
a background thread (:func:`unas_jax.data.prefetch`) while the step runs.
Random parameters are drawn for the whole *global* batch and then sliced, so a
process's shard is augmented identically whatever the process count. The jobs send
the uint8 result of crop and flip to the device (:func:`augment_uint8`, a quarter of
the bytes) with cutout's boxes (:func:`cutout_boxes`); :mod:`unas_jax.data.device`
normalises and cuts out there, as :func:`augment` does here.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  """Training augmentation of an in-memory source.

  Attributes:
    crop_padding: zero padding (pixels) of the random crop; 0 disables it.
    flip: random horizontal flip.
    cutout: side of the cutout square in pixels; 0 disables it.
  """
  crop_padding: int = 0
  flip: bool = False
  cutout: int = 0


def draw_params(rng: np.random.Generator, n: int, spec: AugmentSpec, height: int,
                width: int) -> dict[str, np.ndarray]:
  """Random parameters for ``n`` examples: crop offsets, flips, cutout centres.

  Always draws every parameter in the same order, so the stream of random
  numbers does not depend on which augmentations are enabled.
  """
  span = 2 * spec.crop_padding + 1
  return {
      "offset": rng.integers(0, span, size=(n, 2)),
      "flip": rng.random(n) < 0.5,
      "centre": np.stack([rng.integers(0, height, size=n), rng.integers(0, width, size=n)], 1),
  }


def crop_flip(images: np.ndarray, offset: np.ndarray, flip: np.ndarray, padding: int) -> np.ndarray:
  """Zero-padded random crop, then horizontal flip, of uint8 ``[n, H, W, C]`` images.

  ``crop[i, r, c] = pad(x)[i, offset[i,0] + r, offset[i,1] + c]`` where ``pad``
  adds ``padding`` zero pixels on every side (offsets lie in ``[0, 2 * padding]``);
  ``out[i, r, c] = crop[i, r, W - 1 - c]`` where ``flip[i]``, else ``crop``.
  Implemented without materialising the padded batch: each example's valid
  window is one slice copy (numpy fuses its contiguous rows), and flips
  reverse one channel plane at a time: a reversed copy with the 3-wide channel
  axis innermost ran 3.5x slower here (numpy's inner loop is 3 elements long),
  and a single fancy-index gather for crop + flip 5x slower.
  """
  n, h, w, _ = images.shape
  out = np.zeros_like(images) if padding else np.empty_like(images)
  shift = offset - padding  # source row/col of the crop's top-left corner
  for i in range(n):
    dy, dx = int(shift[i, 0]), int(shift[i, 1])
    # Target rows/cols whose source lies inside the image (the rest is padding).
    y0, y1 = min(max(-dy, 0), h), max(min(h - dy, h), 0)
    x0, x1 = min(max(-dx, 0), w), max(min(w - dx, w), 0)
    if y0 < y1 and x0 < x1:
      out[i, y0:y1, x0:x1] = images[i, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
  flipped = np.flatnonzero(flip)
  if len(flipped):
    sub = out[flipped]
    for ch in range(out.shape[-1]):
      out[flipped, :, :, ch] = sub[:, :, ::-1, ch]
  return out


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """``(x / 255 - mean) / std`` as float32, per channel."""
  n, h, w, c = images.shape
  # Constants tiled along the fused (W*C) axis: broadcasting a length-C vector
  # makes numpy's inner loop C elements long, about 5x slower.
  scale = np.tile(1.0 / (255.0 * np.asarray(std, np.float64)), w).astype(np.float32)
  shift = np.tile(np.asarray(mean, np.float64) / np.asarray(std, np.float64), w).astype(np.float32)
  out = images.reshape(n, h, w * c).astype(np.float32)
  out *= scale
  out -= shift
  return out.reshape(n, h, w, c)


def cutout_boxes(centre: np.ndarray, length: int, height: int, width: int) -> np.ndarray:
  """``int32 [n, 4]`` rows ``(y0, y1, x0, x1)``: ``[y - L/2, y + L/2) x [x - L/2, x + L/2)``, clipped."""
  y0 = np.clip(centre[:, 0] - length // 2, 0, height)
  y1 = np.clip(centre[:, 0] + length - length // 2, 0, height)
  x0 = np.clip(centre[:, 1] - length // 2, 0, width)
  x1 = np.clip(centre[:, 1] + length - length // 2, 0, width)
  return np.stack([y0, y1, x0, x1], 1).astype(np.int32)


def cutout(images: np.ndarray, centre: np.ndarray, length: int) -> np.ndarray:
  """Zeroes ``[y - L/2, y + L/2) x [x - L/2, x + L/2)`` (clipped) per example, in place."""
  _, h, w, _ = images.shape
  for i, (y0, y1, x0, x1) in enumerate(cutout_boxes(centre, length, h, w)):
    images[i, y0:y1, x0:x1] = 0.0
  return images


def augment_uint8(images: np.ndarray, params: dict[str, np.ndarray], spec: AugmentSpec) -> np.ndarray:
  """The uint8 part of :func:`augment`: crop + flip (normalisation and cutout come after)."""
  if spec.crop_padding or spec.flip:
    flip = params["flip"] if spec.flip else np.zeros(len(images), bool)
    offset = params["offset"] if spec.crop_padding else np.zeros_like(params["offset"])
    images = crop_flip(images, offset, flip, spec.crop_padding)
  return images


def augment(images: np.ndarray, params: dict[str, np.ndarray], spec: AugmentSpec,
            mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """Crop + flip (uint8), normalise to float32, cutout; ``params`` from :func:`draw_params`."""
  out = normalize(augment_uint8(images, params, spec), mean, std)
  if spec.cutout:
    out = cutout(out, params["centre"], spec.cutout)
  return out


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """``[out, in]`` weights of a triangle (bilinear) filter with half-pixel centres.

  Output pixel ``i`` samples input coordinate ``c = (i + 0.5) * in / out - 0.5``;
  input ``j`` gets weight ``max(0, 1 - |j - c| / s)`` with ``s = max(in/out, 1)``
  (widened when shrinking, i.e. antialiased), rows normalised to sum to 1, so
  borders are handled by renormalising the weights that fall inside.
  """
  ratio = size_in / size_out
  scale = max(ratio, 1.0)
  centres = (np.arange(size_out) + 0.5) * ratio - 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) / scale)
  return weights / weights.sum(axis=1, keepdims=True)


def resize(images: np.ndarray, height: int, width: int, chunk: int = 2048) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of uint8 ``[N, H, W, C]`` images."""
  n, h, w, c = images.shape
  if (h, w) == (height, width):
    return images
  rows = _resize_matrix(h, height).astype(np.float32)
  cols = _resize_matrix(w, width).astype(np.float32)
  out = np.empty((n, height, width, c), np.uint8)
  for start in range(0, n, chunk):
    x = images[start:start + chunk].astype(np.float32)
    y = np.einsum("oh,nhwc,pw->nopc", rows, x, cols, optimize=True)
    out[start:start + chunk] = np.clip(np.rint(y), 0, 255).astype(np.uint8)
  return out
