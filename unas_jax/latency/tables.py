"""Latency tables shipped with the package (``unas_jax/latency/data``, see its README).

``latency.lut_path`` is either a file path or ``builtin:<name>``, a table of this
package found through ``importlib.resources`` (so a config works from any checkout
or installed wheel, with no data beside it):

* ``builtin:proxylessnas_mobile_trim``: ProxylessNAS's published per-block table for a
  Google Pixel 1 phone (mobile widths, 224x224), from the mit-han-lab ProxylessNAS
  repository.
"""
from __future__ import annotations

import importlib.resources

from unas_jax.errors import ConfigError

BUILTIN_PREFIX = "builtin:"
BUILTIN_TABLES = ("proxylessnas_mobile_trim",)
MOBILE_TABLE = BUILTIN_PREFIX + "proxylessnas_mobile_trim"


def resolve(path: str) -> str:
  """The file behind ``path``: ``builtin:<name>`` -> the packaged YAML; any other path as it is."""
  if not path.startswith(BUILTIN_PREFIX):
    return path
  name = path[len(BUILTIN_PREFIX):]
  if name not in BUILTIN_TABLES:
    raise ConfigError(f"latency table {path!r} is not a built-in table; use one of "
                      f"{[BUILTIN_PREFIX + n for n in BUILTIN_TABLES]} or a file path")
  resource = importlib.resources.files("unas_jax.latency") / "data" / f"{name}.yaml"
  if not resource.is_file():
    raise ConfigError(f"built-in latency table {path!r} is missing from the installed package ({resource})")
  return str(resource)
