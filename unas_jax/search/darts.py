"""The DARTS cell space as the search loop sees it (job ``darts_search``)."""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from flax import nnx
from chex import ArrayTree as PyTree

from unas_jax import estimators as est
from unas_jax.errors import ConfigError
from unas_jax.nn import batchnorm
from unas_jax.nn.darts_supernet import DartsSupernet
from unas_jax.nn.darts_supernet import check_input_resolution
from unas_jax.objectives import pairing
from unas_jax.search import loop
from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype
from unas_jax.spaces import darts_plot


class DartsSearchSpace(loop.SpaceAdapter):
  """Builds the supernet from ``config.model`` and turns phi into a genotype and pictures."""
  name = "darts"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.arch_penalty_fn = pairing.pairing_penalty
    m = config.model
    self.space = darts.DartsSpace(op_names=darts.op_set(m.ops), num_nodes=m.nodes)

  def build_supernet(self, config, info, bn_axis_name):
    m = config.model
    if info.image_shape[0] < 8:
      raise ConfigError(f"images of {info.image_shape[0]}x{info.image_shape[1]} are too small for two reduction "
                        "cells; set data.image_size >= 8")
    try:  # at start-up, not when the first step is traced
      check_input_resolution(info.image_shape[0], info.image_shape[1], m.stem)
    except ConfigError as e:
      raise ConfigError(f"{e}; set data.image_size") from None
    supernet = DartsSupernet(self.space, num_classes=info.num_classes, channels=m.channels, num_cells=m.cells,
                             in_channels=info.image_shape[-1], stem_multiplier=m.stem_multiplier, stem=m.stem,
                             depthwise_impl=m.depthwise_impl, phi_init_scale=config.search.phi_init_scale,
                             kernels=m.kernels, dtype=m.dtype,
                             remat=m.remat, rngs=nnx.Rngs(params=config.seed))
    # search.bn='sync': every BatchNorm averages its batch statistics over the data axis.
    batchnorm.set_axis_name(supernet, bn_axis_name)
    return supernet

  def phi_from_state(self, phi_state: PyTree) -> PyTree:
    return {t: dict(phi_state[t]) for t in darts.CELL_TYPES}

  def genotype(self, phi: PyTree) -> darts_genotype.Genotype:
    return darts_genotype.genotype_from_phi(self.softened(phi), self.space, self.meta)

  def write_genotype(self, genotype: darts_genotype.Genotype, out_dir: str) -> list[str]:
    paths = [os.path.join(out_dir, "genotype.json")]
    genotype.save(paths[0])
    for which in darts.CELL_TYPES:
      path = os.path.join(out_dir, f"{which}_cell.png")
      darts_plot.plot_cell(genotype, which, path)
      paths.append(path)
    return paths

  def selector_probabilities(self, phi: PyTree) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    probs, names = {}, {}
    for t in darts.CELL_TYPES:
      p = {k: np.asarray(v) for k, v in est.probabilities(self.softened(phi[t])).items()}
      probs[f"{t} ops"] = p["ops"].reshape(-1, self.space.num_ops)
      names[f"{t} ops"] = list(self.space.op_names)
      k_max = self.space.num_inputs(self.space.num_nodes - 1)
      rows = []
      for j in range(self.space.num_nodes):
        padded = np.zeros((2, k_max))
        padded[:, :p[f"inputs_{j}"].shape[-1]] = p[f"inputs_{j}"]
        rows.append(padded)
      probs[f"{t} inputs"] = np.concatenate(rows, 0)
      names[f"{t} inputs"] = [darts.state_label(i) for i in range(k_max)]
    return probs, names


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The ``darts_search`` job."""
  return loop.run_search(config, workdir, DartsSearchSpace(config))


__all__ = ["DartsSearchSpace", "run", "jax"]
