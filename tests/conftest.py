"""Shared test fixtures."""
import ctypes
import gc
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

# The development data beside the checkout (../shared/data); never required.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
_OWNED_CACHE = pytest.StashKey[str]()


@pytest.fixture
def shared_data() -> pathlib.Path:
  """Path of ../shared/data; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"development data {SHARED_DATA} is absent (not part of the product)")
  return SHARED_DATA


# One persistent compilation cache for every process of a test run: the tests' own compiles and
# the jobs they start as subprocesses (which read UNAS_JAX_COMPILATION_CACHE). A program that
# one test compiled (the tiny searches' steps, the supernet gradients that several equality
# tests compare) is loaded by the next test instead of compiled again, and no test writes into
# the user's ~/.cache/unas_jax. UNAS_JAX_TEST_COMPILATION_CACHE names it (.ci/run shares one
# between its pytest runs; set it to keep a warm cache between local reruns; "off" for none); by
# default a new temporary folder that the run removes at its end.
TEST_CACHE_ENV = "UNAS_JAX_TEST_COMPILATION_CACHE"
_OFF = ("off", "none")  # as unas_jax.utils.compilation_cache.enable reads them


def pytest_configure(config):
  # TensorFlow (imported by tfds and clu) must not grab the GPU or spam the log.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if not os.environ.get(TEST_CACHE_ENV):
    # The first process of the run (pytest-xdist's workers inherit its environment).
    os.environ[TEST_CACHE_ENV] = tempfile.mkdtemp(prefix="unas_jax_test_xla_")
    config.stash[_OWNED_CACHE] = os.environ[TEST_CACHE_ENV]
  # "off": no persistent cache at all (UNAS_JAX_COMPILATION_CACHE=off for the jobs too).
  os.environ["UNAS_JAX_COMPILATION_CACHE"] = os.environ[TEST_CACHE_ENV]


def pytest_unconfigure(config):
  owned = config.stash.get(_OWNED_CACHE, None)
  if owned:
    shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture(autouse=True)
def _shared_compilation_cache():
  """Points JAX's persistent cache at the run's shared folder before each test.

  Per test, not once: a test that moves the cache elsewhere (the latency probe's own
  folder, tests of the cache switch) would otherwise move it for every later test of its process.
  """
  if os.environ[TEST_CACHE_ENV].lower() not in _OFF:
    import jax  # pylint: disable=import-outside-toplevel
    from unas_jax.utils import compilation_cache  # pylint: disable=import-outside-toplevel
    directory = os.path.abspath(os.environ[TEST_CACHE_ENV])
    if (jax.config.jax_compilation_cache_dir != directory
        or jax.config.jax_persistent_cache_min_compile_time_secs != 0):
      # Every program, however small (the jobs keep the product's 0.5 s floor): the tests run
      # modules op by op, and each op's first call on new shapes compiles a tiny program. Read
      # back from the cache, a 3-cell supernet's construction, sample and eager forward took
      # 2.5, 1.4 and 17.9 s against 15.2, 7.6 and 53.7 s compiled (2026-12-07, AMD EPYC), and
      # pytest-xdist's workers and CI's later pytest runs meet the same shapes.
      compilation_cache.enable(directory, min_compile_time_s=0)
  yield


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
