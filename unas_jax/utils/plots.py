"""Plots a person would rather look at than read: selector probabilities over time, curves."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from unas_jax.utils import files


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def probability_heatmaps(steps: Sequence[int], probabilities: Sequence[Mapping[str, np.ndarray]],
                         choice_names: Mapping[str, Sequence[str]], path: str, title: str = "") -> str:
  """One heat map per selector group: rows = (selector, choice), columns = logged steps.

  Args:
    steps: the logged steps.
    probabilities: per step, ``{group: [num_selectors, K]}`` probabilities.
    choice_names: per group, the ``K`` choice names (row labels).
    path: PNG to write.
  """
  plt = _pyplot()
  groups = list(probabilities[0].keys())
  heights = [np.asarray(probabilities[0][g]).size for g in groups]
  height = 0.15 * sum(heights) + 0.9 * len(groups) + 0.8
  fig, axes = plt.subplots(len(groups), 1, figsize=(11, height), gridspec_kw={"height_ratios": heights},
                           squeeze=False)
  # Margins in inches, not fractions: a tall figure otherwise opens with inches of blank space.
  fig.subplots_adjust(top=1 - 0.7 / height, bottom=0.5 / height, hspace=0.9 * len(groups) / height * 1.5)
  for ax, group in zip(axes[:, 0], groups):
    series = np.stack([np.asarray(p[group]).reshape(-1) for p in probabilities], axis=1)  # [rows, T]
    num_selectors, k = np.asarray(probabilities[0][group]).shape
    image = ax.imshow(series, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0,
                      extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, series.shape[0], 0))
    labels = [f"{s}:{choice_names[group][c]}" for s in range(num_selectors) for c in range(k)]
    ax.set_yticks(np.arange(series.shape[0]) + 0.5)
    ax.set_yticklabels(labels, fontsize=6)
    for s in range(1, num_selectors):
      ax.axhline(s * k, color="w", lw=0.6)
    ax.set_title(group, fontsize=9)
  axes[-1, 0].set_xlabel("step")
  fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01, label="probability")
  if title:
    fig.suptitle(title, y=1 - 0.25 / height)
  files.save_figure(fig, path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def curves(records: Sequence[Mapping[str, float]], keys: Sequence[str], path: str, title: str = "",
           x_key: str = "step") -> str:
  """Line plots of ``keys`` against ``x_key``, one panel per key (missing values skipped)."""
  plt = _pyplot()
  keys = [k for k in keys if any(k in r for r in records)]
  if not keys:
    return path
  cols = min(3, len(keys))
  rows = -(-len(keys) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
  for ax, key in zip(axes.ravel(), keys):
    xs = [r[x_key] for r in records if key in r]
    ys = [r[key] for r in records if key in r]
    ax.plot(xs, ys, lw=1.2)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel(x_key, fontsize=8)
    ax.grid(alpha=0.3)
  for ax in axes.ravel()[len(keys):]:
    ax.axis("off")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  files.save_figure(fig, path, dpi=110)
  plt.close(fig)
  return path


def ensure_dir(path: str) -> str:
  """Creates ``path`` (a local path or a URI) if needed."""
  return files.makedirs(path)
