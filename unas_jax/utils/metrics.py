"""Metric writers: TensorBoard + log on process 0, log only elsewhere (clu)."""
from __future__ import annotations

import json
import os

import jax


def create_writer(workdir: str):
  """clu's default writer: TensorBoard event files under ``workdir/tensorboard`` (process 0)."""
  from clu import metric_writers  # imports TensorFlow: only when a job writes metrics
  return metric_writers.create_default_writer(
      os.path.join(workdir, "tensorboard"), just_logging=jax.process_index() > 0)


class JsonlHistory:
  """Appends one JSON object per line (scalars over time, for plots and resumes)."""

  def __init__(self, path: str):
    self.path = path

  def append(self, record: dict) -> None:
    if jax.process_index() != 0:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_after(self, step: int) -> None:
    """Drops records past ``step`` (after resuming from an earlier checkpoint)."""
    if jax.process_index() != 0:
      return
    records = [r for r in self.read() if r.get("step", 0) <= step]
    with open(self.path, "w") as f:
      for r in records:
        f.write(json.dumps(r) + "\n")
