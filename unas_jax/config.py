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


# The FieldReferences made by required(), kept alive so their ids stay unique.
_REQUIRED: dict[int, config_dict.FieldReference] = {}


def required(field_type: type) -> config_dict.FieldReference:
  """A field that must be set by the user (``--config.<path>=...``).

  A typed placeholder (so the command line can set it) that :func:`check_required`
  reports while it is still None. (ml_collections' own ``required_placeholder``
  fails while the config file loads, before any override, without naming the field.)
  """
  ref = config_dict.placeholder(field_type)
  _REQUIRED[id(ref)] = ref
  return ref


def optional(field_type: type) -> config_dict.FieldReference:
  """A typed field that defaults to None and can still be overridden on the command line.

  (A plain ``None`` field cannot: ml_collections does not know what to parse.)
  """
  return config_dict.placeholder(field_type)


def _missing(config: ml_collections.ConfigDict, prefix: str = "") -> Iterable[str]:
  for key in sorted(config.keys()):
    value = config[key]
    if isinstance(value, (ml_collections.ConfigDict, config_dict.FrozenConfigDict)):
      yield from _missing(value, f"{prefix}{key}.")
    elif value is None and id(config._fields.get(key)) in _REQUIRED:  # pylint: disable=protected-access
      # (get_ref refuses None fields; _fields holds the FieldReference itself.)
      yield f"{prefix}{key}"


def check_required(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every required field that is still unset."""
  missing = list(_missing(config))
  if missing:
    flags = " ".join(f"--config.{p}=..." for p in missing)
    raise ConfigError(f"missing required config value(s): {', '.join(missing)}; pass {flags}")


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
