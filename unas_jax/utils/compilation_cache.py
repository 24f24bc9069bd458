"""JAX's persistent compilation cache: a resumed or repeated run skips XLA compilation.

Compiling a supernet's search step takes minutes on CPU; with the cache a rerun
of the same shapes loads the executable from disk instead.
"""
from __future__ import annotations

import os

import jax

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "unas_jax", "xla")


def enable(directory: str | None = None) -> str | None:
  """Enables the cache in ``directory`` (default ``$UNAS_JAX_COMPILATION_CACHE`` or ~/.cache/unas_jax/xla).

  ``UNAS_JAX_COMPILATION_CACHE=off`` disables it. Returns the directory used.
  """
  directory = directory or os.environ.get("UNAS_JAX_COMPILATION_CACHE", DEFAULT_DIR)
  if directory in ("off", "", "none"):
    return None
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  # Cache every executable that took a noticeable time (the default skips < 1 s).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
