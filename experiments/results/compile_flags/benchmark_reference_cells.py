"""``experiments/benchmark_search.py`` with the supernet's edge-by-edge cell (``SearchCell`` mode
``reference``) instead of the batched one: does one kernel per edge shape, reused across edges,
compile faster? A record of the ``reference_cells.json`` row (the mode is not a config value, so the
cell is patched here), run from the repository root with the same flags as benchmark_search."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # experiments/
from unas_jax.nn import darts_supernet  # noqa: E402

_batched_call = darts_supernet.SearchCell.__call__


def _reference_call(self, s0, s1, weights, *, train, mode="batched"):
  del mode
  return _batched_call(self, s0, s1, weights, train=train, mode="reference")


darts_supernet.SearchCell.__call__ = _reference_call

import benchmark_search  # noqa: E402
from absl import app  # noqa: E402

if __name__ == "__main__":
  app.run(benchmark_search.main)
