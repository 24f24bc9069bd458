"""Metric writers: TensorBoard + log on process 0, log only elsewhere (clu); the JSONL history.

Paths may be URIs (``gs://bucket/run``): files go through ``etils.epath``.
"""
from __future__ import annotations

import json
import sys

import jax
from etils import epath


def create_writer(workdir: str):
  """clu's default writer: TensorBoard event files under ``workdir/tensorboard`` (process 0)."""
  from clu import metric_writers  # imports TensorFlow: only when a job writes metrics
  # TensorFlow's file system layer reaches gs:// itself: the URI goes in as a string.
  return metric_writers.create_default_writer(
      str(epath.Path(workdir) / "tensorboard"), just_logging=jax.process_index() > 0)


class JsonlHistory:
  """Appends one JSON object per line (scalars over time, for plots and resumes).

  The history follows the checkpoint: on (re)start the loop calls
  :meth:`truncate_after` with the step it resumes from (0 without a checkpoint),
  so a step never appears twice; a line cut short by a kill is dropped.
  """

  def __init__(self, path):
    self.path = epath.Path(path)

  def append(self, record: dict) -> None:
    if jax.process_index() != 0:
      return
    line = json.dumps(record) + "\n"
    try:
      with self.path.open("a") as f:
        f.write(line)
    except (NotImplementedError, ValueError, OSError):
      # Object stores cannot append: rewrite the whole file (histories are small).
      text = self.path.read_text() if self.path.exists() else ""
      self.path.write_text(text + line)

  def read(self) -> list[dict]:
    """The records; a damaged line (a write cut short by a kill) is skipped with a warning."""
    if not self.path.exists():
      return []
    records, damaged = [], 0
    for line in self.path.read_bytes().decode("utf-8", errors="replace").splitlines():
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        damaged += 1
        continue
      if isinstance(record, dict):
        records.append(record)
      else:
        damaged += 1
    if damaged and jax.process_index() == 0:
      print(f"unas_jax: warning: {self.path}: skipped {damaged} damaged line(s)", file=sys.stderr, flush=True)
    return records

  def truncate_after(self, step: int) -> None:
    """Keeps only records up to ``step`` (the checkpoint resumed from; 0: none), dropping damaged lines.

    Rewritten atomically (a temporary file, then rename) so a kill here loses nothing.
    """
    if jax.process_index() != 0 or not self.path.exists():
      return
    records = [r for r in self.read() if r.get("step", 0) <= step]
    tmp = self.path.parent / (self.path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(self.path)
