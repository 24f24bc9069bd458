"""Config helpers: required values, validation and safe command-line parsing.

Configs are ``ml_collections`` files with ``get_config(arg)`` (big_vision style);
``arg`` selects a variant such as ``quick``. Values are overridden on the
command line as ``--config.search.phi_lr=3e-4``.
"""
from __future__ import annotations

import math
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


def check_choice(name: str, value: Any, choices: Iterable[Any], hint: str = "") -> Any:
  """Returns ``value`` if it is one of ``choices``; else a one-line ConfigError.

  The message names the key as the user types it (``name``, e.g. ``search.bn``),
  the value and the choices, e.g. ``search.bn='x' is not one of ['local', 'sync']``;
  ``hint`` (e.g. ``for the nb201 space``) ends it, after a space.
  """
  choices = list(choices)
  if value not in choices:
    raise ConfigError(f"{name}={value!r} is not one of {choices}" + (f" {hint}" if hint else ""))
  return value


def check_range(name: str, value: float, low: float, high: float, *, inclusive: bool = False) -> None:
  """Raises ConfigError unless ``low < value < high`` (or ``<=`` if inclusive)."""
  ok = (low <= value <= high) if inclusive else (low < value < high)
  if not ok:
    bounds = f"[{low}, {high}]" if inclusive else f"({low}, {high})"
    raise ConfigError(f"{name}={value!r} must lie in {bounds}")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads ``path.py[:arg]`` as ml_collections does; a failing ``get_config`` is a one-line ConfigError.

  (ml_collections reports it as a flag error holding the whole nested traceback.)
  """
  path = config_file_path(spec)
  arg = spec.split(":", 1)[1] if ":" in spec else None
  import importlib.util  # pylint: disable=import-outside-toplevel
  try:
    module_spec = importlib.util.spec_from_file_location("_unas_jax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"config {spec!r}: {type(e).__name__}: {e}") from None


def describe_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> str:
  """``[1, inf)``-style interval text."""
  lo = "-inf" if low == -math.inf else f"{low:g}"
  hi = "inf" if high == math.inf else f"{high:g}"
  return f"{'(' if low_open or low == -math.inf else '['}{lo}, {hi}{')' if high_open or high == math.inf else ']'}"


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 optional: bool = False) -> Any:
  """Returns ``value`` if it is a finite number (an int if ``integer``) in the range; else a ConfigError.

  The message is one line naming the key, the value and the range, e.g.
  ``config.log_every=0 must be an integer in [1, inf)``. ``optional``: None passes.
  """
  if value is None and optional:
    return value
  kind = "an integer" if integer else "a finite number"
  bounds = describe_range(low, high, low_open=low_open, high_open=high_open)
  ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
  if ok and not integer:
    ok = math.isfinite(value)
  if ok:
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
  if not ok:
    raise ConfigError(f"{name}={value!r} must be {kind} in {bounds}")
  return value


def config_file_path(spec: str) -> str:
  """Checks that ``path.py[:arg]`` names an existing file; returns the path."""
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist (configs live in configs/, e.g. "
                      "--config=configs/darts_cifar10.py:quick)")
  return path
