r"""The latency term of the search objective (DESIGN.md section 3) and its RELAX control.

.. math::
   L_\mathrm{lat}(z) = c_t \,\mathrm{relu}(\mathrm{lat}(z) - T)
   \quad\text{(hinge on a target } T\text{ in ms)}, \qquad
   c_t = c \cdot \min(t / N, 1)

(``c = 0.1`` in UNAS, linear warm-up over ``N`` steps; UNAS's ``--latency_iter``),
or the plain linear penalty ``c_t lat(z)``. ``lat(z)`` is measured (the probe) or looked
up (the LUT); RELAX's control is the same expression with the differentiable surrogate
``g`` in place of ``lat`` (:func:`control_fn`), evaluated on relaxed samples. The
penalty and the warm-up themselves are :func:`unas_jax.objectives.losses.latency_penalty`
and :func:`~unas_jax.objectives.losses.latency_coefficient` (one definition, shared with
the search step).
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax

from unas_jax.estimators import categorical
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.objectives import losses


def control_fn(model: AdditiveLatency, target_ms: float, coeff: float | jax.Array,
               kind: str = "hinge") -> Callable[[Mapping[str, jax.Array]], jax.Array]:
  """RELAX's differentiable control ``arch -> penalty(g(arch))``, ``[S]``, for a surrogate/LUT ``g``."""
  if kind == "hinge":
    model.check_target(target_ms)
  return lambda arch: losses.latency_penalty(model.predict(arch), coeff, target_ms, kind)


def expected_latency(model: AdditiveLatency, phi: Mapping[str, jax.Array], eps: float = 0.0) -> jax.Array:
  r"""``E_{z ~ p_phi}[g(z)] = b + sum_l p_l . t_l`` (exact for an additive ``g``), for logging/plots."""
  probs = categorical.probabilities(categorical.soften(phi, eps))
  return model.predict({k: v[None] for k, v in probs.items()})[0]
