"""latency.penalty=lagrangian: the multiplier lambda of E[lat] <= target, moved by dual ascent.

* At a fixed lambda the phi step is the linear penalty's with c = lambda / target (so the
  RELAX estimator and its unbiasedness tests carry over unchanged).
* lambda moves the right way (up while violated, down to 0 when met) by exactly the
  dual-ascent step, and on a toy the search holds E[lat] near ratio * target.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from search_toys import ToySupernet, step_config, toy_data  # noqa: E402

from unas_jax import estimators as est  # noqa: E402
from unas_jax.errors import ConfigError  # noqa: E402
from unas_jax.nn import functional  # noqa: E402
from unas_jax.objectives import losses  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.search import step as step_lib  # noqa: E402

# A linear toy "latency" in ms per (layer, choice): the control is exact, as an additive table.
TABLE = jnp.array([[5.0, 1.0, 0.5], [4.0, 2.0, 0.5]])


def control_fn(c, arch):
  return jnp.sum(arch["layer"] * c, (1, 2))


def _setup(cfg, tx_phi=None):
  mesh = mesh_lib.make_mesh(1)
  model_def, phi, w, stats = functional.split(ToySupernet(rngs=nnx.Rngs(0)))
  model = step_lib.SearchModel(model_def, control_fn=control_fn)
  tx_w, tx_phi = optax.sgd(1e-2), tx_phi or optax.sgd(1.0)
  state = mesh_lib.put_replicated(step_lib.init_state(0, phi["phi"], w, stats, tx_w, tx_phi, cfg), mesh)
  return mesh, state, step_lib.make_search_step(model, tx_w, tx_phi, cfg, mesh, 8)


def _expected(phi):
  return float(control_fn(TABLE, {"layer": est.probabilities(phi)["layer"][None]})[0])


def _run(cfg, steps=1, tx_phi=None):
  mesh, state, step = _setup(cfg, tx_phi)
  history = []
  for i in range(steps):
    x, y = toy_data(jax.random.key(i), 16)
    z = step_lib.global_architectures(cfg, state.key, state.step, state.phi, 8, 1)
    lat = control_fn(TABLE, z)
    expected = _expected(state.phi)
    state, metrics = step(state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
                          mesh_lib.put_global(lat, mesh), TABLE)
    history.append({"lat": float(jnp.mean(lat)), "expected": expected, **{k: float(v) for k, v in metrics.items()}})
  return state, history


def test_fixed_multiplier_is_the_linear_penalty_with_c_lambda_over_target():
  target, lam = 4.0, 3.0
  lagrangian = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=target,
                           latency_lambda_init=lam, latency_lambda_lr=0.0, latency_lagrangian_term="linear")
  linear = step_config(latency_estimator="relax", latency_penalty="linear", latency_target_ms=target,
                       latency_c=lam / target)
  free = step_config(latency_estimator="relax", latency_penalty="linear", latency_c=0.0)
  (s_lag, h_lag), (s_lin, _), (s_free, _) = _run(lagrangian), _run(linear), _run(free)
  np.testing.assert_allclose(s_lag.phi["layer"], s_lin.phi["layer"], rtol=1e-6, atol=1e-7)
  # Not vacuous: the latency term moved phi, and lambda_lr = 0 left lambda where it was.
  assert np.abs(np.asarray(s_lag.phi["layer"]) - np.asarray(s_free.phi["layer"])).max() > 1e-2
  assert float(s_lag.latency_lambda) == lam and h_lag[0]["latency_lambda"] == lam


def test_fixed_multiplier_with_the_hinge_term_is_the_hinge_with_c_lambda_over_target():
  target, lam = 3.0, 3.0
  lagrangian = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=target,
                           latency_lambda_init=lam, latency_lambda_lr=0.0, latency_damping=0.0,
                           latency_lagrangian_term="hinge")
  hinge = step_config(latency_estimator="relax", latency_penalty="hinge", latency_target_ms=target,
                      latency_c=lam / target)
  linear = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=target,
                       latency_lambda_init=lam, latency_lambda_lr=0.0, latency_damping=0.0,
                       latency_lagrangian_term="linear")
  (s_lag, _), (s_hinge, _), (s_lin, _) = _run(lagrangian), _run(hinge), _run(linear)
  np.testing.assert_allclose(s_lag.phi["layer"], s_hinge.phi["layer"], rtol=1e-6, atol=1e-7)
  # Not vacuous: the two lagrangian terms move phi differently.
  assert np.abs(np.asarray(s_lag.phi["layer"]) - np.asarray(s_lin.phi["layer"])).max() > 1e-3


def test_lagrangian_terms():
  lat = jnp.array([2.0, 4.0, 7.0])
  np.testing.assert_allclose(losses.latency_penalty(lat, 2.0, 4.0, "lagrangian"), 2.0 * lat / 4.0)
  np.testing.assert_allclose(losses.latency_penalty(lat, 2.0, 4.0, "lagrangian", "hinge"), [0.0, 0.0, 1.5])
  with pytest.raises(ConfigError, match="latency.lagrangian_term='relu' is not one of"):
    losses.latency_penalty(lat, 2.0, 4.0, "lagrangian", "relu")


def test_dual_ascent_step():
  # Violated (6 ms against 0.95 * 4): up by lr * (6 / 3.8 - 1); met: down, clipped at 0.
  np.testing.assert_allclose(losses.dual_ascent(1.0, jnp.array([5.0, 7.0]), 4.0, 0.5, 0.95),
                             1.0 + 0.5 * (6.0 / 3.8 - 1.0), rtol=1e-6)
  np.testing.assert_allclose(losses.dual_ascent(1.0, jnp.array([1.9]), 4.0, 0.5, 0.95), 0.75, rtol=1e-6)
  assert float(losses.dual_ascent(0.1, jnp.array([0.0]), 4.0, 0.5, 1.0)) == 0.0


@pytest.mark.parametrize("constraint", ["expected", "measured"])
def test_multiplier_rises_while_violated_and_the_search_settles_at_the_target(constraint):
  """On the toy, lambda grows while the estimate of E[lat] exceeds ratio * target; the search ends near it.

  The toy's accuracy term prefers the slow choices (alone, phi ends above 4 ms); random
  architectures average 4.3 ms, the fastest is 1.0 ms; the target is 3 ms.
  """
  target, ratio, lr = 3.0, 0.95, 0.1
  cfg = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=target,
                    latency_lambda_lr=lr, latency_damping=3.0, latency_ratio=ratio,
                    latency_constraint=constraint)
  state, history = _run(cfg, steps=200, tx_phi=optax.adam(0.05))
  lams = np.array([h["latency_lambda"] for h in history])
  seen = np.array([h["expected" if constraint == "expected" else "lat"] for h in history])
  # Every step is the dual-ascent step on that step's estimate (control's E[lat] or the samples' mean) ...
  np.testing.assert_allclose(lams[1:], np.maximum(0.0, lams[:-1] + lr * (seen[:-1] / (ratio * target) - 1.0)),
                             rtol=1e-4, atol=1e-5)
  # ... and the coefficient adds the damping term on the previous step's violation.
  coef = np.array([h["latency_coefficient"] for h in history])
  np.testing.assert_allclose(coef[1:], np.maximum(0.0, lams[1:] + 3.0 * (seen[:-1] / (ratio * target) - 1.0)),
                             rtol=1e-4, atol=1e-5)
  assert lams[10] > 0.2                          # violated at the start: lambda rose
  final = _expected(state.phi)
  if constraint == "expected":
    assert 0.85 * target < final <= 1.02 * target, final
  else:
    # The samples' mean is noisy (8 a step), and the damping term passes its noise on:
    # the constraint is met, with more undershoot (seen: 0.73 of the target).
    assert final <= 1.02 * target, final
  # Without the multiplier the toy's accuracy objective alone stays above the target.
  free = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=target,
                     latency_lambda_lr=0.0, latency_damping=0.0)
  state_free, _ = _run(free, steps=200, tx_phi=optax.adam(0.05))
  assert _expected(state_free.phi) > 1.2 * target, _expected(state_free.phi)


def test_multiplier_survives_a_checkpoint_and_the_resumed_steps_are_exact(tmp_path):
  """Save after 3 steps (orbax, as the loop does), restore into a fresh state, re-apply the config's
  settings (as the loop does on resume: they must not touch lambda), 3 more steps: identical to 6 straight."""
  from unas_jax.utils import checkpoint as checkpoint_lib
  cfg = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=3.0,
                    latency_lambda_lr=0.5, latency_damping=3.0)
  mesh, state, step = _setup(cfg, optax.adam(0.05))
  fresh = state

  def advance(state, start, stop):
    for i in range(start, stop):
      x, y = toy_data(jax.random.key(i), 16)
      z = step_lib.global_architectures(cfg, state.key, state.step, state.phi, 8, 1)
      state, _ = step(state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
                      mesh_lib.put_global(control_fn(TABLE, z), mesh), TABLE)
    return state

  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # the step donates its input state
  straight = advance(copy(fresh), 0, 6)
  half = advance(copy(fresh), 0, 3)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(3, half, {"step": 3}, force=True)
  ckpt.wait()
  restored, meta, _ = checkpoint_lib.Checkpointer(str(tmp_path)).restore(copy(fresh))
  assert meta["step"] == 3 and float(restored.latency_lambda) == float(half.latency_lambda) > 0
  half_lambda = float(half.latency_lambda)
  restored = restored.replace(**mesh_lib.put_replicated(step_lib.latency_hparams(cfg), mesh))
  resumed = advance(restored, 3, 6)
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(straight.latency_lambda) != half_lambda  # lambda moved after the save: not vacuous


def test_multiplier_drops_to_zero_when_the_target_is_loose():
  cfg = step_config(latency_estimator="relax", latency_penalty="lagrangian", latency_target_ms=100.0,
                    latency_lambda_init=1.0, latency_lambda_lr=0.5)
  _, history = _run(cfg, steps=4)
  lams = [h["latency_lambda"] for h in history]
  assert lams[0] == 1.0 and lams[0] > lams[1] > lams[2] > 0 and lams[3] == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(target_ms=0.0), "target_ms"), (dict(target_ms=-5.0), "target_ms"),
    (dict(target_ms=5.0, lambda_lr=-1.0), "lambda_lr"),
    (dict(target_ms=5.0, ratio=1.5), "ratio")])
def test_bad_settings_are_config_errors(kwargs, match):
  """loop.validate, which every search build runs before loop.step_config, refuses them."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  from unas_jax.search import defaults, loop  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict({"batch_size": 8, "search": defaults.search_block(),
                                      "latency": defaults.latency_block()})
  config.latency.update(dict(enabled=True, estimator="relax", penalty="lagrangian", **kwargs))
  with pytest.raises(ConfigError, match=match):
    loop.validate(config)


