r"""Small products of categoricals with exact gradients: the estimators' proving ground.

A toy problem has a few categoricals (sizes 3 to 5) whose configurations can all
be enumerated, so ``d/dphi E_{z~p_phi}[L(z)] = d/dphi sum_z p_phi(z) L(z)`` is
computed exactly (in float64 under ``jax.enable_x64``). Monte-Carlo estimates are
then compared with it coordinate by coordinate with a z-test, Bonferroni
corrected over the coordinates:

.. math::
   t_j = \frac{\bar g_j - g_j}{\hat\sigma_j / \sqrt N}, \qquad
   \text{reject if } \max_j |t_j| > \Phi^{-1}\big(1 - \alpha / (2D)\big)

so an unbiased estimator is rejected with probability at most ``alpha`` (up to
the normal approximation of the mean of ``N`` i.i.d. estimates).

Used by the tests (``tests/test_estimators*.py``) and by
``experiments/estimator_variance.py``.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from chex import ArrayTree as PyTree

from unas_jax.estimators import categorical


@dataclasses.dataclass(frozen=True)
class ToyProblem:
  """A loss on a small product of categoricals.

  Attributes:
    name: short name.
    phi: architecture logits (pytree of ``[..., K]``).
    loss_fn: differentiable ``arch -> [S]``; equal to the measured loss on one-hot
      inputs (a table is extended multilinearly to relaxed inputs).
    measured_fn: the loss as a black box on one-hot ``z`` (e.g. a table lookup).
    control_fn: a differentiable approximation of ``measured_fn`` (RELAX's ``g``).
  """
  name: str
  phi: PyTree
  loss_fn: Callable[[PyTree], jax.Array]
  measured_fn: Callable[[PyTree], jax.Array]
  control_fn: Callable[[PyTree], jax.Array]


def categorical_shapes(phi: PyTree) -> list[tuple[str, int]]:
  return [(str(path), leaf.shape[-1]) for path, leaf in jax.tree_util.tree_leaves_with_path(phi)]


def enumerate_configurations(phi: PyTree) -> PyTree:
  """Every configuration as one-hot arch with leading axis ``C = prod K``."""
  leaves, treedef = jax.tree.flatten(phi)
  # Each leaf holds prod(leaf.shape[:-1]) categoricals of size leaf.shape[-1].
  variables = []
  for leaf in leaves:
    variables += [leaf.shape[-1]] * int(np.prod(leaf.shape[:-1], dtype=int))
  configs = np.array(list(itertools.product(*[range(k) for k in variables])))  # [C, num_vars]
  out, col = [], 0
  for leaf in leaves:
    n = int(np.prod(leaf.shape[:-1], dtype=int))
    idx = configs[:, col:col + n].reshape((len(configs),) + leaf.shape[:-1])
    out.append(jax.nn.one_hot(idx, leaf.shape[-1], dtype=leaf.dtype))
    col += n
  return jax.tree.unflatten(treedef, out)


def exact_expectation(phi: PyTree, loss_fn: Callable, eps: float = 0.0) -> jax.Array:
  """``sum_z p_phi(z) L(z)`` by enumeration."""
  z_all = enumerate_configurations(phi)
  logits = categorical.soften(phi, eps)
  return jnp.sum(jnp.exp(categorical.log_prob(logits, z_all)) * loss_fn(z_all))


def exact_gradient(phi: PyTree, loss_fn: Callable, eps: float = 0.0) -> PyTree:
  """``d/dphi sum_z p_phi(z) L(z)``, exact."""
  return jax.grad(lambda p: exact_expectation(p, loss_fn, eps))(phi)


def per_sample_estimates(estimator_fn: Callable[[PyTree, jax.Array], PyTree], phi: PyTree,
                         key: jax.Array, num: int, chunk: int = 20000) -> jax.Array:
  """``num`` independent estimates, flattened to ``[num, D]``.

  ``estimator_fn(phi, key) -> grads`` is vmapped over keys (in chunks, to bound memory).
  """
  fn = jax.jit(jax.vmap(lambda k: jnp.concatenate(
      [jnp.ravel(g) for g in jax.tree.leaves(estimator_fn(phi, k))])))
  keys = jax.random.split(key, num)
  return jnp.concatenate([fn(keys[i:i + chunk]) for i in range(0, num, chunk)])


def flatten(tree: PyTree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(g) for g in jax.tree.leaves(tree)])


def bonferroni_threshold(alpha: float, num_coordinates: int) -> float:
  """Two-sided per-coordinate z threshold for family-wise false-alarm rate ``alpha``."""
  from scipy.stats import norm  # scipy comes with scikit-learn
  return float(norm.isf(alpha / (2 * num_coordinates)))


@dataclasses.dataclass(frozen=True)
class BiasTest:
  """The result of a Bonferroni z-test of a Monte-Carlo mean against the exact gradient."""
  z_scores: np.ndarray     # [D]
  threshold: float
  mean: np.ndarray         # [D]
  exact: np.ndarray        # [D]
  variance: np.ndarray     # [D] per-sample variance

  @property
  def max_abs_z(self) -> float:
    return float(np.max(np.abs(self.z_scores)))

  @property
  def biased(self) -> bool:
    return self.max_abs_z > self.threshold


def bias_test(estimates: jax.Array, exact: PyTree, alpha: float) -> BiasTest:
  """z-test of ``estimates`` ``[N, D]`` against the exact gradient, family-wise level ``alpha``."""
  estimates = np.asarray(estimates, np.float64)
  exact_flat = np.asarray(flatten(exact), np.float64)
  n = estimates.shape[0]
  mean = estimates.mean(0)
  variance = estimates.var(0, ddof=1)
  # A coordinate with zero variance and zero error is a perfect estimate, not a failure.
  stderr = np.sqrt(variance / n)
  error = mean - exact_flat
  z = np.where(stderr > 0, error / np.where(stderr > 0, stderr, 1.0), np.where(np.abs(error) > 1e-12, np.inf, 0.0))
  return BiasTest(z_scores=z, threshold=bonferroni_threshold(alpha, len(exact_flat)), mean=mean,
                  exact=exact_flat, variance=variance)


# --------------------------------------------------------------------------- problems


def _concat(arch: PyTree) -> jax.Array:
  """Flattens an arch with leading sample axis to ``[S, D]``."""
  leaves = jax.tree.leaves(arch)
  s = leaves[0].shape[0]
  return jnp.concatenate([leaf.reshape(s, -1) for leaf in leaves], axis=1)


def _default_phi(key: jax.Array, dtype) -> PyTree:
  """Four categoricals: two of size 3 in one leaf, one of size 4, one of size 5."""
  k1, k2, k3 = jax.random.split(key, 3)
  return {"pair": jax.random.normal(k1, (2, 3), dtype), "four": jax.random.normal(k2, (4,), dtype),
          "five": jax.random.normal(k3, (5,), dtype)}


def smooth_problem(key: jax.Array = jax.random.key(0), dtype=jnp.float64, sharpness: float = 1.0) -> ToyProblem:
  r"""A smooth loss with pairwise interactions and a nonlinearity:

  ``L(x) = x^T Q x + b^T x + sin(c^T x)``, ``x`` the concatenated (one-hot or
  relaxed) choices. ``sharpness`` scales ``Q``, ``b``, ``c`` (sharper losses make
  REBAR with ``eta = 1`` lose to REINFORCE; docs/design.md section 2).
  """
  k_phi, k_q, k_b, k_c = jax.random.split(key, 4)
  phi = _default_phi(k_phi, dtype)
  d = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(phi))
  q = sharpness * jax.random.normal(k_q, (d, d), dtype) / np.sqrt(d)
  b = sharpness * jax.random.normal(k_b, (d,), dtype)
  c = sharpness * jax.random.normal(k_c, (d,), dtype)

  def loss_fn(arch):
    x = _concat(arch)
    return jnp.einsum("si,ij,sj->s", x, q, x) + x @ b + jnp.sin(x @ c)

  return ToyProblem(f"smooth(sharpness={sharpness})", phi, loss_fn, loss_fn, _linear_control(phi, loss_fn))


def table_problem(key: jax.Array = jax.random.key(1), dtype=jnp.float64, interaction: float = 1.0) -> ToyProblem:
  r"""A table-lookup loss with interactions: ``L(z) = T[z_1, z_2, z_3, z_4]``.

  ``T`` = additive part + ``interaction`` * i.i.d. normal interactions. Measured
  as a lookup; its multilinear extension ``sum T[i..] x_1i x_2j ...`` agrees on
  one-hot inputs and is the differentiable loss for REBAR. RELAX's control is
  the additive (linear) least-squares fit, like the latency surrogate.
  """
  k_phi, k_add, k_int = jax.random.split(key, 3)
  phi = _default_phi(k_phi, dtype)
  sizes = [3, 3, 4, 5]
  additive = [jax.random.normal(k, (n,), dtype) for k, n in zip(jax.random.split(k_add, 4), sizes)]
  table = interaction * jax.random.normal(k_int, sizes, dtype)
  for axis, a in enumerate(additive):
    shape = [1] * 4
    shape[axis] = sizes[axis]
    table = table + a.reshape(shape)

  def unpack(arch):
    return arch["pair"][:, 0], arch["pair"][:, 1], arch["four"], arch["five"]

  def loss_fn(arch):
    return jnp.einsum("ijkl,si,sj,sk,sl->s", table, *unpack(arch))

  def measured_fn(z):
    idx = [jnp.argmax(v, -1) for v in unpack(z)]
    return table[idx[0], idx[1], idx[2], idx[3]]

  return ToyProblem(f"table(interaction={interaction})", phi, loss_fn, measured_fn,
                    _linear_control(phi, measured_fn))


def _linear_control(phi: PyTree, measured_fn: Callable) -> Callable:
  """Least-squares linear fit ``g(x) = l^T x + b`` of a loss over all configurations."""
  z_all = enumerate_configurations(phi)
  x = _concat(z_all)
  y = measured_fn(z_all)
  design = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], 1)
  coef = jnp.linalg.lstsq(design, y)[0]

  def control_fn(arch):
    return _concat(arch) @ coef[:-1] + coef[-1]
  return control_fn


def round_trip_check(problem: ToyProblem) -> float:
  """Max difference between ``loss_fn`` and ``measured_fn`` on all one-hot configurations."""
  z_all = enumerate_configurations(problem.phi)
  return float(jnp.max(jnp.abs(problem.loss_fn(z_all) - problem.measured_fn(z_all))))


def z_threshold_note(alpha: float, num_coordinates: int) -> str:
  t = bonferroni_threshold(alpha, num_coordinates)
  return f"Bonferroni z-test, family-wise alpha={alpha:g} over {num_coordinates} coordinates: |z| > {t:.2f}"


__all__ = ["BiasTest", "ToyProblem", "bias_test", "bonferroni_threshold", "enumerate_configurations",
           "exact_expectation", "exact_gradient", "flatten", "per_sample_estimates", "smooth_problem",
           "table_problem", "round_trip_check", "z_threshold_note"]
