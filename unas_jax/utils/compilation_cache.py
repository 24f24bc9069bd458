"""JAX's persistent compilation cache: a resumed or repeated run skips XLA compilation.

Compiling a supernet's search step takes minutes on CPU; with the cache a rerun
of the same shapes loads the executable from disk instead. XLA keys the cache by
the lowered program, so an executable is reused when shapes, dtypes, jax/XLA
version and flags match (the latency probe reuses one architecture's compiled
forward across runs). The setting is global to the process.
"""
from __future__ import annotations

import os

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "unas_jax", "xla")


def enable(directory: str | None = None, min_compile_time_s: float = 0.5) -> str | None:
  """Caches every executable that took at least ``min_compile_time_s`` to compile in ``directory``.

  ``directory`` defaults to ``$UNAS_JAX_COMPILATION_CACHE`` or ~/.cache/unas_jax/xla;
  ``off`` (or ``none``, empty) disables it. Returns the absolute directory used, or None.
  """
  directory = directory or os.environ.get("UNAS_JAX_COMPILATION_CACHE", DEFAULT_DIR)
  if directory in ("off", "", "none"):
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  # JAX's default skips executables that compiled in under 1 s.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # JAX reads these settings once, at the first compilation; make it read them again.
  _jax_cache.reset_cache()
  return directory


def disable() -> None:
  """Stops using the persistent cache (for the rest of the process)."""
  jax.config.update("jax_compilation_cache_dir", None)
  _jax_cache.reset_cache()
