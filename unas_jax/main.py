r"""Command-line entry point: parses flags and runs the job the config names.

    python -m unas_jax.main --config=configs/proxyless_latency.py:quick \
        --workdir=/tmp/unas --config.search.phi_lr=3e-4

Errors a user can fix (``UnasError``: a wrong config key, a missing dataset, an
unknown op) are printed as one line ``unas_jax: error: ...``. Every config value
is validated before any data is loaded or anything compiled.

Exit codes (``unas_jax.errors``):

* 0: done.
* 2: bad input (config, data, genotype, workdir; or no checkpoint in the workdir
  restores). Fix it: rerunning as is fails again.
* 3: a loss or gradient became NaN/inf; the run stopped at once, saved nothing
  from the bad state and names the last good checkpoint.
* 74: a checkpoint could not be written (disk full); the last good one is kept.
* 75: stopped by SIGTERM, Ctrl-C or preemption (a checkpoint was saved, or none
  was due): rerun the same command to resume. A second Ctrl-C exits at once, also 75.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from unas_jax import config as config_lib
from unas_jax import errors
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


def _fail(message: str, exit_code: int = errors.EXIT_BAD_INPUT) -> None:
  message = " ".join(str(message).split())  # one line, whatever the message held
  print(f"unas_jax: error: {message}", file=sys.stderr, flush=True)
  sys.exit(exit_code)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, turning config mistakes into one-line errors."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      try:
        config_lib.load_config_file(arg.split("=", 1)[1])
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


class _NoLibraryTracebacks:
  """A logging filter: orbax's background-thread errors keep their one log line, lose the traceback.

  A failed save is reported by unas_jax itself in one line (exit 74); orbax also logs
  each failing thread with its whole traceback.
  """

  def filter(self, record) -> bool:
    path = record.pathname or ""
    if record.exc_info and ("orbax" in path or "asyncio" in path):  # (orbax's futures, at exit)
      record.exc_info, record.exc_text = None, None
    return True


def _closed_loop_unraisablehook(default):
  """``sys.unraisablehook`` without the tracebacks of asyncio loops closed under orbax's writers.

  When a checkpoint write fails (disk full), orbax gives up the save and closes its
  event loop while tensorstore's writer threads still finish; each then reports
  ``RuntimeError: Event loop is closed`` as an unraisable exception (hundreds of
  bare tracebacks). The failed save is already reported in one line (exit 74); every
  other exception still reaches the default hook.
  """

  def hook(unraisable):
    exc, tb = unraisable.exc_value, unraisable.exc_traceback
    last = traceback.extract_tb(tb)[-1:] if tb is not None else []
    if (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed" and last
        and last[0].filename.endswith(os.path.join("asyncio", "base_events.py"))):
      return
    default(unraisable)

  return hook


def _interrupt(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def main(argv: list[str]) -> None:
  del argv
  if _CONFIG.value is None:
    _fail("--config is required, e.g. --config=configs/darts_cifar10.py:quick")
  config = _CONFIG.value
  sys.unraisablehook = _closed_loop_unraisablehook(sys.unraisablehook)
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    # Library INFO logs (orbax, XLA backends) drown the progress bar; --verbosity=0 restores them.
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_logger().addFilter(_NoLibraryTracebacks())
    logging.get_absl_handler().addFilter(_NoLibraryTracebacks())  # other loggers' records (asyncio)
  # Until a job installs its own stop handling: SIGTERM like Ctrl-C, one line and exit 75.
  signal.signal(signal.SIGTERM, _interrupt)
  from unas_jax import jobs  # Heavy imports only after the flags are good.
  from unas_jax.parallel import distributed
  try:
    config_lib.check_required(config)
    # Every value in range before a device is touched, data loaded or anything compiled.
    jobs.validate(config)
    # Before anything touches a device.
    how = distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 mode=_DISTRIBUTED.value)
    if how != "single process":
      print(f"unas_jax: distributed runtime: {how}", flush=True)
    result = jobs.run(config, _WORKDIR.value)
  except UnasError as e:
    _fail(str(e), e.exit_code)
  except OSError as e:
    # Storage the run writes besides checkpoints (history, TensorBoard, plots) failing: disk full,
    # storage gone. Checkpoints are written atomically, so the last complete one is intact.
    _fail(f"I/O error, the run stopped: {e}; free space (or fix the storage) and rerun to resume from the last "
          "checkpoint", errors.EXIT_IO)
  except KeyboardInterrupt:
    # Ctrl-C outside a job's loop (imports, start-up): nothing to save.
    print("\nunas_jax: stopped by a signal during start-up; rerun the same command to resume", file=sys.stderr,
          flush=True)
    sys.exit(errors.EXIT_STOPPED)
  if isinstance(result, dict) and "stopped_at" in result:
    # Not done: a scheduler must tell "preempted, rerun me" from "finished".
    sys.exit(errors.EXIT_STOPPED)


def run() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
