"""Comparison of two pytrees computed by the same math in different programs (remat, scans)."""
import jax
import numpy as np


def assert_trees_close(actual, desired, tol: float) -> None:
  """Every leaf within ``tol`` relative and ``tol * max(1, max|desired|)`` absolute.

  Float32 round-off of sums run in another order; the absolute part is on the scale of
  the leaf (at least 1), so leaves whose entries cancel are not held to a relative bound.
  """
  leaves_a, leaves_d = jax.tree.leaves(actual), jax.tree.leaves(desired)
  assert len(leaves_a) == len(leaves_d), (len(leaves_a), len(leaves_d))
  for a, d in zip(leaves_a, leaves_d):
    a, d = np.asarray(a, np.float32), np.asarray(d, np.float32)
    scale = max(1.0, float(np.max(np.abs(d)))) if d.size else 1.0
    np.testing.assert_allclose(a, d, rtol=tol, atol=tol * scale)
