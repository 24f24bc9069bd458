"""Config helpers: required values, validation and safe command-line parsing.

Configs are ``ml_collections`` files with ``get_config(arg)`` (big_vision style);
``arg`` selects a variant such as ``quick``. Values are overridden on the
command line as ``--config.search.phi_lr=3e-4``.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import ml_collections
from ml_collections import config_dict

from unas_jax.errors import ConfigError


def required(field_type: type) -> config_dict.FieldReference:
  """A field that must be set by the user (``--config.<path>=...``)."""
  return config_dict.placeholder(field_type)


def _walk(config: ml_collections.ConfigDict, prefix: str = "") -> Iterable[tuple[str, Any]]:
  for key in sorted(config.keys()):
    value = config[key]
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, config_dict.FrozenConfigDict)):
      yield from _walk(value, path + ".")
    else:
      yield path, value


def check_required(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every required field that is still unset."""
  missing = [path for path, value in _walk(config) if value is None and _is_placeholder(config, path)]
  if missing:
    flags = " ".join(f"--config.{p}=..." for p in missing)
    raise ConfigError(f"missing required config value(s): {', '.join(missing)}; pass {flags}")


def _is_placeholder(config: ml_collections.ConfigDict, path: str) -> bool:
  *parents, leaf = path.split(".")
  holder = config
  for p in parents:
    holder = holder[p]
  # Placeholders keep a declared type; plain ``None`` fields are optional.
  try:
    return holder.get_type(leaf) is not type(None)
  except Exception:  # pragma: no cover - defensive: unknown field types
    return False


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
  """Raises ConfigError if ``value`` is not one of ``choices``."""
  choices = list(choices)
  if value not in choices:
    raise ConfigError(f"{name}={value!r} is not one of {choices}")


def check_range(name: str, value: float, low: float, high: float, *, inclusive: bool = False) -> None:
  """Raises ConfigError unless ``low < value < high`` (or ``<=`` if inclusive)."""
  ok = (low <= value <= high) if inclusive else (low < value < high)
  if not ok:
    bounds = f"[{low}, {high}]" if inclusive else f"({low}, {high})"
    raise ConfigError(f"{name}={value!r} must lie in {bounds}")


def config_file_path(spec: str) -> str:
  """Checks that ``path.py[:arg]`` names an existing file; returns the path."""
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist (configs live in configs/, e.g. "
                      "--config=configs/darts_cifar10.py:quick)")
  return path
