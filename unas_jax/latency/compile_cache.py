"""JAX's persistent compilation cache, switched on from config.

A probe compiles one executable per architecture; XLA keys its cache by the lowered
program, so an architecture compiled by an earlier run (same shapes, dtype, jax/XLA
version and flags) is loaded from disk instead of recompiled. The setting is global
to the process.
"""
from __future__ import annotations

import os

import jax
from jax.experimental.compilation_cache import compilation_cache


def enable_persistent_cache(cache_dir: str, min_compile_time_s: float = 0.0) -> str:
  """Caches every compiled executable that took at least ``min_compile_time_s`` in ``cache_dir``."""
  cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # The cache is initialised once, at the first compilation; re-read the settings.
  compilation_cache.reset_cache()
  return cache_dir


def disable_persistent_cache() -> None:
  jax.config.update("jax_compilation_cache_dir", None)
  compilation_cache.reset_cache()
