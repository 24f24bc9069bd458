"""A progress bar with throughput, on process 0 only."""
from __future__ import annotations

import sys
import time

import jax
from tqdm import tqdm


class Progress:
  """``tqdm`` over steps; ``update(step, images, **scalars)`` shows images/s and scalars."""

  def __init__(self, total_steps: int, initial_step: int, description: str):
    self._bar = None
    if jax.process_index() == 0:
      self._bar = tqdm(total=total_steps, initial=initial_step, desc=description, dynamic_ncols=True,
                       file=sys.stdout, mininterval=1.0, smoothing=0.1)
    self._last_time = time.perf_counter()
    self._last_step = initial_step
    self._images = 0

  def update(self, step: int, images: int, **scalars: float) -> None:
    self._images += images
    if self._bar is None:
      return
    self._bar.update(step - self._bar.n)
    now = time.perf_counter()
    if now - self._last_time >= 2.0:
      rate = self._images / (now - self._last_time)
      postfix = {"img/s": f"{rate:.1f}"}
      postfix.update({k: f"{v:.4g}" for k, v in scalars.items()})
      self._bar.set_postfix(postfix, refresh=False)
      self._last_time, self._images = now, 0

  def write(self, message: str) -> None:
    if self._bar is not None:
      self._bar.write(message)
    elif jax.process_index() == 0:
      print(message, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
