"""Orbax checkpoints behind one small class (orbax ``CheckpointManager``, v0 API).

A checkpoint holds one pytree of arrays (``state``: phi, w, BatchNorm statistics,
optimiser states, estimator state, step, RNG) and a JSON dict (``meta``: data
position, latency surrogate bookkeeping, config). Multi-host: every process calls
``save``/``restore`` (orbax coordinates the processes and writes each array once).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores ``(state, meta)`` under ``<workdir>/checkpoints``."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2, save_interval_steps: int = 1):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             save_interval_steps=save_interval_steps),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Saves asynchronously; returns whether a checkpoint was started."""
    return self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int] | None:
    """Restores the latest (or given) checkpoint into ``abstract_state``'s shapes and shardings.

    Returns ``(state, meta, step)``, or None when there is no checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"], step

  def read(self, step: int | None = None) -> tuple[Any, dict]:
    """``(state, meta)`` as saved, numpy arrays without a template (for inspection and tests)."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def reached_preemption(self, step: int) -> bool:
    """True when the job is being preempted (all processes agree)."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
