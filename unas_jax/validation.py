"""The stated range of every numeric config value, checked at start-up (imports no JAX).

:func:`check_numbers` walks :data:`RANGES` (per job, :func:`ranges_for`) and
raises :class:`~unas_jax.errors.ConfigError` with one line naming the key, the
value and its range, e.g. ``config.log_every=0 must be an integer in [1, inf)``.
``unas_jax.jobs.validate`` runs it (and the jobs' own cross-field checks) before
any data is loaded or anything compiled, so a bad value costs a second, not a
compilation. Every numeric leaf of every shipped config must have an entry here
(tests/test_validation.py enforces it), so a new key cannot slip in unchecked.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import ml_collections

from unas_jax.config import check_number

INF = math.inf


@dataclasses.dataclass(frozen=True)
class Range:
  """``low <= x <= high`` (``<`` on an open side); ``integer``: ints only; ``optional``: None allowed."""
  low: float = -INF
  high: float = INF
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  optional: bool = False

  def check(self, name: str, value: Any) -> None:
    check_number(name, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open,
                 integer=self.integer, optional=self.optional)


def _int(low: float, high: float = INF, **kw) -> Range:
  return Range(low, high, integer=True, **kw)


POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
FRACTION_OPEN_TOP = Range(0.0, 1.0, high_open=True)   # [0, 1)
PROBABILITY_MASS = Range(0.0, 1.0, low_open=True)      # (0, 1]
FINITE = Range()

# Keys shared by every job that has them.
RANGES: dict[str, Range] = {
    "seed": _int(0),
    "batch_size": _int(1),
    "log_every": _int(1),
    "checkpoint_every": _int(1),
    "eval_every": _int(0),                   # 0: once per epoch
    "eval_every_epochs": POSITIVE,
    "mesh.num_devices": _int(0),             # 0: every device
    # data (unas_jax.data.config checks names and cross-field rules)
    "data.image_size": _int(1, optional=True),
    "data.channels": _int(1, 3, optional=True),
    "data.crop_padding": _int(0, optional=True),
    "data.cutout": _int(0),
    "data.eval_crop_fraction": PROBABILITY_MASS,
    "data.min_crop_area": PROBABILITY_MASS,
    "data.shuffle_buffer": _int(1),
    "data.split_seed": _int(0),
    "data.train_portion": Range(0.0, 1.0, low_open=True, high_open=True),
    # search (docs/design.md section 6)
    "search.epochs": POSITIVE,
    "search.init_epochs": NON_NEGATIVE,      # and <= search.epochs (jobs.validate)
    "search.max_steps": _int(0),             # 0: epochs decide
    "search.stop_at_step": _int(-1),         # -1: off
    "search.gen_lambda": NON_NEGATIVE,
    "search.tau": POSITIVE,
    "search.eta": FINITE,                    # REBAR's control-variate scale: any finite value is unbiased
    "search.eta_lr": POSITIVE,               # Adam step size of the learned eta (search.learn_eta)
    "search.eps": FRACTION_OPEN_TOP,
    "search.pairing_weight": NON_NEGATIVE,
    "search.baseline_decay": Range(0.0, 1.0),
    "search.baseline_value": FINITE,
    "search.w_lr": POSITIVE,
    "search.w_lr_min": NON_NEGATIVE,
    "search.w_weight_decay": NON_NEGATIVE,
    "search.w_grad_clip": POSITIVE,
    "search.phi_lr": POSITIVE,
    "search.phi_lr_min": NON_NEGATIVE,
    "search.phi_weight_decay": NON_NEGATIVE,
    "search.phi_beta1": FRACTION_OPEN_TOP,
    "search.phi_beta2": FRACTION_OPEN_TOP,
    "search.phi_init_scale": NON_NEGATIVE,
    "search.random_archs": _int(0),          # 0: no random-architecture comparison at the end
    # latency (docs/design.md sections 3 and 8)
    "latency.target_ms": POSITIVE,
    "latency.c": NON_NEGATIVE,
    "latency.warmup_steps": _int(0),
    "latency.batch_size": _int(1),
    "latency.resolution": _int(1),
    "latency.num_runs": _int(1),
    "latency.num_warmup": _int(0),
    "latency.compile_threads": _int(0),      # 0: one per CPU core
    "latency.rounds": _int(1),
    "latency.chunk_size": _int(1),
    "latency.surrogate_archs": _int(5),      # an 80/20 split needs a few of each
    "latency.surrogate_seed": _int(0),
    "latency.ridge_lambda": NON_NEGATIVE,
    "latency.refit_every": _int(0),          # 0: never refit
    "latency.lut_num_classes": _int(1),
    "latency.test_fraction": Range(0.0, 1.0, low_open=True, high_open=True),
    "latency.lambda_init": NON_NEGATIVE,     # lagrangian multiplier: lambda >= 0
    "latency.lambda_lr": POSITIVE,
    "latency.damping": NON_NEGATIVE,
    "latency.ratio": PROBABILITY_MASS,       # E[lat] held to ratio * target, ratio in (0, 1]
    "latency.min_ratio": Range(0.0, 1.0, high_open=True),  # selection's floor, min_ratio * target; 0: off
    "latency.verify_rounds": _int(0),        # selection's measurements; 0: by the surrogate alone
    "latency.blocks_calibration_archs": _int(1),
    "latency.blocks_test_archs": _int(2),    # a rank correlation needs two
    # search supernets
    "model.cells": _int(1),
    "model.nodes": _int(1),
    "model.stem_multiplier": _int(1),
    "model.zero_dropout": FRACTION_OPEN_TOP,
    "model.cells_per_stage": _int(1),        # NAS-Bench-201's N
    # evaluation networks and training (docs/design.md section 7)
    "model.num_cells": _int(0),              # 0: the network's default
    "model.num_nodes": _int(0),              # evaluation: the genotype must have this many nodes (0: any)
    "model.dropout": FRACTION_OPEN_TOP,
    "train.epochs": NON_NEGATIVE,            # > 0 unless train.max_steps > 0
    "train.max_steps": _int(0),
    "train.stop_at_step": _int(-1),
    "train.warmup_epochs": NON_NEGATIVE,
    "train.lr": POSITIVE,
    "train.lr_reference_batch": _int(0),     # 0: no scaling
    "train.momentum": Range(0.0, 1.0),
    "train.weight_decay": NON_NEGATIVE,
    "train.grad_clip": NON_NEGATIVE,         # 0: off
    "train.label_smoothing": FRACTION_OPEN_TOP,
    "train.aux_weight": NON_NEGATIVE,
    "train.drop_path": FRACTION_OPEN_TOP,
    "train.ema_decay": FRACTION_OPEN_TOP,
    # estimator benchmark
    "num_samples": _int(2),
    "alpha": Range(0.0, 1.0, low_open=True, high_open=True),
    "eta_steps": _int(0),
    "max_cases": _int(0),                    # 0: all
}

# Where one key means different things in different jobs.
JOB_RANGES: dict[str, dict[str, Range]] = {
    "darts_search": {"model.channels": _int(1)},
    "evaluate": {"model.channels": _int(0)},  # 0: the network's default
    # 0: no target (latency off); jobs.validate asks for a positive one when latency.enabled.
    "nb201_search": {"model.channels": _int(1), "latency.target_ms": NON_NEGATIVE},
}


def ranges_for(job: str | None) -> dict[str, Range]:
  """The ranges that apply to ``job``."""
  return {**RANGES, **JOB_RANGES.get(job or "", {})}


def _get(config: ml_collections.ConfigDict, path: str) -> tuple[bool, Any]:
  holder = config
  *parents, leaf = path.split(".")
  for p in parents:
    if not isinstance(holder, (ml_collections.ConfigDict, dict)) or p not in holder:
      return False, None
    holder = holder[p]
  if not isinstance(holder, (ml_collections.ConfigDict, dict)) or leaf not in holder:
    return False, None
  return True, holder[leaf]


def numeric_leaves(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
  """``(dotted key, value)`` of every int/float leaf (not bool) of ``config``."""
  for key in sorted(config.keys()):
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      yield from numeric_leaves(value, f"{prefix}{key}.")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield f"{prefix}{key}", value


def check_numbers(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first value outside its stated range (one line naming key, value, range)."""
  for path, rng in ranges_for(config.get("job")).items():
    present, value = _get(config, path)
    if present:
      rng.check(f"config.{path}", value)


def check_cross(config: ml_collections.ConfigDict) -> None:
  """Rules between keys, in the same one-line form."""
  from unas_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  s = config.get("search")
  if s is not None and "init_epochs" in s and "epochs" in s and s.init_epochs > s.epochs:
    raise ConfigError(f"config.search.init_epochs={s.init_epochs} must lie in [0, config.search.epochs={s.epochs}]")
  lat = config.get("latency")
  if lat is not None and lat.get("enabled", False) and "target_ms" in lat and not lat.target_ms > 0:
    raise ConfigError(f"config.latency.target_ms={lat.target_ms!r} must be > 0 when config.latency.enabled")
  t = config.get("train")
  if t is not None and "epochs" in t and t.epochs <= 0 and not t.get("max_steps"):
    raise ConfigError(f"config.train.epochs={t.epochs} must be > 0 (or set config.train.max_steps > 0)")
