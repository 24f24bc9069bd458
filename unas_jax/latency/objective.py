r"""The latency term of the search objective (DESIGN.md section 3) and its RELAX control.

.. math::
   L_\mathrm{lat}(z) = c_t \,\mathrm{relu}(\mathrm{lat}(z) - T)
   \quad\text{(hinge on a target } T\text{ in ms)}, \qquad
   c_t = c \cdot \min(t / N, 1)

(``c = 0.1`` in UNAS, linear warm-up over ``N`` steps; UNAS's ``--latency_iter``),
or the plain linear penalty ``c_t lat(z)``. ``lat(z)`` is measured (the probe) or looked
up (the LUT); RELAX's control is the same expression with the differentiable surrogate
``g`` in place of ``lat`` (:func:`control_fn`), evaluated on relaxed samples.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from unas_jax.errors import ConfigError
from unas_jax.estimators import categorical
from unas_jax.latency.additive import AdditiveLatency

PENALTIES = ("hinge", "linear")


def coeff_at(step: int | jax.Array, coeff: float = 0.1, warmup_steps: int = 0) -> jax.Array:
  """``c_t = c * clip(step / warmup_steps, 0, 1)`` (``c`` at once when ``warmup_steps == 0``)."""
  if warmup_steps <= 0:
    return jnp.asarray(coeff, jnp.float32)
  return coeff * jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)


def penalty(latency_ms: jax.Array, target_ms: float, coeff: float | jax.Array, kind: str = "hinge") -> jax.Array:
  """``coeff * relu(lat - target)`` (hinge) or ``coeff * lat`` (linear), elementwise."""
  if kind == "hinge":
    return coeff * jax.nn.relu(latency_ms - target_ms)
  if kind == "linear":
    return coeff * latency_ms
  raise ConfigError(f"latency penalty {kind!r} is not one of {PENALTIES}")


def control_fn(model: AdditiveLatency, target_ms: float, coeff: float | jax.Array,
               kind: str = "hinge") -> Callable[[Mapping[str, jax.Array]], jax.Array]:
  """RELAX's differentiable control ``arch -> penalty(g(arch))``, ``[S]``, for a surrogate/LUT ``g``."""
  if kind == "hinge":
    model.check_target(target_ms)
  return lambda arch: penalty(model.predict(arch), target_ms, coeff, kind)


def expected_latency(model: AdditiveLatency, phi: Mapping[str, jax.Array], eps: float = 0.0) -> jax.Array:
  r"""``E_{z ~ p_phi}[g(z)] = b + sum_l p_l . t_l`` (exact for an additive ``g``), for logging/plots."""
  probs = categorical.probabilities(categorical.soften(phi, eps))
  return model.predict({k: v[None] for k, v in probs.items()})[0]
