r"""Additive latency models: a constant plus one term per (layer, choice).

.. math::
   \mathrm{lat}(z) = b + \sum_{l=1}^{21} \sum_k t_{lk} z_{lk}

This is the form of ProxylessNAS's lookup table (sum of per-block latencies, docs/design.md
section 8), of the per-block table of compiled blocks, and of UNAS's linear surrogate
(``g(z) = sum_ij l_ij z_ij + b`` on the flattened one-hot architecture). Because every
layer contributes independently, the smallest reachable latency is
``b + sum_l min_k t_lk`` and a latency target below it can never be met.

:data:`predict` is the one evaluation of that form for this space: RELAX's control (the
step gets the model as ``{'coef', 'bias'}``, :meth:`AdditiveLatency.control_params`) and
:meth:`AdditiveLatency.predict` alike.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import numpy as np

from unas_jax.latency import hooks
from unas_jax.spaces import proxyless as space

# ``g(arch) = flatten_arch(arch) . coef + bias`` on ``{layer: [S, ..., K_l]}``, one-hot or relaxed.
predict = hooks.LinearControl(space.flatten_arch)


@dataclasses.dataclass
class AdditiveLatency:
  """``bias`` (ms) plus ``table[layer][k]`` (ms) for the chosen op of every layer.

  Attributes:
    table: ``{layer name: [K_l]}`` in ``phi`` layout (``zero`` contributes its entry,
      0 for a lookup table).
    bias: the constant part (stem, first block, head; or a fitted intercept).
    source: a short description (``'lut:...'``, ``'blocks'``, ``'surrogate'``).
  """
  table: dict[str, np.ndarray]
  bias: float
  source: str = ""

  def __post_init__(self):
    space._check_layout(self.table, sample_axis=False)  # pylint: disable=protected-access
    self.table = {k: np.asarray(v, np.float64) for k, v in self.table.items()}
    self.bias = float(self.bias)

  # -- flat form (the surrogate's parameterisation)

  @property
  def coef(self) -> np.ndarray:
    """``[141]``: the table flattened in layer order (:func:`space.flatten_arch`)."""
    return np.concatenate([self.table[n] for n in space.LAYER_NAMES])

  @classmethod
  def from_flat(cls, coef: np.ndarray, bias: float, source: str = "") -> "AdditiveLatency":
    table = {k: np.asarray(v) for k, v in space.unflatten_arch(np.asarray(coef, np.float64)).items()}
    return cls(table, bias, source)

  # -- evaluation

  def latency(self, genotype: space.ProxylessGenotype | str) -> float:
    """``b + sum_l t[l, op_l]`` in ms."""
    genotype = space.get_genotype(genotype)
    return self.bias + float(sum(self.table[n][k] for n, k in zip(space.LAYER_NAMES, genotype.indices)))

  def latencies(self, genotypes: Sequence[space.ProxylessGenotype]) -> np.ndarray:
    return space.genotypes_to_flat(genotypes) @ self.coef + self.bias

  def control_params(self) -> dict[str, jax.Array]:
    """The model as step inputs: ``{'coef': [141], 'bias': []}`` (float32), for :data:`predict`."""
    return hooks.control_params(self.coef, self.bias)

  def predict(self, arch: Mapping[str, jax.Array]) -> jax.Array:
    """Differentiable ``g(arch)``: leaves ``[S, ..., K]`` (one-hot or relaxed) -> ``[S, ...]``.

    Usable as RELAX's ``control_fn`` (:func:`unas_jax.estimators.relax`); :data:`predict` on
    :meth:`control_params`.
    """
    return predict(self.control_params(), arch)

  __call__ = predict

  # -- extremes

  def min_latency(self) -> float:
    """Smallest reachable latency: ``b + sum_l min_k t_lk``."""
    return self.bias + float(sum(np.min(self.table[n]) for n in space.LAYER_NAMES))

  def max_latency(self) -> float:
    return self.bias + float(sum(np.max(self.table[n]) for n in space.LAYER_NAMES))

  def min_genotype(self) -> space.ProxylessGenotype:
    """The architecture of :meth:`min_latency`."""
    return space.ProxylessGenotype.from_indices(int(np.argmin(self.table[n])) for n in space.LAYER_NAMES)

  def check_target(self, target_ms: float) -> None:
    """Raises :class:`unas_jax.errors.ConfigError` (naming ``latency.target_ms``) if ``target_ms`` is below
    the smallest reachable latency (:func:`unas_jax.latency.hooks.check_target`)."""
    hooks.check_target(target_ms, self.min_latency(),
                       f"{self.source or 'latency model'}; architecture: {self.min_genotype()}")

  # -- serialisation (plain arrays, for checkpoints)

  def to_arrays(self) -> dict[str, np.ndarray]:
    return {"coef": self.coef, "bias": np.asarray(self.bias)}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray], source: str = "") -> "AdditiveLatency":
    return cls.from_flat(np.asarray(arrays["coef"]), float(np.asarray(arrays["bias"])), source)
