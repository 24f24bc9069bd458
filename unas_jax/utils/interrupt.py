"""Graceful stops: SIGINT/SIGTERM ask the loop to checkpoint and exit at the next step."""
from __future__ import annotations

import dataclasses
import signal


@dataclasses.dataclass
class StopRequest:
  """Set by SIGINT/SIGTERM; a second Ctrl-C raises KeyboardInterrupt at once."""
  requested: bool = False
  signal_name: str = ""

  def install(self) -> "StopRequest":
    def handler(signum, frame):
      del frame
      if self.requested:
        raise KeyboardInterrupt
      self.requested, self.signal_name = True, signal.Signals(signum).name
    self._previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return self

  def restore(self) -> None:
    for s, h in getattr(self, "_previous", {}).items():
      signal.signal(s, h)
