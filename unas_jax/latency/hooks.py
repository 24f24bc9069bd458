r"""A latency source as the search loop sees it, and what every source shares.

* :class:`LatencyHooks`: the interface :func:`unas_jax.search.loop.run_search` calls
  (measure the sampled architectures, hand the step the surrogate, bookkeeping).
* :class:`LinearControl`: the linear surrogate as a step input, RELAX's control

  .. math::
     g(z) = \mathrm{flatten}(z) \cdot l + b, \qquad
     \mathbb{E}_{z \sim p_\phi}[g(z)] = g(p_\phi)

  (exact because ``g`` is linear in the one-hot ``z``).
* :func:`check_target`: the one check of ``latency.target_ms`` against the fastest
  architecture a source knows.
* :func:`target_report`: the found architecture's latency against the target.

This module imports nothing from :mod:`unas_jax.search`: the loop depends on the
latency sources, not the other way round.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unas_jax import estimators as est
from unas_jax.errors import ConfigError

PyTree = Any

# The penalties with a target to meet; ``linear`` prices every millisecond and ignores it.
TARGET_PENALTIES = ("hinge", "lagrangian")


class LatencyHooks(Protocol):
  """What a latency-aware search space provides (:mod:`unas_jax.latency.proxyless_source`,
  :mod:`unas_jax.latency.nb201_table`)."""

  def measure(self, z: PyTree) -> np.ndarray:
    """Measured latency in ms of each architecture of ``z`` (leaves ``[S, ..., K]``, numpy)."""

  def control_params(self) -> PyTree:
    """The surrogate's parameters (passed to the step each call)."""

  def control_fn(self, params: PyTree, arch: PyTree) -> jax.Array:
    """Differentiable predicted latency ``[S]`` in ms."""

  def state_dict(self) -> dict:
    """JSON-able state saved with checkpoints."""

  def load_state_dict(self, state: dict) -> None:
    ...

  def after_step(self, step: int, phi: PyTree) -> dict[str, float]:
    """Bookkeeping at logging steps (e.g. refitting the surrogate); returns metrics to log."""

  def speculate(self, z: PyTree) -> None:
    """Starts preparing (compiling) the architectures of a coming step, in the background."""


def control_params(coef: Any, bias: Any) -> dict[str, jax.Array]:
  """The linear surrogate as step inputs: ``{'coef': [D], 'bias': []}`` (float32)."""
  return {"coef": jnp.asarray(coef, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


@dataclasses.dataclass(frozen=True)
class LinearControl:
  """``g(arch) = flatten_fn(arch) . coef + bias`` with ``params = {'coef': [D], 'bias': []}``.

  The surrogate's parameters are an argument, not constants closed over, so a refitted
  surrogate reaches the jitted step without a recompile. Called on one-hot architectures
  it is the additive latency model ``b + sum_ij l_ij z_ij``; on relaxed ones, RELAX's control.

  Attributes:
    flatten_fn: ``arch -> [S, ..., D]``, the space's one-hot features (differentiable).
  """
  flatten_fn: Callable[[PyTree], jax.Array]

  def __call__(self, params: dict[str, jax.Array], arch: PyTree) -> jax.Array:
    """``g(arch)``, ``[S, ...]``; differentiable in ``arch``."""
    return self.flatten_fn(arch) @ params["coef"] + params["bias"]

  def expected(self, params: dict[str, jax.Array], phi: PyTree, eps: float) -> jax.Array:
    """``E_{z ~ p_phi}[g(z)] = g(p_phi)``, exact for a linear ``g`` (``eps``: the search's softening)."""
    probs = est.probabilities(est.soften(phi, eps))
    return self(params, {k: jnp.asarray(v)[None] for k, v in probs.items()})[0]


def check_target(target_ms: float, fastest_ms: float | None = None, fastest: str = "",
                 penalty: str = "hinge") -> None:
  """Raises a one-line :class:`ConfigError` naming ``latency.target_ms`` unless ``0 < fastest_ms <= target_ms``.

  Args:
    target_ms: ``latency.target_ms``.
    fastest_ms: the smallest latency the source can reach (None: check the sign only, e.g.
      before anything is measured).
    fastest: what ``fastest_ms`` is (the architecture, and how it was priced), for the message.
    penalty: ``latency.penalty``; without a target to meet (``linear``) nothing is checked.
  """
  if penalty not in TARGET_PENALTIES:
    return
  if not float(target_ms) > 0:
    raise ConfigError(f"latency.target_ms={target_ms} must be positive (a latency budget in ms)")
  if fastest_ms is not None and target_ms < fastest_ms:
    where = f" ({fastest})" if fastest else ""
    raise ConfigError(f"latency.target_ms={target_ms} is below the smallest reachable latency, {fastest_ms:.4f} ms"
                      f"{where}; raise the target above it")


def target_report(measured_ms: float, predicted_ms: float, lc: ml_collections.ConfigDict) -> dict:
  """The found (mode) architecture's latency against ``lc.target_ms``: ``ratio = latency / target``."""
  target = float(lc.target_ms)
  return {"measured_ms": measured_ms, "predicted_ms": predicted_ms, "target_ms": target,
          "ratio": measured_ms / target if target > 0 else float("nan"), "meets_target": measured_ms <= target,
          "penalty": lc.penalty, "c": float(lc.c) if lc.penalty != "lagrangian" else None}
