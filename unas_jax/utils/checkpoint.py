"""Orbax checkpoints behind one small class (orbax ``CheckpointManager``, v0 API).

A checkpoint holds one pytree of arrays (``state``: phi, w, BatchNorm statistics,
optimiser states, estimator state, step, RNG) and a JSON dict (``meta``: data
position, latency surrogate bookkeeping, config). Multi-host: every process calls
``save``/``restore`` (orbax coordinates the processes and writes each array once).

The workdir may be a URI (``gs://bucket/run``): it reaches orbax unchanged
(``etils.epath``), never as a local folder named after it.

Damage and failures end in one line, never a traceback:

* orbax writes each step to a temporary folder and renames it when complete, so
  a kill during a write leaves no half step; at least two steps are kept.
* :meth:`Checkpointer.restore` tries the steps newest first. A step that does not
  restore (truncated or garbage metadata, a missing item, an empty folder) is
  named in a one-line warning and moved aside to ``<step>.damaged`` (never
  deleted) when an older step restores; when none restores it raises
  :class:`CheckpointError` naming the workdir and the choices, and moves nothing.
* a failed save (disk full) raises :class:`SaveError` at the next
  :meth:`Checkpointer.check`, ``save`` or ``wait``, naming the last good step.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from unas_jax.errors import CheckpointError, SaveError
from unas_jax.utils import files

DAMAGED_SUFFIX = ".damaged"


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  if len(text) > 300:
    text = text[:300] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def warn(message: str) -> None:
  """One line on stderr (process 0), the same prefix as errors."""
  if jax.process_index() == 0:
    print(f"unas_jax: warning: {message}", file=sys.stderr, flush=True)


class Checkpointer:
  """Saves and restores ``(state, meta)`` under ``<workdir>/checkpoints``."""

  def __init__(self, workdir: str, *, max_to_keep: int = 2, save_interval_steps: int = 1):
    # A damaged newest step must leave an older one to fall back to.
    max_to_keep = max(2, int(max_to_keep))
    # orbax refuses relative paths ("Checkpoint path should be absolute"), and the README's
    # command uses one (--workdir=workdirs/darts_quick); a URI stays as it is.
    self.directory = epath.Path(os.path.abspath(workdir) if files.is_local(workdir) else workdir) / "checkpoints"
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             save_interval_steps=save_interval_steps,
                                             # leftovers of a save killed midway
                                             cleanup_tmp_directories=True),
        item_names=("state", "meta"))
    self._pending: int | None = None   # the step of the last save started, until it is waited for
    self._started: int | None = None   # the step of the last save started (for messages)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def last_good(self) -> str:
    """Where the run can resume from, for messages: ``step 40 in <dir>`` or ``none``."""
    step = self.latest_step()
    if step is None or step == self._pending and self._manager.is_saving_in_progress():
      steps = [s for s in self.all_steps() if s != self._pending]
      step = steps[-1] if steps else None
    return f"step {step} in {self.directory}" if step is not None else f"none yet in {self.directory}"

  def check(self) -> None:
    """Raises SaveError if an asynchronous save has failed (cheap: no wait)."""
    try:
      self._manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      self._failed(e)

  def _failed(self, e: BaseException) -> None:
    # After a failed wait (self._pending reset), a second wait (close) names the same step.
    failed = self._pending if self._pending is not None else self._started
    self._pending = None
    try:
      self._manager.reload()
    except Exception:  # pylint: disable=broad-except
      pass
    steps = [s for s in self.all_steps() if s != failed]
    good = f"step {steps[-1]} in {self.directory}" if steps else f"none in {self.directory}"
    raise SaveError(f"could not write checkpoint step {failed} to {self.directory} ({_one_line(e)}); the run "
                    f"stopped. Last good checkpoint: {good}. Free space (or fix the storage) and rerun to "
                    "resume") from None

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Saves asynchronously; returns whether a checkpoint was started.

    Raises SaveError if this save, or the previous one, failed.
    """
    self.check()
    try:
      started = self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)
    except Exception as e:  # pylint: disable=broad-except
      self._pending = step
      self._failed(e)
    if started:
      self._pending = self._started = step
    return started

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int] | None:
    """Restores the newest (or the given) checkpoint that restores into ``abstract_state``.

    Returns ``(state, meta, step)``, or None when there is no checkpoint. Damaged
    newer steps are moved aside (see the module docstring).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    if step is not None:
      restored = self._manager.restore(step, args=args)
      return restored["state"], restored["meta"], step
    candidates = sorted(self.all_steps(), reverse=True)
    if not candidates:
      return None
    damaged: list[tuple[int, str]] = []
    for candidate in candidates:
      try:
        restored = self._manager.restore(candidate, args=args)
        meta = restored["meta"]
        if not isinstance(meta, dict):
          raise ValueError(f"meta is a {type(meta).__name__}, not a JSON object")
      except Exception as e:  # pylint: disable=broad-except
        # orbax raises whatever the damage causes (JSONDecodeError, KeyError, ValueError,
        # FileNotFoundError, tensorstore errors): any failure means this step is unusable.
        damaged.append((candidate, _one_line(e)))
        continue
      for bad, why in damaged:
        self._move_aside(bad, why, candidate)
      if damaged:
        self._manager.reload()
      return restored["state"], meta, candidate
    listing = "; ".join(f"step {s}: {why}" for s, why in damaged)
    raise CheckpointError(
        f"no checkpoint in {self.directory} restores ({listing}). Either start afresh in another --workdir, or "
        f"remove the damaged step folders ({', '.join(str(self.directory / str(s)) for s, _ in damaged)}) "
        "to start afresh in this one")

  def _move_aside(self, step: int, why: str, fallback: int) -> None:
    source = self.directory / str(step)
    target = self.directory / f"{step}{DAMAGED_SUFFIX}"
    n = 1
    while target.exists():
      target = self.directory / f"{step}{DAMAGED_SUFFIX}.{n}"
      n += 1
    if jax.process_index() == 0 and source.exists():
      source.rename(target)
    warn(f"checkpoint step {step} in {self.directory} is damaged ({why}); moved aside to {target}; "
         f"resuming from step {fallback}")

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
    """Waits for the pending save; raises SaveError if it failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._failed(e)
    self._pending = None

  def close(self) -> None:
    self.wait()
    self._manager.close()
