"""Statistical tests: each estimator's Monte-Carlo mean against the exact gradient.

Exact gradients come from enumerating all 180 configurations of four categoricals
(sizes 3, 3, 4, 5) in float64. Each test draws N = 100,000 independent estimates
from a fixed key and applies a two-sided z-test per coordinate (15 coordinates),
Bonferroni corrected to a family-wise false-alarm rate ALPHA = 1e-4 per test:
|z| > 4.50 flags a bias. With fixed keys the outcome is deterministic; the stated
rate is the chance that a correct estimator would have failed for a random key
(about 2e-3 over the ~20 tests of this file).

Negative controls (must be flagged): Gumbel-softmax (biased by design), REBAR
with a wrong conditional sampler, and REINFORCE plus a small constant offset
(the harness itself can fail).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax import estimators as est
from unas_jax.estimators import categorical, toy

ALPHA = 1e-4
N = 100_000


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _problems():
  with jax.enable_x64(True):
    return {"smooth": toy.smooth_problem(), "table": toy.table_problem()}


PROBLEMS = _problems()


def _measured(problem, phi, key, eps=0.0, sample_shape=(1,)):
  """Phase one of the two-phase use: the black-box loss of the sample that ``key`` draws."""
  return problem.measured_fn(est.discrete(key, est.soften(phi, eps), sample_shape))


def _bad_control(arch):
  """A poor but differentiable control: RELAX must stay unbiased with any g."""
  x = toy._concat(arch)
  return 3.0 * jnp.sum(x ** 2, 1) + jnp.cos(jnp.sum(x, 1) * jnp.arange(x.shape[1]).sum() / 7.0)


ESTIMATORS = {
    "reinforce": lambda p, k, pr: est.reinforce(p, k, _measured(pr, p, k)).grads,
    "reinforce_constant_baseline": lambda p, k, pr: est.reinforce(
        p, k, pr.measured_fn, baseline=est.constant_baseline(0.7)).grads,
    "reinforce_leave_one_out_S4": lambda p, k, pr: est.reinforce(
        p, k, pr.measured_fn, sample_shape=(4,), baseline=est.leave_one_out_baseline()).grads,
    "rebar_tied": lambda p, k, pr: est.rebar(p, k, pr.loss_fn).grads,
    "rebar_untied": lambda p, k, pr: est.rebar(p, k, pr.loss_fn, tied=False).grads,
    "rebar_eta0.3_tau1.5": lambda p, k, pr: est.rebar(p, k, pr.loss_fn, eta=0.3, tau=1.5).grads,
    "rebar_per_example_S8": lambda p, k, pr: est.rebar(p, k, pr.loss_fn, sample_shape=(8,)).grads,
    "rebar_softened_eps0.08": lambda p, k, pr: est.rebar(p, k, pr.loss_fn, eps=0.08).grads,
    "relax_linear_control": lambda p, k, pr: est.relax(p, k, _measured(pr, p, k), pr.control_fn).grads,
    "relax_bad_control": lambda p, k, pr: est.relax(p, k, _measured(pr, p, k), _bad_control).grads,
}


def _exact(problem, eps=0.0):
  return toy.exact_gradient(problem.phi, problem.loss_fn, eps)


@pytest.mark.parametrize("problem_name", sorted(PROBLEMS))
@pytest.mark.parametrize("estimator_name", sorted(ESTIMATORS))
def test_estimator_is_unbiased(problem_name, estimator_name):
  problem = PROBLEMS[problem_name]
  fn = functools.partial(lambda p, k: ESTIMATORS[estimator_name](p, k, problem))
  eps = 0.08 if "eps0.08" in estimator_name else 0.0
  estimates = toy.per_sample_estimates(fn, problem.phi, jax.random.key(7), N)
  result = toy.bias_test(estimates, _exact(problem, eps), ALPHA)
  assert not result.biased, (f"{estimator_name} on {problem_name}: max |z| = {result.max_abs_z:.2f} "
                             f"> {result.threshold:.2f}; z = {np.round(result.z_scores, 2)}")


def test_unas_combined_rebar_plus_relax_is_unbiased():
  smooth, table = PROBLEMS["smooth"], PROBLEMS["table"]
  phi = smooth.phi  # both problems share the phi structure; use one phi for both terms

  def fn(p, k):
    f_n = table.measured_fn(est.discrete(k, est.soften(p), (1,)))
    return est.unas(p, k, smooth.loss_fn, f_n, table.control_fn).grads

  exact = toy.exact_gradient(phi, lambda z: smooth.loss_fn(z) + table.measured_fn(z))
  result = toy.bias_test(toy.per_sample_estimates(fn, phi, jax.random.key(8), N), exact, ALPHA)
  assert not result.biased, result.z_scores


def test_reinforce_moving_average_baseline_is_unbiased():
  """The baseline is carried as state across sequential draws (it only sees past losses)."""
  problem = PROBLEMS["table"]
  baseline = est.moving_average_baseline(decay=0.9)

  def step(state, key):
    e = est.reinforce(problem.phi, key, problem.measured_fn, baseline=baseline, baseline_state=state)
    return e.baseline_state, toy.flatten(e.grads)

  _, estimates = jax.jit(lambda keys: jax.lax.scan(step, baseline.init(), keys))(
      jax.random.split(jax.random.key(9), N))
  result = toy.bias_test(estimates, _exact(problem), ALPHA)
  assert not result.biased, result.z_scores
  plain = toy.per_sample_estimates(lambda p, k: est.reinforce(p, k, problem.measured_fn).grads,
                                   problem.phi, jax.random.key(9), N)
  # The point of a baseline: lower variance than plain REINFORCE.
  assert np.mean(result.variance) < np.mean(toy.bias_test(plain, _exact(problem), ALPHA).variance)


# ----------------------------------------------------------------- negative controls


def _wrong_conditional_sampler(key, logits, *, tau, sample_shape):
  """REBAR's conditional sample with a classic mistake: ``-log(v_i)`` not divided by ``p_i``."""
  good = categorical.sample(key, logits, tau=tau, sample_shape=sample_shape)
  g = categorical.gumbel_noise(key, logits, sample_shape)

  def leaf(l, gl, z):
    lq = jax.nn.log_softmax(l, -1)
    g_cond, g_max = categorical._tied_noise(lq, lq + gl, z)
    wrong = jnp.where(z > 0, g_max, categorical.truncated_gumbel_given_max(0.0, g_cond, g_max))
    return jax.nn.softmax(wrong / tau, -1)

  return categorical.Sample(z=good.z, zeta=good.zeta, zeta_cond=jax.tree.map(leaf, logits, g, good.z),
                            tied=False)


NEGATIVE_CONTROLS = {
    "gumbel_softmax": lambda p, k, pr: est.gumbel_softmax(p, k, pr.loss_fn, tau=0.4).grads,
    "rebar_wrong_conditional": lambda p, k, pr: est.rebar(p, k, pr.loss_fn,
                                                          sampler=_wrong_conditional_sampler).grads,
    "reinforce_plus_0.05": lambda p, k, pr: jax.tree.map(
        lambda g: g + 0.05, est.reinforce(p, k, pr.measured_fn).grads),
}


@pytest.mark.parametrize("problem_name", sorted(PROBLEMS))
@pytest.mark.parametrize("control_name", sorted(NEGATIVE_CONTROLS))
def test_negative_control_is_detected(problem_name, control_name):
  problem = PROBLEMS[problem_name]
  fn = lambda p, k: NEGATIVE_CONTROLS[control_name](p, k, problem)
  result = toy.bias_test(toy.per_sample_estimates(fn, problem.phi, jax.random.key(7), N), _exact(problem), ALPHA)
  assert result.biased, f"{control_name} on {problem_name} was not detected: max |z| = {result.max_abs_z:.2f}"
