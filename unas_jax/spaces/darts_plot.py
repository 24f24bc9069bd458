"""Pictures of DARTS cells: one cell of a genotype as an arc diagram (matplotlib, imported on first use)."""
from __future__ import annotations

import os

from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype


def plot_cell(genotype: darts_genotype.Genotype, which: str, path: str | os.PathLike, *,
              title: str | None = None) -> None:
  """Draws one cell of ``genotype`` as a PNG (matplotlib only, no graphviz).

  An arc diagram: the states ``c_{k-2}``, ``c_{k-1}``, nodes ``0..n-1`` and the
  output ``c_{k}`` (the concatenation of every node) on one line; each node's
  edge ``a`` is an arc above the line and edge ``b`` an arc below, labelled with
  its op at the arc's apex (so the two edges of a node that read the same state
  stay apart); thin grey arcs lead every node to ``c_{k}``.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.patches import FancyArrowPatch  # pylint: disable=g-import-not-at-top

  nodes = genotype.cell(which)
  n = len(nodes)
  step = 2.6
  xpos = {i: step * i for i in range(n + 2)}
  out_x = step * (n + 2)
  rad = 0.32  # arc3: apex height = rad * span / 2

  fig_w = 1.9 * (n + 3)
  fig, ax = plt.subplots(figsize=(fig_w, 0.62 * fig_w))
  ax.set_aspect("equal")
  palette = plt.get_cmap("tab10")

  def arc(x0, x1, sign, color, label=None, lw=1.6, style="-"):
    # arc3 bends to the left of the direction of travel: left-to-right with
    # rad > 0 bends down, so ``sign=+1`` (above) uses a negative rad.
    r = -sign * rad
    ax.add_patch(FancyArrowPatch((x0, 0.0), (x1, 0.0), connectionstyle=f"arc3,rad={r}", arrowstyle="-|>",
                                 mutation_scale=13, linewidth=lw, linestyle=style, color=color,
                                 shrinkA=16, shrinkB=16, zorder=1))
    apex = sign * rad * (x1 - x0) / 2
    if label:
      ax.text((x0 + x1) / 2, apex, label, fontsize=9, ha="center", va="center", zorder=3,
              bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=color, linewidth=0.9))
    return apex

  heights = [0.0]
  for j, node in enumerate(nodes):
    color = palette(j % 10)
    for side, sign in ((0, 1), (1, -1)):
      heights.append(arc(xpos[node.inputs[side]], xpos[j + 2], sign, color, node.ops[side]))
  for j in range(n):
    heights.append(arc(xpos[j + 2], out_x, 1, "#b0b0b0", lw=0.9, style="--"))

  box = dict(boxstyle="round,pad=0.45", linewidth=1.5)
  for i, x in xpos.items():
    ax.text(x, 0.0, darts.state_label(i), fontsize=11, ha="center", va="center", zorder=4,
            bbox=dict(box, facecolor="#cfe8cf" if i < 2 else "#cfe0f5"))
  ax.text(out_x, 0.0, "c_{k}", fontsize=11, ha="center", va="center", zorder=4,
          bbox=dict(box, facecolor="#f5ecbf"))
  ax.set_xlim(-1.4, out_x + 1.4)
  ax.set_ylim(min(heights) - 1.0, max(heights) + 1.0)
  ax.axis("off")
  ax.set_title(title or f"{which} cell (edge a above, edge b below; c_{{k}} = concat of nodes 0..{n - 1})",
               fontsize=11)
  fig.tight_layout()
  from unas_jax.utils import files  # pylint: disable=import-outside-toplevel
  files.save_figure(fig, path, dpi=110, bbox_inches="tight")
  plt.close(fig)
