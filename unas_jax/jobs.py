"""Job registry: ``config.job`` names the function that runs it.

Imports are lazy so that a mistyped flag fails before JAX starts.
"""
from __future__ import annotations

import importlib
import os
import tempfile

import ml_collections

from unas_jax.errors import ConfigError

# job name -> "module:function"; each function takes (config, workdir).
JOBS = {
    "estimator_benchmark": "unas_jax.estimators.report:run",
    "darts_search": "unas_jax.search.darts:run",
    "nb201_search": "unas_jax.search.nb201:run",
    "proxyless_search": "unas_jax.search.proxyless:run",
    "evaluate": "unas_jax.evaluation.run:run",
}


def run(config: ml_collections.ConfigDict, workdir: str | None) -> None:
  job = config.get("job")
  if job not in JOBS:
    raise ConfigError(f"config.job={job!r} is not one of {sorted(JOBS)}")
  if workdir is None:
    workdir = os.path.join(tempfile.gettempdir(), "unas_jax", config.get("name", job))
    print(f"--workdir not given; writing to {workdir}")
  os.makedirs(workdir, exist_ok=True)
  from unas_jax.utils import compilation_cache
  compilation_cache.enable(config.get("compilation_cache_dir"))
  module_name, function_name = JOBS[job].split(":")
  getattr(importlib.import_module(module_name), function_name)(config, workdir)
