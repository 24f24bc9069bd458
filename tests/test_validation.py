"""Every numeric config value has a stated range, checked at start-up (jobs.validate) without compiling."""
import importlib.util
import math
import os

import pytest

from unas_jax import jobs
from unas_jax import validation
from unas_jax.errors import ConfigError

from test_configs import CONFIGS, VARIANTS  # pylint: disable=import-error

CASES = [(n, a) for n, args in sorted(VARIANTS.items()) for a in args]


def _config(name, arg):
  spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(CONFIGS, name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _set(config, key: str, value) -> None:
  """``config.<dotted key> = value``."""
  *parents, leaf = key.split(".")
  for p in parents:
    config = config[p]
  config[leaf] = value


def _out_of_range(rng: validation.Range):
  """A value just outside ``rng`` (NaN where the range is the whole real line)."""
  if rng.low > -math.inf:
    below = rng.low if rng.low_open else rng.low - 1
    return int(below) if rng.integer else float(below)
  if rng.high < math.inf:
    above = rng.high if rng.high_open else rng.high + 1
    return int(above) if rng.integer else float(above)
  return float("nan")


@pytest.mark.parametrize("name,arg", CASES)
def test_shipped_config_validates(name, arg):
  config = _config(name, arg)
  if config.get("data") is not None and config.data.get("name") == "npz" and not config.data.get("npz_path"):
    # A required value the user gives (e.g. nb201_cifar10.py:quick): without it, one line asks for it.
    with pytest.raises(ConfigError, match="needs --config.data.npz_path"):
      jobs.validate(config)
    return
  jobs.validate(config)


@pytest.mark.parametrize("name,arg", CASES)
def test_every_numeric_key_has_a_range_and_is_checked(name, arg):
  config = _config(name, arg)
  ranges = validation.ranges_for(config.job)
  leaves = dict(validation.numeric_leaves(config))
  assert leaves, "no numeric keys found: the walk is broken"
  missing = sorted(set(leaves) - set(ranges))
  assert not missing, f"numeric config keys without a stated range in unas_jax/validation.py: {missing}"
  for key, current in leaves.items():
    bad = _out_of_range(ranges[key])
    if isinstance(current, int) and not math.isnan(bad) and float(bad).is_integer():
      bad = int(bad)  # an int field (e.g. search.epochs=85) keeps its type
    config = _config(name, arg)
    _set(config, key, bad)
    with pytest.raises(ConfigError) as info:
      jobs.validate(config)
    message = str(info.value)
    assert message.startswith(f"config.{key}="), (key, bad, message)
    assert "\n" not in message and "must be" in message, message


def test_optional_keys_accept_none_and_check_values():
  config = _config("darts_cifar10.py", "quick")
  config.data.crop_padding = 4
  jobs.validate(config)
  config.data.crop_padding = -2
  with pytest.raises(ConfigError, match=r"^config\.data\.crop_padding=-2 must be an integer in \[0, inf\)$"):
    jobs.validate(config)


@pytest.mark.parametrize("key,value,fragment", [
    ("log_every", 0, "config.log_every=0 must be an integer in [1, inf)"),
    ("checkpoint_every", 0, "config.checkpoint_every=0 must be an integer in [1, inf)"),
    ("search.max_steps", -4, "config.search.max_steps=-4 must be an integer in [0, inf)"),
    ("search.w_lr", 0.0, "config.search.w_lr=0.0 must be a finite number in (0, inf)"),
    ("search.w_lr", float("inf"), "config.search.w_lr=inf must be a finite number in (0, inf)"),
    ("search.init_epochs", 9, "config.search.init_epochs=9 must lie in [0, config.search.epochs=8]"),
])
def test_issue_cases_darts(key, value, fragment):
  config = _config("darts_cifar10.py", "quick")
  _set(config, key, value)
  with pytest.raises(ConfigError) as info:
    jobs.validate(config)
  assert str(info.value) == fragment


@pytest.mark.parametrize("penalty", ["hinge", "linear"])
@pytest.mark.parametrize("target", [-5.0, 0.0])
def test_latency_target_must_be_positive_for_every_penalty(penalty, target):
  config = _config("proxyless_latency.py", "quick")
  config.latency.penalty = penalty
  config.latency.target_ms = target
  with pytest.raises(ConfigError, match=r"^config\.latency\.target_ms=.* must be a finite number in \(0, inf\)$"):
    jobs.validate(config)


def test_choices_are_checked_too():
  config = _config("proxyless_latency.py", "quick")
  config.latency.source = "stopwatch"
  with pytest.raises(ConfigError, match="latency.source"):
    jobs.validate(config)
  config = _config("darts_cifar10.py", "quick")
  config.search.estimator = "snas"
  with pytest.raises(ConfigError, match="search.estimator"):
    jobs.validate(config)


@pytest.mark.parametrize("name,arg", [("darts_cifar10.py", "quick"), ("nb201_cifar10.py", "quick_digits")])
@pytest.mark.parametrize("sampling", ["shared", "per_device"])
def test_leave_one_out_needs_several_architectures_per_device(name, arg, sampling):
  # The CI failure of 2026-11-30: this combination used to fail inside the traced step.
  config = _config(name, arg)
  config.search.estimator, config.search.baseline, config.search.sampling = "reinforce", "leave_one_out", sampling
  with pytest.raises(ConfigError, match=r"^search\.baseline='leave_one_out' needs several architectures per device"):
    jobs.validate(config)
  config.search.sampling = "per_example"
  jobs.validate(config)


def test_evaluation_num_nodes_zero_means_any_and_validates():
  """``model.num_nodes=0`` (any node count, as ``evaluation.networks.from_config`` reads it) passes
  start-up validation; a negative count does not."""
  config = _config("darts_cifar10_eval.py", "quick")
  config.model.num_nodes = 0
  jobs.validate(config)
  config.model.num_nodes = -1
  with pytest.raises(ConfigError, match=r"config\.model\.num_nodes=-1"):
    jobs.validate(config)
