"""The wiring every long run shares (the search loop and the trainer): checkpoints, history, metrics, stops.

A loop builds its state and step functions, then hands the rest to :class:`RunScaffold`::

    with StopRequest() as stop:           # before setup: a signal while loading or compiling exits at once
      ...                                 # data, model, state, jitted steps
      run = RunScaffold(workdir, stop, ...)
      state, meta = run.start(state)      # newest checkpoint that restores; history cut back to it
      with run:                           # on leaving: progress bar closed, metrics flushed, saves waited for
        while step < total_steps:
          run.before_step()
          state, metrics = train_step(state, batch)
          step += 1
          run.after_step(step, metrics)
          if step % log_every == 0:
            run.check_finite()
            run.log(step, host_metrics)
          if run.save_or_stop(step, state):
            return {"stopped_at": step}
      run.close()

The rules it keeps (README "Reliability"):

* resume: the newest checkpoint that restores (damaged newer steps are moved
  aside with one warning, :class:`~unas_jax.utils.checkpoint.Checkpointer`);
  ``history.jsonl`` is cut back to the step resumed from (0 without one), so a
  step never appears twice. The data position is the step: batches are pure
  functions of ``(seed, step)``, so the loop restarts its batches at the step.
* fail fast: a :class:`~unas_jax.utils.finite.FiniteWatch` over the loop's
  metrics, checked before every log, evaluation and checkpoint, so nothing is
  made from a diverged state (``NonFiniteError``, exit 3).
* a failed background save stops the run at the next step (``SaveError``, exit 74).
* stops: SIGINT/SIGTERM (:class:`~unas_jax.utils.interrupt.StopRequest`),
  preemption (orbax; all processes agree) or the config's ``stop_at_step``
  (tests): a checkpoint is saved after the current step and the loop returns
  ``{"stopped_at": step}`` (the CLI exits with 75).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax

from unas_jax.utils import checkpoint as checkpoint_lib
from unas_jax.utils import finite as finite_lib
from unas_jax.utils import metrics as metrics_lib
from unas_jax.utils.interrupt import StopRequest
from unas_jax.utils.progress import Progress


class RunScaffold:
  """Holds one run's checkpointer, history, metric writer, finiteness watch, stop request and progress bar.

  ``stop_at_step`` (>= 0) saves and stops there as if interrupted, named
  ``stop_at_name`` (the config key) in the stop message.
  """

  def __init__(self, workdir: str, stop: StopRequest, *, description: str, total_steps: int,
               steps_per_epoch: int, checkpoint_every: int, finite_metrics: Sequence[str],
               stop_at_step: int = -1, stop_at_name: str = "stop_at_step"):
    self.workdir = workdir
    self.stop = stop
    self.description = description
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.checkpoint_every = checkpoint_every
    self.stop_at_step = int(stop_at_step)
    self.stop_at_name = stop_at_name
    self.checkpointer = checkpoint_lib.Checkpointer(workdir, max_to_keep=2)
    self.history = metrics_lib.JsonlHistory(os.path.join(workdir, "history.jsonl"))
    self.watch = finite_lib.FiniteWatch(tuple(finite_metrics))
    # Made by start(), once the first step is known (and never for a workdir that fails to restore).
    self.writer = None
    self.progress: Progress | None = None
    self.start_step = 0

  def start(self, state: Any) -> tuple[Any, dict | None]:
    """Restores the newest checkpoint into ``state``'s structure and starts the run at its step.

    Returns ``(state, meta)``; ``meta`` is None when there is no checkpoint
    (``state`` comes back as given). Cuts the history back to the step, opens the
    metric writer and the progress bar there.
    """
    meta = None
    restored = self.checkpointer.restore(state)
    if restored is not None:
      state, meta, _ = restored
      if jax.process_index() == 0:
        print(f"Resuming from step {int(state.step)} (checkpoint in {self.checkpointer.directory})", flush=True)
    self.start_step = int(state.step)
    # The history follows the checkpoint: records past it (or all, without one) would appear twice.
    self.history.truncate_after(self.start_step)
    self.writer = metrics_lib.create_writer(self.workdir)
    self.progress = Progress(self.total_steps, self.start_step, self.description)
    return state, meta

  def __enter__(self) -> "RunScaffold":
    return self

  def __exit__(self, *exc) -> None:
    # Also on an exception: the bar gives the terminal back, written metrics reach disk,
    # and a save in flight completes (or reports its failure) before the error travels on.
    if self.progress is not None:
      self.progress.close()
    if self.writer is not None:
      self.writer.flush()
    self.checkpointer.wait()

  def before_step(self) -> None:
    """Raises SaveError now if a background save failed (cheap: no wait), not at the end of the run."""
    self.checkpointer.check()

  def after_step(self, step: int, metrics: dict) -> None:
    """Records ``step``'s metrics for the finiteness check (on the device: no host sync).

    From the first step on, a signal saves a checkpoint before stopping.
    """
    self.watch.update(step, metrics)
    self.stop.mark_saving_needed()

  def check_finite(self) -> None:
    """Raises NonFiniteError (naming the last good checkpoint) if a step since the last check diverged."""
    self.watch.check(self.checkpointer.last_good())

  def log(self, step: int, scalars: dict[str, float], *, phase: str | None = None, tag: str | None = None,
          **extra: Any) -> None:
    """Writes ``scalars`` to the metric writer (as ``tag/name`` with a tag) and one history record.

    The record is ``{step, epoch, phase (when given), **scalars, **extra}``;
    ``extra`` holds what goes to the history only (e.g. selector probabilities).
    """
    self.writer.write_scalars(step, {f"{tag}/{k}": v for k, v in scalars.items()} if tag else scalars)
    record = {"step": step, "epoch": step / self.steps_per_epoch}
    if phase is not None:
      record["phase"] = phase
    self.history.append({**record, **scalars, **extra})

  def stop_reason(self, step: int) -> str | None:
    """Why the run stops after ``step`` (a signal, preemption, ``stop_at_step``), or None."""
    # Asked every step: orbax's preemption check is a sync point all processes must reach.
    preempted = self.checkpointer.reached_preemption(step)
    if self.stop.requested:
      return self.stop.signal_name
    if preempted:
      return "preemption"
    if step == self.stop_at_step:
      return self.stop_at_name
    return None

  def save_or_stop(self, step: int, state: Any, meta_fn: Callable[[], dict] | None = None) -> bool:
    """Saves ``state`` when a checkpoint is due or the run stops; returns True when the loop must return.

    Due every ``checkpoint_every`` steps and at the last step. The checkpoint's
    meta is ``{"step": step, **meta_fn()}``. Never overwrites a good checkpoint
    with a diverged state (NonFiniteError first). On a stop it waits for the save
    and says how to resume.
    """
    reason = self.stop_reason(step)
    if step % self.checkpoint_every == 0 or step == self.total_steps or reason:
      meta = {"step": step, **(meta_fn() if meta_fn is not None else {})}
      self.check_finite()
      self.checkpointer.save(step, state, meta, force=True)
    if reason:
      self.checkpointer.wait()
      self.progress.write(f"Stopped by {reason} at step {step}; checkpoint saved. Rerun the same command to resume.")
      return True
    return False

  def save_before_compile(self, step: int, state: Any, meta_fn: Callable[[], dict] | None = None) -> None:
    """Checkpoints ``state`` at ``step`` (unless a checkpoint of it exists) before a step compiles for the first time.

    A compile in the middle of a run takes minutes on a CPU (the search step after
    the w-only warm-up); with everything saved, a signal during it exits at once
    instead of waiting for the compile and the step to save then.
    """
    if step == self.start_step or step in self.checkpointer.all_steps():
      if step != self.start_step:
        self.stop.mark_saved()
      return
    self.check_finite()
    self.checkpointer.save(step, state, {"step": step, **(meta_fn() if meta_fn is not None else {})}, force=True)
    self.checkpointer.wait()
    self.stop.mark_saved()

  def close(self) -> None:
    """Waits for the last save and releases the checkpointer (after a finished run)."""
    self.checkpointer.close()
