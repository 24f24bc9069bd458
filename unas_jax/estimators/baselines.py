r"""REINFORCE baselines as pure functions over explicit state (optax style).

A baseline ``b`` is subtracted from the loss in the score-function term
``(L(z) - b) * d log p(z) / d phi``. The estimate stays unbiased whenever ``b`` does
not depend on the ``z`` it multiplies: a constant, an average of *past* losses,
or the mean of the *other* samples of the same draw.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class MovingAverageState(NamedTuple):
  """``value`` is the debiased running mean; ``count`` the number of updates."""
  mean: jax.Array
  count: jax.Array


class Baseline(NamedTuple):
  """A baseline: ``init() -> state``, ``value(state, f_z) -> b``, ``update(state, f_z) -> state``.

  ``value`` returns an array broadcastable against the per-sample losses
  ``f_z`` (shape ``[S]``); for baselines that need the current losses
  (leave-one-out), ``b_s`` must not depend on ``f_z[s]``.
  """
  init: Callable[[], Any]
  value: Callable[[Any, jax.Array], jax.Array]
  update: Callable[[Any, jax.Array], Any]


def no_baseline() -> Baseline:
  """``b = 0``: plain REINFORCE."""
  return Baseline(init=lambda: (), value=lambda state, f_z: jnp.zeros((), f_z.dtype),
                  update=lambda state, f_z: state)


def constant_baseline(b: float) -> Baseline:
  """``b`` fixed."""
  return Baseline(init=lambda: (), value=lambda state, f_z: jnp.asarray(b, f_z.dtype),
                  update=lambda state, f_z: state)


def moving_average_baseline(decay: float = 0.99) -> Baseline:
  r"""``b_t = `` bias-corrected exponential moving average of the mean loss of steps ``< t``.

  ``m_t = decay * m_{t-1} + (1 - decay) * mean(f_z)``, ``b_t = m_{t-1} / (1 - decay^{t-1})``
  (0 before the first update), as Adam corrects its moments.
  """
  def init():
    return MovingAverageState(mean=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32))

  def value(state, f_z):
    correction = 1.0 - decay ** state.count.astype(f_z.dtype)
    return jnp.where(state.count > 0, state.mean.astype(f_z.dtype) / jnp.maximum(correction, 1e-12), 0.0)

  def update(state, f_z):
    mean = decay * state.mean + (1.0 - decay) * jnp.mean(jax.lax.stop_gradient(f_z)).astype(state.mean.dtype)
    return MovingAverageState(mean=mean, count=state.count + 1)

  return Baseline(init=init, value=value, update=update)


def leave_one_out_baseline() -> Baseline:
  r"""``b_s = mean_{s' != s} L(z_{s'})`` (needs ``S >= 2`` samples per draw)."""
  def value(state, f_z):
    if f_z.shape[0] < 2:
      raise ValueError("leave_one_out_baseline needs at least 2 samples per draw (sample_shape=(S,), S >= 2)")
    n = f_z.shape[0]
    return (jnp.sum(f_z, axis=0, keepdims=True) - f_z) / (n - 1)
  return Baseline(init=lambda: (), value=value, update=lambda state, f_z: state)


BASELINES = {
    "none": no_baseline,
    "constant": constant_baseline,
    "moving_average": moving_average_baseline,
    "leave_one_out": leave_one_out_baseline,
}


def make_baseline(name: str, **kwargs) -> Baseline:
  """Builds a baseline by config name (``none``, ``constant``, ``moving_average``, ``leave_one_out``)."""
  from unas_jax.errors import ConfigError
  if name not in BASELINES:
    raise ConfigError(f"unknown REINFORCE baseline {name!r}; choose one of {sorted(BASELINES)}")
  return BASELINES[name](**kwargs)
