"""The persistent compilation cache switch (unas_jax/utils/compilation_cache.py)."""
import os

import jax
import jax.numpy as jnp
import pytest

from unas_jax.utils import compilation_cache


@pytest.fixture
def restore_cache_settings():
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  before = {n: getattr(jax.config, n) for n in names}
  yield
  for n, v in before.items():
    jax.config.update(n, v)
  compilation_cache._jax_cache.reset_cache()  # pylint: disable=protected-access


def test_enable_moves_the_cache_and_disable_stops_it(tmp_path, restore_cache_settings):
  del restore_cache_settings
  first = compilation_cache.enable(str(tmp_path / "a"), min_compile_time_s=0.0)
  jax.jit(lambda x: x + 1.0)(jnp.ones(5)).block_until_ready()  # JAX opens the cache in `first`
  assert first == str(tmp_path / "a") and os.listdir(first)
  # A second directory (the latency probe's, after the job's) must take over.
  second = compilation_cache.enable(str(tmp_path / "b"), min_compile_time_s=0.0)
  jax.jit(lambda x: x * 3.0 - 2.0)(jnp.ones(7)).block_until_ready()
  assert os.listdir(second), "enable() must take effect after the cache was opened elsewhere"
  compilation_cache.disable()
  entries = set(os.listdir(first)) | set(os.listdir(second))
  jax.jit(lambda x: x * 5.0 + 4.0)(jnp.ones(9)).block_until_ready()
  assert set(os.listdir(first)) | set(os.listdir(second)) == entries


def test_off_disables(monkeypatch):
  monkeypatch.setenv("UNAS_JAX_COMPILATION_CACHE", "off")
  assert compilation_cache.enable() is None
