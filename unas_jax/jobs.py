"""Job registry: ``config.job`` names the function that runs it.

Imports are lazy so that a mistyped flag fails before JAX starts.
:func:`validate` checks every config value (ranges, choices, cross-field
rules) without loading data or compiling; :func:`prepare_workdir` checks the
workdir (a local path or a URI such as ``gs://bucket/run``, kept as given).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
import uuid

import ml_collections

from unas_jax import validation
from unas_jax.config import check_choice
from unas_jax.errors import WorkdirError

# job name -> "module:function"; each function takes (config, workdir).
JOBS = {
    "estimator_benchmark": "unas_jax.estimators.report:run",
    "darts_search": "unas_jax.search.darts:run",
    "nb201_search": "unas_jax.search.nb201:run",
    "proxyless_search": "unas_jax.search.proxyless:run",
    "evaluate": "unas_jax.evaluation.run:run",
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line ConfigError for any bad value; loads no data and compiles nothing.

  Ranges of every numeric key (:mod:`unas_jax.validation`), then each job's own
  choices and cross-field rules.
  """
  job = config.get("job")
  check_choice("config.job", job, sorted(JOBS))
  validation.check_numbers(config)
  validation.check_cross(config)
  if "data" in config:
    from unas_jax import data as data_lib  # pylint: disable=import-outside-toplevel
    data_lib.resolve(config.data)
  if job in ("darts_search", "proxyless_search", "nb201_search"):
    from unas_jax.search import loop  # pylint: disable=import-outside-toplevel
    loop.validate(config)
  if job == "proxyless_search" and config.get("latency") is not None:
    from unas_jax.latency import proxyless_source  # pylint: disable=import-outside-toplevel
    check_choice("config.latency.source", config.latency.source, proxyless_source.SOURCES)
    check_choice("config.latency.statistic", config.latency.statistic, proxyless_source.STATISTICS)
  if job == "evaluate":
    from unas_jax.evaluation import networks  # pylint: disable=import-outside-toplevel
    from unas_jax.evaluation import run as eval_run  # pylint: disable=import-outside-toplevel
    eval_run.check_config(config)
    networks.from_config(config.model, seed=config.seed)  # reads and checks the genotype (JSON) too


def gcs_client_installed() -> bool:
  """Whether ``google.cloud.storage`` can be imported (orbax needs it for gs:// checkpoints)."""
  try:
    return importlib.util.find_spec("google.cloud.storage") is not None
  except ModuleNotFoundError:  # no google.cloud package at all
    return False


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that it can be written; returns it unchanged.

  A URI (``gs://bucket/run``) stays a URI (``etils.epath``), never a local
  folder named after it. Raises WorkdirError (one line) for a workdir that is
  a file, lies under a file, cannot be created or written, or has a scheme no
  installed backend reaches.
  """
  from etils import epath  # pylint: disable=import-outside-toplevel
  where = f"--workdir={workdir}"
  if workdir.startswith("gs://") and not gcs_client_installed():
    # orbax imports google-cloud-storage when it lists or deletes steps on gs:// (after
    # the first checkpoint), but does not require it: say so now, not minutes into the run.
    raise WorkdirError(f"{where} needs google-cloud-storage for orbax's checkpoints on gs://; "
                       "install it with pip install -e '.[gcs]' (or pip install google-cloud-storage)")
  try:
    path = epath.Path(workdir)
  except KeyError:
    scheme = workdir.split("://", 1)[0]
    raise WorkdirError(f"{where}: unknown URI scheme {scheme}://; use a local path or gs://, s3://") from None
  try:
    if path.exists() and not path.is_dir():
      raise WorkdirError(f"{where} is a file, not a directory; choose another workdir")
    parent = path.parent
    while parent != parent.parent and not parent.exists():
      parent = parent.parent
    if parent.exists() and not parent.is_dir():
      raise WorkdirError(f"{where} lies under {parent}, which is a file; choose another workdir")
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".unas_jax_write_test_{uuid.uuid4().hex}"
    probe.write_text("ok")
    probe.unlink()
  except WorkdirError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # OSError locally; storage back-ends raise their own types (no credentials, no network).
    reason = " ".join(str(e).split()) or type(e).__name__
    raise WorkdirError(f"{where} cannot be created or written ({type(e).__name__}: {reason}); check the path "
                       "and its permissions or choose another workdir") from None
  return workdir


def run(config: ml_collections.ConfigDict, workdir: str | None):
  """Validates ``config`` and the workdir, then runs the job; returns its result."""
  validate(config)
  job = config.job
  if workdir is None:
    workdir = os.path.join(tempfile.gettempdir(), "unas_jax", config.name)
    print(f"--workdir not given; writing to {workdir}")
  workdir = prepare_workdir(workdir)
  from unas_jax.utils import compilation_cache
  compilation_cache.enable(config.get("compilation_cache_dir"))
  module_name, function_name = JOBS[job].split(":")
  return getattr(importlib.import_module(module_name), function_name)(config, workdir)
