"""Every config file and documented variant loads; an unknown variant is refused by name."""
import importlib.util
import os

import pytest

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
VARIANTS = {
    "darts_cifar10.py": [None, "quick"], "darts_cifar100.py": [None, "quick"], "darts_imagenet.py": [None, "quick"],
    "darts_cifar10_eval.py": [None, "quick"], "darts_cifar100_eval.py": [None, "quick"],
    "darts_imagenet_eval.py": [None, "quick"], "proxyless_imagenet_eval.py": [None, "quick"],
    "proxyless_latency.py": [None, "quick", "quick_lut", "lut"], "estimator_benchmark.py": [None],
    "nb201_cifar10.py": [None, "quick", "quick_digits"],
}


def _load(name):
  spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(CONFIGS, name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_config_file_is_listed():
  assert sorted(f for f in os.listdir(CONFIGS) if f.endswith(".py")) == sorted(VARIANTS)


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in sorted(VARIANTS.items()) for a in args])
def test_variant_loads_names_a_job_and_its_docstring_lists_it(name, arg):
  """Each variant runs a registered job, and the file's docstring shows how to run that variant."""
  from unas_jax import jobs  # pylint: disable=import-outside-toplevel
  module = _load(name)
  config = module.get_config(arg)
  assert config.job in jobs.JOBS, (name, arg, config.job)
  assert f"configs/{name}{':' + arg if arg else ''}" in (module.__doc__ or ""), (
      f"the docstring of configs/{name} does not show the variant {arg!r}")


def test_variants_have_distinct_names():
  """``config.name`` labels runs and plots: two variants of one file must not share it."""
  for name, args in VARIANTS.items():
    names = [_load(name).get_config(a).name for a in args]
    assert len(set(names)) == len(names), (name, names)


@pytest.mark.parametrize("name", sorted(n for n, args in VARIANTS.items() if len(args) > 1))
def test_unknown_variant_is_refused(name):
  with pytest.raises(ValueError, match="unknown"):
    _load(name).get_config("qiuck")

