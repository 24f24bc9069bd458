"""Shared test fixtures."""
import ctypes
import gc
import os
import pathlib
import sys

import pytest

# The development data beside the checkout (../shared/data); never required.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> pathlib.Path:
  """Path of ../shared/data; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"development data {SHARED_DATA} is absent (not part of the product)")
  return SHARED_DATA


def pytest_configure(config):
  # TensorFlow (imported by tfds and clu) must not grab the GPU or spam the log.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _return_free_heap_to_the_os() -> None:
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # not glibc: nothing to trim
    pass


@pytest.fixture(autouse=True)
def _release_compiled_programs(request):
  """After each slow test, drops JAX's compiled programs and returns the freed heap.

  A pytest-xdist worker runs many tests in one process, and jit's caches keep every
  program it compiled (and XLA's freed compile memory stays in glibc's heap): two
  workers of the slow pass reached 9.3 and 14.2 GiB on a 24 GiB machine (2026-12-06), and in
  CI a two-process test run beside such workers timed out (memory there not recorded). With
  this, one process running 9 slow tests stayed at 0.9 GiB between them instead of growing
  to 3.6 GiB. Slow tests rarely share a program, so clearing costs them little; the default
  run keeps its caches (its tests share more).
  """
  yield
  if request.node.get_closest_marker("slow") is None or "jax" not in sys.modules:
    return
  sys.modules["jax"].clear_caches()
  gc.collect()
  _return_free_heap_to_the_os()
