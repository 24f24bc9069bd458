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
* :func:`constrained_mode`: the most probable architecture under ``p_phi`` whose
  surrogate latency meets the target and uses at least ``latency.min_ratio`` of it
  (``latency.selection=constrained_mode``).

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
# How the found architecture is read from p_phi at the end of a search with a target.
SELECTIONS = ("mode", "constrained_mode")


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


def choice_costs(control_fn: Callable, params: PyTree, phi: PyTree) -> tuple[dict[str, np.ndarray], float]:
  r"""The linear surrogate's latency per choice, in ``phi``'s shapes: ``cost[n][..., k] = g(e_{n,k}) - g(0)``.

  ``g`` is additive (:class:`LinearControl`), so ``g(z) = b + sum_{n,k} cost[n][k] z[n][k]`` with
  ``b = g(0)``. Read off by evaluating ``g`` once on a batch of the zero architecture and every
  unit vector, so any space whose control is linear is served without knowing its layout.
  """
  names = sorted(phi)
  sizes = [int(np.prod(np.shape(phi[n]))) for n in names]
  total = sum(sizes)
  batch, offset = {}, 0
  for n, size in zip(names, sizes):
    basis = np.zeros((total + 1, size), np.float32)
    basis[1 + offset + np.arange(size), np.arange(size)] = 1.0  # row 0: the zero architecture
    batch[n] = basis.reshape((total + 1,) + tuple(np.shape(phi[n])))
    offset += size
  g = np.asarray(control_fn(params, batch), np.float64)
  bias = float(g[0])
  costs, offset = {}, 0
  for n, size in zip(names, sizes):
    costs[n] = (g[1 + offset:1 + offset + size] - bias).reshape(np.shape(phi[n]))
    offset += size
  return costs, bias


def constrained_mode(logits: PyTree, costs: dict[str, np.ndarray], bias: float, target_ms: float,
                     min_ratio: float = 0.0) -> tuple[dict[str, np.ndarray], float] | None:
  r"""The most probable architecture whose additive latency lies in ``[min_ratio * T, T]``, and that latency.

  .. math::
     \max_z \sum_i \log p_\phi(z_i) \quad \text{s.t.} \quad
     \rho T \le b + \sum_i l_i(z_i) \le T

  over the independent categoricals ``i`` (every row of every ``logits`` leaf), a
  multiple-choice knapsack. Its Lagrangian relaxation decouples over the categoricals,
  ``z_i(mu) = argmax_k log p_i(k) - mu l_i(k)``, and the latency of ``z(mu)`` does not rise
  with ``mu``. ``mu = 0`` is the mode, returned as is when it lies in the band.

  * Mode above ``T``: bisection finds the smallest ``mu > 0`` that meets ``T``. ``z(mu)``
    maximises ``log p - mu lat``, so no architecture at most as slow is more probable.
  * Mode below ``rho T`` (``min_ratio > 0``): the largest ``mu < 0`` that reaches
    ``rho T``; ``z(mu)`` maximises ``log p + |mu| lat``, so no architecture at least as slow
    is more probable. A target is a budget: when the accuracy term no longer pulls phi
    (a multiplier at 0, an accuracy signal at chance), the mode can sit far under it and give
    away accuracy the budget allowed; p_phi's preferences decide which choices take it up.
    If the slowest choices stay below ``rho T``, the answer is the slowest architecture.
  * The relaxation reaches only the knapsack's convex hull: when one of its steps jumps over
    the band (from below ``rho T`` to above ``T``), the most probable architecture one
    categorical away from either side of the jump that lands in the band replaces the
    answer; if there is none, the answer is the side that meets ``T``.

  Without the repair the result is optimal among the architectures the relaxation reaches
  (the knapsack's convex hull); the repair is a local search, not an optimum. None when even
  the fastest choices miss ``T``.

  Returns:
    ``({name: chosen index per row, shaped like the leaf without its last axis}, latency)``.
  """
  names = sorted(costs)
  logp = {}
  for n in names:  # log_softmax on the host, in float64: a one-off at the end of a search
    x = np.asarray(logits[n], np.float64)
    x = x - x.max(-1, keepdims=True)
    logp[n] = x - np.log(np.exp(x).sum(-1, keepdims=True))

  def choose(mu):
    z = {n: np.argmax(logp[n] - mu * costs[n], -1) for n in names}
    latency = bias + sum(float(np.take_along_axis(costs[n], z[n][..., None], -1).sum()) for n in names)
    return z, latency

  def bisect(lo, hi, ok):  # ok(hi) holds, ok(lo) does not: the boundary, returned on ok's side
    for _ in range(60):
      mid = 0.5 * (lo + hi)
      if ok(choose(mid)[1]):
        hi = mid
      else:
        lo = mid
    return choose(hi), choose(lo)

  floor = min_ratio * target_ms
  low = min_ratio > 0.0  # is there a floor to reach?

  def in_band(lat):
    return lat <= target_ms and (not low or lat >= floor)

  z, latency = choose(0.0)
  if in_band(latency):
    return z, latency
  if latency > target_ms:
    hi = 1.0
    while choose(hi)[1] > target_ms:
      hi *= 4.0
      if hi > 1e12:  # every categorical at its fastest choice and still above the target
        return None
    (found, found_lat), other = bisect(0.0, hi, lambda lat: lat <= target_ms)
  else:
    # Below the band: mu < 0 trades probability for latency until the floor is reached.
    lo = -1.0
    while choose(lo)[1] < floor and lo > -1e12:
      lo *= 4.0
    (slow, slow_lat), (found, found_lat) = bisect(0.0, lo, lambda lat: lat >= floor)
    if slow_lat <= target_ms:
      return slow, slow_lat
    other = (slow, slow_lat)
  if low and found_lat < floor:
    # The relaxation stepped over the band (one categorical's switch costs more than the
    # band is wide). The most probable single-choice change of either neighbour that lands
    # in the band, if any, beats the answer below the floor.
    repaired = _best_single_change([(found, found_lat), other], logp, costs, names, floor, target_ms)
    if repaired is not None:
      return repaired
  return found, found_lat


