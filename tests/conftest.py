"""Shared test fixtures."""
import os
import pathlib

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
