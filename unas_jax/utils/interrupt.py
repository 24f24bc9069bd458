"""Graceful stops: SIGINT/SIGTERM ask the loop to checkpoint and exit at the next step.

Python runs signal handlers only between bytecodes of the main thread, so a
signal that arrives while XLA compiles (minutes) would wait for the compile.
The C-level handler also writes the signal number to a wakeup file descriptor
(``signal.set_wakeup_fd``); a watcher thread reads it at once and:

* before the run has anything new to save (setup, data loading, the first
  compile, or a later first compile of another step that the loop preceded with
  a checkpoint, :meth:`StopRequest.mark_saved`): exits at once with
  ``EXIT_STOPPED`` (75, "rerun to resume");
* after that: sets :attr:`StopRequest.requested`, and the loop saves a
  checkpoint after the current step and returns (the CLI exits with 75);
* on a second SIGINT/SIGTERM: exits at once with 75, one line, no traceback
  (the last complete checkpoint stays; orbax never leaves a half-written step).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading

from unas_jax.errors import EXIT_STOPPED

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(message: str) -> None:
  try:
    sys.stdout.flush()
  except Exception:  # pylint: disable=broad-except
    pass
  os.write(2, f"\nunas_jax: {message}\n".encode())
  os._exit(EXIT_STOPPED)  # pylint: disable=protected-access


@dataclasses.dataclass
class StopRequest:
  """Set by the first SIGINT/SIGTERM once the run has state worth saving (see the module docstring).

  ``with StopRequest() as stop:`` installs the handlers for the block and restores the previous ones after it.
  """
  requested: bool = False
  signal_name: str = ""
  # False until the loop has state that a checkpoint should keep (mark_saving_needed).
  saving_needed: bool = False
  # True once mark_saved() was called (for the message of a signal that exits at once).
  saved_once: bool = False

  def install(self) -> "StopRequest":
    if threading.current_thread() is not threading.main_thread():
      return self  # signals are delivered to the main thread only; nothing to install
    self._read_fd, self._write_fd = os.pipe()
    os.set_blocking(self._write_fd, False)
    # A Python handler must be installed for the C handler to write to the wakeup fd;
    # the watcher thread does the work.
    self._previous = {s: signal.signal(s, lambda signum, frame: None) for s in _SIGNALS}
    self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
    self._thread = threading.Thread(target=self._watch, name="unas_jax-stop", daemon=True)
    self._thread.start()
    return self

  def __enter__(self) -> "StopRequest":
    return self.install()

  def __exit__(self, *exc) -> None:
    self.restore()

  def mark_saving_needed(self) -> None:
    """From now on a first signal saves a checkpoint before stopping (instead of exiting at once)."""
    self.saving_needed = True

  def mark_saved(self) -> None:
    """Everything is in a finished checkpoint: until the next step, a first signal exits at once.

    (Set before a long compile in the middle of a run, e.g. the search step's after the
    w-only warm-up: a stop then need not wait minutes for the compile to end.)
    """
    self.saving_needed = False
    self.saved_once = True

  def _watch(self) -> None:
    while True:
      try:
        data = os.read(self._read_fd, 64)
      except OSError:
        return
      if not data or 0 in data:
        return  # restore() asked the watcher to end
      for signum in data:
        if signum not in [int(s) for s in _SIGNALS]:
          continue
        name = signal.Signals(signum).name
        if self.requested:
          _exit_now(f"stopped at once by a second {name}; rerun the same command to resume from the last "
                    "checkpoint")
        if not self.saving_needed:
          _exit_now(f"stopped by {name} before the first step (nothing new to save); rerun the same command "
                    "to resume" if not self.saved_once else
                    f"stopped by {name} while compiling (every step is in the last checkpoint); rerun the same "
                    "command to resume")
        self.requested, self.signal_name = True, name

  def restore(self) -> None:
    if not hasattr(self, "_previous"):
      return
    signal.set_wakeup_fd(self._previous_fd)
    for s, h in self._previous.items():
      signal.signal(s, h)
    del self._previous
    os.set_blocking(self._write_fd, True)
    os.write(self._write_fd, b"\0")  # ends the watcher
    self._thread.join(timeout=5)
    os.close(self._write_fd)
    os.close(self._read_fd)
