"""Files under the workdir through ``etils.epath``: local paths and URIs (``gs://bucket/run``) alike.

``os.makedirs``/``open`` on ``gs://bucket/run/x`` would make a local folder named
``gs:`` on every host; these helpers keep the URI.
"""
from __future__ import annotations

import io
import json
from typing import Any

from etils import epath


def makedirs(path) -> str:
  """Creates ``path`` and its parents if needed; returns it as a string."""
  epath.Path(path).mkdir(parents=True, exist_ok=True)
  return str(path)


def write_text(path, text: str) -> None:
  """Writes ``text`` atomically where the storage allows (a temporary file, then rename)."""
  path = epath.Path(path)
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)


def write_bytes(path, data: bytes) -> None:
  """Writes ``data`` atomically where the storage allows (a temporary file, then rename)."""
  path = epath.Path(path)
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_bytes(data)
  tmp.replace(path)


def write_json(path, obj: Any, indent: int = 1) -> None:
  write_text(path, json.dumps(obj, indent=indent))


def read_json(path) -> Any:
  return json.loads(epath.Path(path).read_text())


def exists(path) -> bool:
  return epath.Path(path).exists()


def is_file(path) -> bool:
  return epath.Path(path).is_file()


def is_local(path) -> bool:
  """False for URIs (``gs://...``): paths that ``open``/``os`` cannot reach."""
  return "://" not in str(path)


def listdir(path) -> list[str]:
  return sorted(p.name for p in epath.Path(path).iterdir())


def save_figure(fig, path, **kwargs) -> None:
  """``fig.savefig`` to any epath (matplotlib itself writes local files only)."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", **kwargs)
  epath.Path(path).write_bytes(buffer.getvalue())
