"""Fail fast on NaN/inf: remember, on the device, the first step whose loss or gradient norm was not finite.

Every step's metrics (scalars on the device) feed :meth:`FiniteWatch.update`, a
tiny jitted update of a device array ``first_bad[q]`` (the first step at which
quantity ``q`` was non-finite, -1 while it never was): no host sync. The loop
reads it (:meth:`FiniteWatch.check`, a few int32) where it syncs anyway (metrics
fetched every ``log_every`` steps) and before anything leaves the device for
good (a checkpoint, a genotype, an evaluation), so a diverged state is never
saved and the first bad step is named even when it fell between two fetches.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.errors import NonFiniteError


@jax.jit
def _update(first_bad, values, step):
  bad = jnp.stack([~jnp.all(jnp.isfinite(v)) for v in values])
  return jnp.where((first_bad < 0) & bad, step, first_bad)


class FiniteWatch:
  """Tracks the first non-finite step of each named metric (loss, gradient norms)."""

  def __init__(self, names: Sequence[str]):
    self.names = tuple(names)
    self._first_bad = None
    self._values = {}

  def update(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
    """Folds in the metrics of step ``step`` (1-based: the step that produced them); asynchronous."""
    names = tuple(n for n in self.names if n in metrics)
    if not names:
      return
    if self._first_bad is None or self._first_bad.shape[0] != len(self.names):
      self._first_bad = jnp.full((len(self.names),), -1, jnp.int32)
    values = [metrics[n] if n in metrics else jnp.zeros(()) for n in self.names]
    self._first_bad = _update(self._first_bad, values, jnp.int32(step))
    self._values = {n: metrics[n] for n in names}

  def first_bad(self) -> tuple[int, str] | None:
    """``(step, name)`` of the first non-finite quantity, or None (syncs with the device)."""
    if self._first_bad is None:
      return None
    first = np.asarray(jax.device_get(self._first_bad))
    bad = [(int(s), n) for s, n in zip(first, self.names) if s >= 0]
    return min(bad) if bad else None

  def check(self, last_good: str) -> None:
    """Raises NonFiniteError (one line) naming the step, the quantity and ``last_good``."""
    found = self.first_bad()
    if found is None:
      return
    step, name = found
    raise NonFiniteError(
        f"{name} is not finite at step {step}: the run diverged and stopped; nothing from it was saved. "
        f"Last good checkpoint: {last_good}. Lower the learning rate (or fix the data) and rerun")
