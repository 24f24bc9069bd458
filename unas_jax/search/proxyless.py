r"""Latency-aware search in the ProxylessNAS space (job ``proxyless_search``, docs/design.md sections 2-4, 8).

The accuracy term goes through the configured estimator (REBAR by default); the
latency term ``c_t * relu(lat(z) - target)`` (or, with ``latency.penalty=lagrangian``,
``lambda * lat(z) / target`` with the multiplier ``lambda`` adjusted by the search:
:func:`unas_jax.objectives.losses.dual_ascent`) goes through RELAX with the
*measured* latency of every sampled architecture and the linear surrogate
``g(z) = sum_ij l_ij z_ij + b`` as control (or REINFORCE, or the biased
FBNet-style gradient of the surrogate through the relaxed sample).

This module is the space as the loop sees it (:class:`ProxylessSearchSpace`) and the
job (:func:`run`). The latency sources (``config.latency.source``: ``probe``, ``lut``,
``blocks``), their files and the surrogate fit live in
:mod:`unas_jax.latency.proxyless_source`.
"""
from __future__ import annotations

import os

import ml_collections
import numpy as np
from flax import nnx
from chex import ArrayTree as PyTree

from unas_jax import estimators as est
from unas_jax.errors import ConfigError, DataError
from unas_jax.latency.proxyless_source import ProxylessLatency
from unas_jax.nn import batchnorm
from unas_jax.nn.proxyless_supernet import ProxylessSupernet
from unas_jax.search import loop
from unas_jax.search import step as step_lib
from unas_jax.spaces import proxyless as space


class ProxylessSearchSpace(loop.SpaceAdapter):
  """The ProxylessNAS MBConv space for the search loop."""
  name = "proxyless"

  def build_supernet(self, config, info, bn_axis_name):
    m = config.model
    supernet = ProxylessSupernet(m.widths, info.num_classes, rngs=nnx.Rngs(params=config.seed),
                                 zero_dropout=m.zero_dropout, bn_affine=m.bn_affine, depthwise_impl=m.depthwise_impl,
                                 phi_init_scale=config.search.phi_init_scale, kernels=m.kernels,
                                 dtype=m.dtype, remat=m.remat, scan_layers=m.scan_layers)
    batchnorm.set_axis_name(supernet, bn_axis_name)  # search.bn='sync': statistics over the data axis
    return supernet

  def phi_from_state(self, phi_state: PyTree) -> PyTree:
    return {name: phi_state[name] for name in space.LAYER_NAMES}

  def genotype(self, phi: PyTree) -> space.ProxylessGenotype:
    return space.genotype_from_phi(self.softened(phi))

  def write_genotype(self, genotype: space.ProxylessGenotype, out_dir: str) -> list[str]:
    path = os.path.join(out_dir, "genotype.json")
    genotype.save(path)
    return [path] + self.write_latency_report(genotype, out_dir)

  def selector_probabilities(self, phi: PyTree):
    probs = est.probabilities(self.softened(phi))
    matrix = np.zeros((len(space.LAYER_NAMES), len(space.PROXYLESS_OPS)))
    for i, name in enumerate(space.LAYER_NAMES):
      p = np.asarray(probs[name])
      matrix[i, :p.shape[-1]] = p
    return {"layers": matrix}, {"layers": list(space.PROXYLESS_OPS)}

  def latency_hooks(self, config, workdir, info):
    if not config.latency.enabled:
      return None
    self.latency = ProxylessLatency(config, workdir, info.num_classes)
    self.latency.fit()
    return self.latency


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The ``proxyless_search`` job."""
  s = config.search
  if (config.latency.enabled and config.latency.source == "probe" and config.latency.estimator in ("relax", "reinforce")
      and s.sampling == "per_example"):
    # One timing per sampled architecture: per-example sampling would compile and time a batch of networks per
    # step. A latency table prices any number of architectures for free.
    raise ConfigError("latency-aware search with latency.source=probe measures every sampled architecture: use "
                      "search.sampling=per_device or shared (per_example would time batch-size many networks per "
                      "step), or latency.source=lut")
  space_ = ProxylessSearchSpace(config)
  try:
    return loop.run_search(config, workdir, space_)
  except DataError as e:
    raise DataError(f"{e} -- or try the zero-download variant: --config=configs/proxyless_latency.py:quick") from None
  finally:
    if space_.latency is not None:
      space_.latency.close()


__all__ = ["ProxylessSearchSpace", "run", "step_lib"]
