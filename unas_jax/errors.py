"""User-facing errors and the exit codes of ``python -m unas_jax.main``.

Anything a user can cause (a bad config key, a missing dataset, an unknown op
name, an unreachable latency target) raises :class:`UnasError` with a message
that says what to do. ``unas_jax.main`` prints it as one line and exits with
the error's ``exit_code`` instead of a traceback from deep inside JAX or XLA.

Exit codes (a scheduler can act on them):

* 0 (``EXIT_DONE``): the job finished.
* 2 (``EXIT_BAD_INPUT``): bad input: config, data, genotype, workdir, or no
  checkpoint in the workdir restores. Fix the input; rerunning as is fails again.
* 3 (``EXIT_NON_FINITE``): a loss or gradient became NaN/inf. Nothing from the
  bad state was saved; the last good checkpoint is kept (lower a learning rate).
* 74 (``EXIT_IO``, sysexits' EX_IOERR): a checkpoint could not be written
  (disk full, storage gone). The last good checkpoint is kept; free space, rerun.
* 75 (``EXIT_STOPPED``, sysexits' EX_TEMPFAIL): stopped by SIGTERM, Ctrl-C or
  preemption: rerun the same command to resume.
"""

EXIT_DONE = 0
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_IO = 74
EXIT_STOPPED = 75


class UnasError(Exception):
  """An error the user can fix; its message says how."""
  exit_code = EXIT_BAD_INPUT


class ConfigError(UnasError, ValueError):
  """A configuration value is unknown, missing or out of range."""


class DataError(UnasError):
  """A dataset is missing, unprepared or malformed."""


class WorkdirError(UnasError):
  """The workdir cannot be used (a file, under a file, not writable, unknown scheme)."""


class CheckpointError(UnasError):
  """No checkpoint in the workdir restores."""


class NonFiniteError(UnasError):
  """A loss or gradient became NaN or infinite; the run stopped before saving it."""
  exit_code = EXIT_NON_FINITE


class SaveError(UnasError):
  """A checkpoint could not be written; the last good one is kept."""
  exit_code = EXIT_IO