# -- the proxyless_search job end to end (tiny supernet, phone table: deterministic latency)


def tiny_lut_config(scan_layers=False, **latency):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "proxyless_latency", os.path.join(os.path.dirname(__file__), "..", "configs", "proxyless_latency.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("quick_lut")
  config.batch_size = 4
  config.model.widths = "4,4,4,4,4,4,4,4,8"
  config.search.max_steps = 6
  config.search.init_epochs = 0
  config.log_every = 2
  config.checkpoint_every = 100
  config.latency.surrogate_archs = 300
  config.latency.penalty = "lagrangian"
  config.latency.target_ms = 60.0
  config.latency.lambda_lr = 0.5
  config.latency.damping = 1.0
  config.model.scan_layers = scan_layers
  for k, v in latency.items():
    config.latency[k] = v
  return config


@pytest.mark.slow
def test_lagrangian_search_resumes_exactly_and_reports_the_mode(tmp_path):
  import json
  from unas_jax.search import proxyless
  from unas_jax.utils import checkpoint as checkpoint_lib
  straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
  # The stages' repeated layers scanned (model.scan_layers): this test was CI's critical path, and
  # each of its three runs compiles or loads the whole 21-layer search step. The unrolled
  # step computes the same (tests/test_proxyless_network.py::test_scanned_layers_equal_unrolled_layers)
  # and is lowered for cpu, cuda and tpu (tests/test_lowering.py).
  scanned = lambda: tiny_lut_config(scan_layers=True)
  summary = proxyless.run(scanned(), str(straight))
  config = scanned()
  config.search.stop_at_step = 3
  assert proxyless.run(config, str(interrupted)) == {"stopped_at": 3}
  resumed = proxyless.run(scanned(), str(interrupted))
  a, _ = checkpoint_lib.Checkpointer(str(straight)).read()
  b, _ = checkpoint_lib.Checkpointer(str(interrupted)).read()
  for name in ("latency_lambda", "latency_violation", "step"):
    np.testing.assert_array_equal(a[name], b[name])
  for x, y in zip(jax.tree.leaves(a["phi"]), jax.tree.leaves(b["phi"])):
    np.testing.assert_array_equal(x, y)
  # Not vacuous: the multiplier moved (random architectures cost ~114 ms on the phone, target 60).
  assert float(a["latency_lambda"]) > 0.5
  # The found architecture's latency against the target, in summary.json and latency.json.
  report = summary["latency"]
  assert report == resumed["latency"]
  assert set(report) >= {"measured_ms", "target_ms", "ratio", "meets_target", "multiplier"}
  np.testing.assert_allclose(report["ratio"], report["measured_ms"] / 60.0)
  assert report["meets_target"] == (report["measured_ms"] <= 60.0)
  on_disk = json.load(open(straight / "genotype" / "latency.json"))
  assert on_disk["ratio"] == report["ratio"] and on_disk["penalty"] == "lagrangian"
  history = [json.loads(l) for l in open(straight / "history.jsonl")]
  assert all("latency_lambda" in r and "latency_expected_ms" in r for r in history if r.get("phase") == "search")


@pytest.mark.parametrize("penalty", ["lagrangian", "hinge"])
@pytest.mark.parametrize("target,match", [(0.0, "must be positive"), (-3.0, "must be positive"),
                                          (5.0, "below the smallest reachable latency")])
def test_unreachable_or_non_positive_target_is_a_one_line_error(tmp_path, penalty, target, match):
  from unas_jax.search import proxyless
  with pytest.raises(ConfigError, match=match) as info:
    proxyless.run(tiny_lut_config(penalty=penalty, target_ms=target), str(tmp_path))
  assert "\n" not in str(info.value)
