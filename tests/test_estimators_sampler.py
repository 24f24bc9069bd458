"""The Gumbel samplers, log-probabilities and estimator plumbing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from unas_jax import estimators as est
from unas_jax.estimators import categorical, toy


def test_discrete_sample_frequencies_match_softmax():
  """z = argmax(l + g) is distributed as softmax(l): chi-square test at alpha = 1e-4."""
  logits = jnp.array([1.0, -0.5, 0.3, -2.0])
  n = 200_000
  z = est.discrete(jax.random.key(0), logits, (n,))
  counts = np.asarray(z.sum(0))
  expected = n * np.asarray(jax.nn.softmax(logits))
  p_value = stats.chisquare(counts, expected).pvalue
  assert p_value > 1e-4, (counts, expected)


@pytest.mark.parametrize("k", [0, 2, 3])
def test_conditional_sampler_matches_rejection_sampling(k):
  r"""Fresh-noise conditional scores ``s~ | argmax = k`` against rejection sampling.

  Two-sample Kolmogorov-Smirnov per coordinate, Bonferroni over the 4
  coordinates: family-wise false-alarm rate 1e-4 per k.
  """
  lq = jax.nn.log_softmax(jnp.array([0.5, -1.0, 1.2, -3.0]))
  n = 40_000
  # Rejection: unconditional scores whose argmax is k.
  s = lq + categorical.gumbel_noise(jax.random.key(1), lq, (2_000_000,))
  accepted = np.asarray(s[jnp.argmax(s, -1) == k][:n])
  # Conditional sampler with fresh noise v.
  key_cond, key_max = jax.random.split(jax.random.key(2))
  g_cond = categorical.gumbel_noise(key_cond, lq, (n,))
  g_max = categorical.gumbel_noise(key_max, jnp.zeros(1), (n,))
  z = jax.nn.one_hot(jnp.full((n,), k), 4)
  s_cond = np.asarray(categorical.conditional_scores(lq, z, g_cond, g_max))
  assert np.all(np.argmax(s_cond, -1) == k)
  assert len(accepted) > 1000
  for i in range(4):
    p = stats.ks_2samp(s_cond[:, i], accepted[:, i]).pvalue
    assert p > 1e-4 / 4, f"coordinate {i}: KS p = {p:.2e}"


def test_wrong_conditional_formula_is_detected_by_the_distribution_test():
  """Negative control for the KS test: forgetting the division by p_i."""
  lq = jax.nn.log_softmax(jnp.array([0.5, -1.0, 1.2, -3.0]))
  n, k = 40_000, 0
  s = lq + categorical.gumbel_noise(jax.random.key(1), lq, (2_000_000,))
  accepted = np.asarray(s[jnp.argmax(s, -1) == k][:n])
  key_cond, key_max = jax.random.split(jax.random.key(2))
  g_cond = categorical.gumbel_noise(key_cond, lq, (n,))
  g_max = categorical.gumbel_noise(key_max, jnp.zeros(1), (n,))
  wrong = np.asarray(categorical.truncated_gumbel_given_max(0.0, g_cond, g_max))
  p_values = [stats.ks_2samp(wrong[:, i], accepted[:, i]).pvalue for i in (1, 2, 3)]
  assert min(p_values) < 1e-4 / 4


def test_tied_conditional_sample_equals_relaxed_sample_in_value():
  logits = {"a": jax.random.normal(jax.random.key(0), (3, 5)), "b": jnp.array([2.0, -1.0, 0.0])}
  sample = est.sample(jax.random.key(3), logits, tau=0.4, sample_shape=(64,))
  for zeta, zeta_cond in zip(jax.tree.leaves(sample.zeta), jax.tree.leaves(sample.zeta_cond)):
    np.testing.assert_allclose(zeta, zeta_cond, atol=2e-6)
  # The same key gives the same z in the two-phase use.
  for z1, z2 in zip(jax.tree.leaves(sample.z), jax.tree.leaves(est.discrete(jax.random.key(3), logits, (64,)))):
    np.testing.assert_array_equal(z1, z2)


@pytest.mark.parametrize("p_small", [1e-6, 1e-8])
def test_float32_stability_for_tiny_probabilities(p_small):
  """Samples and REBAR gradients stay finite in float32 with probabilities down to 1e-6."""
  probs = jnp.array([1.0 - 3 * p_small, p_small, p_small, p_small], jnp.float32)
  phi = {"x": jnp.log(probs)[None].repeat(4, 0), "y": jnp.log(probs[::-1])}
  assert phi["x"].dtype == jnp.float32
  n = 20_000
  sample = est.sample(jax.random.key(0), phi, tau=0.4, sample_shape=(n,))
  for leaf in jax.tree.leaves(sample):
    assert bool(jnp.all(jnp.isfinite(leaf)))
  for zeta, zeta_cond in zip(jax.tree.leaves(sample.zeta), jax.tree.leaves(sample.zeta_cond)):
    np.testing.assert_allclose(zeta, zeta_cond, atol=1e-5)
  # Conditioning on the improbable choice itself (argmax forced to a p = p_small entry).
  lq = jax.nn.log_softmax(jnp.log(probs))
  z_rare = jax.nn.one_hot(jnp.ones(n, jnp.int32), 4)
  g = categorical.gumbel_noise(jax.random.key(1), lq, (n,))
  g_max = categorical.gumbel_noise(jax.random.key(2), jnp.zeros(1), (n,))
  s_cond = categorical.conditional_scores(lq, z_rare, g, g_max)
  assert bool(jnp.all(jnp.isfinite(s_cond)))
  assert bool(jnp.all(jnp.argmax(s_cond, -1) == 1))

  loss_fn = lambda arch: jnp.sum(arch["x"][..., 1] * 3.0, -1) + jnp.sum(arch["y"] ** 2, -1)
  grads = est.rebar(phi, jax.random.key(4), loss_fn, sample_shape=(n,)).grads
  for g in jax.tree.leaves(grads):
    assert bool(jnp.all(jnp.isfinite(g)))


def test_log_prob_entropy_and_soften():
  phi = {"a": jnp.array([[0.1, 0.2, -0.3], [1.0, 0.0, 0.0]]), "b": jnp.array([0.5, -0.5])}
  z = {"a": jnp.array([[[1.0, 0, 0], [0, 0, 1.0]]]), "b": jnp.array([[0.0, 1.0]])}
  pa, pb = jax.nn.softmax(phi["a"]), jax.nn.softmax(phi["b"])
  want = np.log(pa[0, 0]) + np.log(pa[1, 2]) + np.log(pb[1])
  np.testing.assert_allclose(est.log_prob(phi, z), [want], rtol=1e-6)
  want_h = -np.sum(pa * np.log(pa)) - np.sum(pb * np.log(pb))
  np.testing.assert_allclose(est.entropy(phi), want_h, rtol=1e-6)
  soft = est.soften(phi, 0.08)
  np.testing.assert_allclose(soft["b"], np.log(pb + 0.08), rtol=1e-6)
  # Softening keeps every choice reachable: min probability >= eps / (1 + K eps).
  tiny = {"c": jnp.array([30.0, 0.0, 0.0])}
  assert float(jnp.min(jax.nn.softmax(est.soften(tiny, 0.08)["c"]))) >= 0.08 / (1 + 3 * 0.08) - 1e-7


def test_two_phase_measured_values_equal_in_graph_loss():
  problem = toy.table_problem(dtype=jnp.float32)
  key = jax.random.key(5)
  f_z = problem.measured_fn(est.discrete(key, est.soften(problem.phi), (16,)))
  a = est.reinforce(problem.phi, key, f_z, sample_shape=(16,)).grads
  b = est.reinforce(problem.phi, key, problem.measured_fn, sample_shape=(16,)).grads
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def test_measured_values_with_wrong_shape_are_rejected():
  problem = toy.table_problem(dtype=jnp.float32)
  with pytest.raises(ValueError, match="sample_shape"):
    est.relax(problem.phi, jax.random.key(0), jnp.zeros(3), problem.control_fn, sample_shape=(4,))
  with pytest.raises(ValueError, match="control_fn"):
    est.unas(problem.phi, jax.random.key(0), None, jnp.zeros(1))


def test_relax_with_the_loss_as_control_equals_rebar():
  """RELAX with g = L is REBAR with eta = 1: same sample, same formula."""
  problem = toy.smooth_problem(dtype=jnp.float32)
  key = jax.random.key(6)
  f_z = problem.loss_fn(est.discrete(key, est.soften(problem.phi), (8,)))
  a = est.relax(problem.phi, key, f_z, problem.loss_fn, sample_shape=(8,)).grads
  b = est.rebar(problem.phi, key, problem.loss_fn, sample_shape=(8,)).grads
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_variance_gradients_match_finite_differences():
  """d/d(eta, log tau) of the mean squared norm of the estimate over fixed keys."""
  with jax.enable_x64(True):
    problem = toy.smooth_problem()
    keys = jax.random.split(jax.random.key(11), 64)

    def mean_sq(eta, log_tau):
      def one(k):
        g = est.rebar(problem.phi, k, problem.loss_fn, eta=eta, tau=jnp.exp(log_tau)).grads
        return jnp.sum(toy.flatten(g) ** 2)
      return jnp.mean(jax.vmap(one)(keys))

    def grads(eta, log_tau):
      def one(k):
        _, d_eta, d_log_tau = est.rebar_variance_gradients(problem.phi, k, problem.loss_fn, eta=eta,
                                                           log_tau=log_tau)
        return d_eta, d_log_tau
      d_eta, d_log_tau = jax.vmap(one)(keys)
      return jnp.mean(d_eta), jnp.mean(d_log_tau)

    eta, log_tau, h = 0.8, float(np.log(0.5)), 1e-5
    d_eta, d_log_tau = grads(eta, log_tau)
    fd_eta = (mean_sq(eta + h, log_tau) - mean_sq(eta - h, log_tau)) / (2 * h)
    fd_tau = (mean_sq(eta, log_tau + h) - mean_sq(eta, log_tau - h)) / (2 * h)
    np.testing.assert_allclose(d_eta, fd_eta, rtol=1e-5)
    np.testing.assert_allclose(d_log_tau, fd_tau, rtol=1e-4)
    # rebar's free eta gradient is the same quantity.
    free = jnp.mean(jax.vmap(lambda k: est.rebar(problem.phi, k, problem.loss_fn, eta=eta,
                                                 tau=jnp.exp(log_tau)).eta_grad)(keys))
    np.testing.assert_allclose(free, d_eta, rtol=1e-8)


def test_enumeration_covers_every_configuration_once():
  phi = toy.smooth_problem(dtype=jnp.float32).phi
  z_all = toy.enumerate_configurations(phi)
  idx = np.concatenate([np.asarray(jnp.argmax(v, -1)).reshape(180, -1) for v in jax.tree.leaves(z_all)], 1)
  rows = {tuple(row) for row in idx}
  assert len(rows) == 3 * 3 * 4 * 5
  probs = jnp.exp(est.log_prob(phi, z_all))
  np.testing.assert_allclose(jnp.sum(probs), 1.0, rtol=1e-5)


def test_baseline_errors():
  with pytest.raises(ValueError, match="at least 2"):
    est.leave_one_out_baseline().value((), jnp.zeros(1))
  from unas_jax.errors import ConfigError
  with pytest.raises(ConfigError, match="unknown REINFORCE baseline"):
    est.make_baseline("average")


def test_product_structure_is_preserved():
  phi = {"normal": {"ops": jnp.zeros((4, 2, 7)), "inputs_0": jnp.zeros((2, 2))}, "reduce": jnp.zeros((3,))}
  e = est.rebar(phi, jax.random.key(0), lambda a: sum(jnp.sum(x, tuple(range(1, x.ndim))) for x in jax.tree.leaves(a)),
                sample_shape=(5,))
  assert jax.tree.structure(e.grads) == jax.tree.structure(phi)
  assert all(g.shape == p.shape for g, p in zip(jax.tree.leaves(e.grads), jax.tree.leaves(phi)))
  assert e.f_z.shape == (5,)


def test_per_sample_keys_make_samples_independent_of_slicing():
  """Sample i drawn alone equals sample i drawn in a block: devices can draw their own slice."""
  phi = {"a": jax.random.normal(jax.random.key(0), (3, 5)), "b": jnp.array([2.0, -1.0, 0.0])}
  keys = est.per_sample_keys(jax.random.key(1), jnp.arange(8))
  whole = est.sample(keys, phi, tau=0.4, sample_shape=(8,))
  part = est.sample(keys[4:6], phi, tau=0.4, sample_shape=(2,))
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(part)):
    np.testing.assert_array_equal(a[4:6], b)
  z = est.discrete(keys, phi, (8,))
  for a, b in zip(jax.tree.leaves(whole.z), jax.tree.leaves(z)):
    np.testing.assert_array_equal(a, b)
  untied = est.sample(keys, phi, tau=0.4, sample_shape=(8,), tied=False)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(untied))
  grads = est.rebar(phi, keys, lambda a: jnp.sum(a["a"][..., 0], -1), sample_shape=(8,)).grads
  assert jax.tree.structure(grads) == jax.tree.structure(phi)


def test_pre_drawn_noise_gives_the_same_estimates():
  """``noise=gumbel_noise(key, ...)`` (one draw handed to several estimators, as the search step
  does) gives bit-identical samples and estimates to drawing it from ``key`` inside."""
  phi = {"a": jax.random.normal(jax.random.key(0), (3, 5)), "b": jnp.array([2.0, -1.0, 0.0])}
  eps, shape = 0.05, (6,)
  keys = est.per_sample_keys(jax.random.key(1), jnp.arange(6))
  logits = est.soften(phi, eps)
  noise = est.gumbel_noise(keys, logits, shape)
  loss_fn = lambda a: jnp.sum(a["a"][..., 0] ** 2, -1) + a["b"][:, 1]
  f_z = loss_fn(est.discrete(keys, logits, shape))
  common = dict(eps=eps, sample_shape=shape)
  pairs = [
      (est.discrete(keys, logits, shape), est.discrete(keys, logits, shape, noise=noise)),
      (est.sample(keys, logits, tau=0.4, sample_shape=shape),
       est.sample(keys, logits, tau=0.4, sample_shape=shape, noise=noise)),
  ]
  for name, fn in [("rebar", lambda **kw: est.rebar(phi, keys, loss_fn, eta=0.7, **common, **kw)),
                   ("relax", lambda **kw: est.relax(phi, keys, f_z, loss_fn, **common, **kw)),
                   ("gumbel_softmax", lambda **kw: est.gumbel_softmax(phi, keys, loss_fn, **common, **kw)),
                   ("reinforce", lambda **kw: est.reinforce(phi, keys, f_z, **common, **kw))]:
    a, b = fn(), fn(noise=noise)
    pairs.append((a.grads, b.grads))
    pairs.append((a.sample, b.sample))
    if a.eta_grad is not None:
      pairs.append((a.eta_grad, b.eta_grad))
  for a, b in pairs:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="sampler"):
    est.rebar(phi, keys, loss_fn, sampler=est.sample, noise=noise, **common)