def measured_selection(logits: PyTree, costs: dict[str, np.ndarray], bias: float, target_ms: float,
                       min_ratio: float, measure_fn: Callable[[dict[str, np.ndarray]], float],
                       rounds: int) -> tuple[dict[str, np.ndarray], list[dict]] | None:
  r""":func:`constrained_mode`, checked by measuring its answer and re-solved where the surrogate erred.

  The additive surrogate ``g(z) = b + sum_i l_i(z_i)`` is fitted over random architectures;
  near the answer its error ``e(z) = lat(z) - g(z)`` can be as wide as the band
  ``[min_ratio T, T]`` itself (on a CPU probe, held-out MAE of about half the band). The
  knapsack is solved with the intercept shifted, ``b + o``: a larger ``o`` prices every
  architecture slower, so the answer ``z(o)`` gets faster. Round ``r`` measures ``z(o_r)``:

  * in the band: that is the answer;
  * above ``T``: ``o_r`` is a lower bound for ``o``; under ``min_ratio T``: an upper bound;
  * the next shift makes the surrogate agree with the measurement,
    :math:`o_{r+1} = o_r + (\mathrm{lat}(z_r) - g_{o_r}(z_r))`, unless that leaves the
    bracket of the bounds found so far, or repeats an answer already measured: then the
    bracket's midpoint (bisection on ``o``).

  At most ``rounds`` architectures are measured (a repeated answer costs nothing).

  Returns:
    ``(choice, trail)``: the first answer whose measured latency is in the band; else the
    slowest measured one that meets ``T``; else the fastest measured. ``trail``: one
    ``{"predicted_ms", "measured_ms", "bias_ms"}`` per measured answer, in order
    (``predicted_ms`` by the shifted surrogate ``b + o`` of that round, ``bias_ms = b + o``).
    None when the unshifted solve finds nothing (the target is below every architecture the
    surrogate prices).
  """
  floor = min_ratio * target_ms
  offset, low, high = 0.0, -np.inf, np.inf  # the shift, and the bracket the measurements put it in
  trail, measured = [], {}  # measured: answer's key -> (choice, latency)
  for _ in range(8 * max(int(rounds), 1)):  # solves; a repeated answer costs no measurement
    found = constrained_mode(logits, costs, bias + offset, target_ms, min_ratio)
    if found is None:  # shifted so far that every architecture is priced above the target
      if not trail:
        return None
      high = offset
    else:
      choice, predicted = found
      key = tuple(np.asarray(choice[n]).tobytes() for n in sorted(choice))
      if key not in measured:
        if len(trail) >= int(rounds):
          break
        lat = float(measure_fn(choice))
        measured[key] = (choice, lat)
        trail.append({"predicted_ms": float(predicted), "measured_ms": lat, "bias_ms": float(bias + offset)})
        if floor <= lat <= target_ms:
          return choice, trail
        step = lat - predicted
      else:
        step = None  # seen: its measurement moves the bracket, not the shift
      lat = measured[key][1]
      if lat > target_ms:
        low = max(low, offset)
      elif lat < floor:
        high = min(high, offset)
      if step is not None and low < offset + step < high:
        offset += step
        continue
    if np.isfinite(low) and np.isfinite(high):
      if high - low < 1e-9 * max(1.0, abs(target_ms)):
        break
      offset = 0.5 * (low + high)
    elif np.isfinite(low):  # only too slow so far: shift up by at least the band's width
      offset = low + max(target_ms - floor, 1e-3 * target_ms)
    else:  # only too fast so far
      offset = high - max(target_ms - floor, 1e-3 * target_ms)
  answers = list(measured.values())
  meets = [a for a in answers if a[1] <= target_ms]
  choice = max(meets, key=lambda a: a[1])[0] if meets else min(answers, key=lambda a: a[1])[0]
  return choice, trail


