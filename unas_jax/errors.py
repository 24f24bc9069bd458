"""User-facing errors.

Anything a user can cause (a bad config key, a missing dataset, an unknown op
name, an unreachable latency target) raises :class:`UnasError` with a message
that says what to do. ``unas_jax.main`` prints it as one line and exits with
status 2, instead of a traceback from deep inside JAX or XLA.
"""


class UnasError(Exception):
  """An error the user can fix; its message says how."""


class ConfigError(UnasError, ValueError):
  """A configuration value is unknown, missing or out of range."""


class DataError(UnasError):
  """A dataset is missing, unprepared or malformed."""
