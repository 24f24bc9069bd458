"""Throwaway: benchmark_search with the supernet's edge-by-edge 'reference' cell (kernel reuse across edges?)."""
import sys
sys.path.insert(0, "/work/main/experiments")
from unas_jax.nn import darts_supernet
orig = darts_supernet.SearchCell.__call__
def call(self, s0, s1, weights, *, train, mode="batched"):
  return orig(self, s0, s1, weights, train=train, mode="reference")
darts_supernet.SearchCell.__call__ = call
import benchmark_search
from absl import app
app.run(benchmark_search.main)