def one_hot_arch(choice: dict[str, np.ndarray], like: PyTree) -> dict[str, np.ndarray]:
  """The architecture ``choice`` as one-hot leaves ``[1, *like[n].shape]`` (a batch of one, float32)."""
  return {n: np.eye(np.shape(like[n])[-1], dtype=np.float32)[np.asarray(z)][None] for n, z in choice.items()}


def _best_single_change(starts, logp, costs, names, floor, target_ms):
  """The most probable architecture one categorical away from one of ``starts`` whose additive
  latency lies in ``[floor, target_ms]``, with that latency; None if there is none."""
  best, best_lp = None, -np.inf
  for z, lat in starts:
    lp = sum(float(np.take_along_axis(logp[n], z[n][..., None], -1).sum()) for n in names)
    for n in names:
      cur_cost = np.take_along_axis(costs[n], z[n][..., None], -1)
      cur_lp = np.take_along_axis(logp[n], z[n][..., None], -1)
      new_lat = lat + (costs[n] - cur_cost)    # [..., K]: change this row to choice k
      new_lp = lp + (logp[n] - cur_lp)
      ok = (new_lat >= floor) & (new_lat <= target_ms)
      if not ok.any():
        continue
      flat = np.where(ok, new_lp, -np.inf).reshape(-1)
      i = int(np.argmax(flat))
      if flat[i] > best_lp:
        row_shape = np.shape(costs[n])[:-1]
        k = i % np.shape(costs[n])[-1]
        row = np.unravel_index(i // np.shape(costs[n])[-1], row_shape) if row_shape else ()
        changed = {m: np.array(z[m], copy=True) for m in names}
        changed[n][row] = k
        best, best_lp = (changed, float(new_lat.reshape(-1)[i])), float(flat[i])
  return best


def one_hot_logits(choice: dict[str, np.ndarray], like: PyTree) -> dict[str, np.ndarray]:
  """Logits whose mode is ``choice`` (0 for the chosen entry, -1e4 elsewhere), shaped like ``like``."""
  out = {}
  for n, z in choice.items():
    k = np.shape(like[n])[-1]
    out[n] = np.where(np.arange(k) == np.asarray(z)[..., None], 0.0, -1e4).astype(np.float32)
  return out
