"""Linear latency surrogate (ridge), its use as RELAX's control, and the additive model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from unas_jax import estimators as est
from unas_jax.errors import ConfigError
from unas_jax.latency import surrogate as S
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.spaces import proxyless as sp


def _table(seed, zero_ms=0.0):
  rng = np.random.default_rng(seed)
  table = {}
  for spec in sp.layer_specs():
    row = rng.uniform(0.2, 3.0, 6).tolist() + ([zero_ms] if spec.allows_zero else [])
    table[spec.name] = np.asarray(row)
  return AdditiveLatency(table, bias=5.0, source="synthetic")


def test_fits_an_additive_latency_exactly():
  truth = _table(0)
  gs = sp.random_genotypes(0, 600)
  y = truth.latencies(gs)
  fit = S.LinearSurrogate.fit(gs, y, lam=1e-9)
  held_out = sp.random_genotypes(1, 200)
  np.testing.assert_allclose(fit.latencies(held_out), truth.latencies(held_out), rtol=1e-7)
  assert fit.min_latency() == pytest.approx(truth.min_latency(), rel=1e-7)
  # With the paper's lambda = 1 the shrinkage is small but visible; the report says how small.
  fit1, report = S.fit_surrogate(gs, y, lam=1.0)
  assert report["num_test"] == 120 and report["num_train"] == 480
  assert report["test"]["r2"] > 0.999 and report["test"]["kendall_tau"] > 0.97
  assert report["test"]["mape_pct"] < 1.0
  assert fit1.report["test"] == report["test"]


def test_ridge_does_not_penalise_the_intercept():
  truth = _table(1)
  gs = sp.random_genotypes(2, 300)
  y = truth.latencies(gs)
  a = S.LinearSurrogate.fit(gs, y, lam=1.0)
  b = S.LinearSurrogate.fit(gs, y + 1000.0, lam=1.0)
  np.testing.assert_allclose(a.coef, b.coef, atol=1e-9)
  assert b.bias - a.bias == pytest.approx(1000.0)


def test_predict_is_differentiable_and_batched():
  truth = _table(2)
  fit = S.LinearSurrogate.fit(sp.random_genotypes(3, 400), truth.latencies(sp.random_genotypes(3, 400)))
  gs = sp.random_genotypes(4, 3)
  arch = sp.genotype_to_arch(gs)
  np.testing.assert_allclose(fit.predict(arch), fit.latencies(gs), rtol=1e-5)
  relaxed = {k: jax.nn.softmax(jax.random.normal(jax.random.key(0), (2, 5) + v.shape[1:]), -1)
             for k, v in arch.items()}
  assert fit.predict(relaxed).shape == (2, 5)
  grads = jax.grad(lambda a: fit.predict(a).sum())(arch)
  np.testing.assert_allclose(grads["layer07"][0], fit.table["layer07"], rtol=1e-5)


def test_save_load_and_refit(tmp_path):
  truth = _table(3)
  data = S.LatencyDataset()
  gs = sp.random_genotypes(5, 200)
  data.extend(gs[:100], truth.latencies(gs[:100]))
  first, _ = data.refit()
  data.extend(gs[100:], truth.latencies(gs[100:]))
  data.add(gs[0], truth.latency(gs[0]))  # re-measurement replaces, does not duplicate
  assert len(data) == 200
  second, report = data.refit()
  assert second.num_fit == 200 and first.num_fit == 100
  path = tmp_path / "surrogate.npz"
  second.save(str(path))
  loaded = S.LinearSurrogate.load(str(path))
  np.testing.assert_array_equal(loaded.coef, second.coef)
  assert loaded.bias == second.bias and loaded.lam == 1.0 and loaded.num_fit == 200
  assert (tmp_path / "surrogate_report.json").exists()
  arrays = second.to_arrays()
  assert all(isinstance(v, np.ndarray) for v in arrays.values())
  S.scatter_plot(report["y_test"], report["y_pred"], str(tmp_path / "scatter.png"))
  assert (tmp_path / "scatter.png").stat().st_size > 1000
  with pytest.raises(ConfigError, match="at least 2"):
    S.LinearSurrogate.fit(gs[:1], [1.0])


def _relax_gradient_samples(phi, truth, control, n, seed):
  """Per-sample RELAX estimates (sample_shape (1,)) with the latency measured on each key's z,
  and (negative control) on another sample's z: the reference implementation's defect
  (docs/design.md section 10)."""
  def one(key, wrong):
    z = est.discrete(key, est.soften(phi), (1,))
    z_other = est.discrete(jax.random.fold_in(key, 7), est.soften(phi), (1,))
    f_z = jnp.where(wrong, truth.predict(z_other), truth.predict(z))
    return est.relax(phi, key, f_z, control.predict, tau=0.4).grads
  keys = jax.random.split(jax.random.key(seed), n)
  run = jax.jit(jax.vmap(one, in_axes=(0, None)))
  return [np.asarray(sp.flatten_arch(run(keys, wrong)), np.float64) for wrong in (False, True)]


@pytest.mark.slow  # ~15 s on a quiet 2-core CPU (compile), ~60 s under load
def test_relax_latency_gradient_is_unbiased():
  """RELAX with a table latency as L_n and a fitted (imperfect) linear surrogate as control is
  unbiased; the exact gradient is analytic because the latency is additive:
  d/dphi_l E[lat] = p_l * (t_l - p_l . t_l)."""
  truth = _table(4)
  gs = sp.random_genotypes(6, 300)
  noisy = truth.latencies(gs) * np.random.default_rng(0).lognormal(0, 0.1, len(gs))
  control = S.LinearSurrogate.fit(gs, noisy)
  phi = {k: 0.7 * v for k, v in sp.init_phi(jax.random.key(1), 1.0).items()}
  p = {k: jax.nn.softmax(v) for k, v in phi.items()}
  exact = np.asarray(sp.flatten_arch({k: p[k] * (truth.table[k] - p[k] @ truth.table[k]) for k in p}))
  n = 8000
  right, wrong = _relax_gradient_samples(phi, truth, control, n, seed=0)
  z_crit = scipy_stats.norm.isf(1e-4 / sp.FLAT_DIM / 2)  # Bonferroni: 1e-4 overall false-alarm rate
  zscore = lambda s: np.abs((s.mean(0) - exact) / (s.std(0, ddof=1) / np.sqrt(n)))  # noqa: E731
  assert np.max(zscore(right)) < z_crit, f"max |z| = {np.max(zscore(right)):.2f} >= {z_crit:.2f}"
  assert np.max(zscore(wrong)) > z_crit  # the negative control is detected
