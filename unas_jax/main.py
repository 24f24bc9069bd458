r"""Command-line entry point: parses flags and runs the job the config names.

    python -m unas_jax.main --config=configs/proxyless_latency.py:quick \
        --workdir=/tmp/unas --config.search.phi_lr=3e-4

Errors a user can fix (``UnasError``: a wrong config key, a missing dataset, an
unknown op) are printed as one line and exit with status 2.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from unas_jax import config as config_lib
from unas_jax.errors import UnasError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, path.py[:variant].", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, logs, plots and results; rerun to resume.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs: host:port of process 0 (with the next two flags).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process runs: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "off"],
    "auto: start JAX's distributed runtime from the flags above or a detected cluster "
    "(TPU pod, Slurm, Kubernetes JobSet, Open MPI); off: single process.")


def _fail(message: str) -> None:
  print(f"unas_jax: error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, turning config mistakes into one-line errors."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      try:
        config_lib.config_file_path(arg.split("=", 1)[1])
      except UnasError as e:
        _fail(str(e))
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(" ".join(str(e).split()))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections raises these for unknown keys and badly typed overrides.
    message = " ".join(str(e).replace("\\n", " ").replace("\\'", "").replace("'", "").split()).strip("\"")
    _fail(f"unknown or invalid config key: {message}")
  return []  # unreachable


def main(argv: list[str]) -> None:
  del argv
  if _CONFIG.value is None:
    _fail("--config is required, e.g. --config=configs/darts_cifar10.py:quick")
  config = _CONFIG.value
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    # Library INFO logs (orbax, XLA backends) drown the progress bar; --verbosity=0 restores them.
    logging.set_verbosity(logging.WARNING)
  from unas_jax import jobs  # Heavy imports only after the flags are good.
  from unas_jax.parallel import distributed
  try:
    config_lib.check_required(config)
    # Before anything touches a device.
    how = distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 mode=_DISTRIBUTED.value)
    if how != "single process":
      print(f"unas_jax: distributed runtime: {how}", flush=True)
    jobs.run(config, _WORKDIR.value)
  except UnasError as e:
    _fail(str(e))


def run() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
