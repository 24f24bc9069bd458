"""The search step returns a state of exactly the input's types, so it compiles once.

A state leaf whose dtype changes across a step (e.g. an int32 counter averaged by
``pmean`` into float32) makes the second call a cache miss: a second full compile,
minutes on CPU for a real supernet.
"""
import contextlib
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from search_toys import ToySupernet, step_config, toy_data, toy_search_step  # noqa: E402

from unas_jax.nn import functional  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.search import step as step_lib  # noqa: E402


@contextlib.contextmanager
def _count_lowerings(name):
  """Counts jaxpr-to-MLIR lowerings of functions whose name contains ``name``.

  A lowering happens on every in-memory cache miss (even when the persistent
  compilation cache then supplies the executable), so this counts what a second
  multi-minute compile would cost. Public ``jax.monitoring`` events, unlike the
  private ``_cache_size`` of a jitted function (0 when its C++ fast path was not used).
  """
  seen = []

  def listener(event, duration, **kwargs):
    del duration
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" and name in kwargs.get("fun_name", ""):
      seen.append(kwargs["fun_name"])

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _types(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", False)), tree)


@pytest.mark.parametrize("estimator,baseline", [("reinforce", "moving_average"), ("reinforce", "constant"),
                                                ("rebar", "moving_average")])
def test_state_types_survive_a_step_and_step_compiles_once(estimator, baseline):
  mesh, state, step = toy_search_step(step_config(estimator=estimator, baseline=baseline))
  before = _types(state)
  with _count_lowerings("jit(per_device)") as lowered:
    for i in range(2):
      x, y = toy_data(jax.random.key(i), 16)
      state, _ = step(state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
                      mesh_lib.put_global(jnp.zeros(8), mesh), jnp.zeros(()))
      assert _types(state) == before
  assert len(lowered) == 1, f"the search step was lowered {len(lowered)} times in two calls: {lowered}"


def test_lowering_counter_sees_a_recompile():
  """Negative control for the counter above: a dtype change is a second lowering."""

  @jax.jit
  def per_device_toy(x):
    return x + 1

  with _count_lowerings("per_device_toy") as lowered:
    per_device_toy(jnp.zeros(3, jnp.float32))
    per_device_toy(jnp.ones(3, jnp.float32))
    assert len(lowered) == 1
    per_device_toy(jnp.zeros(3, jnp.int32))
  assert len(lowered) == 2


def test_latency_target_and_c_are_inputs_one_program_for_a_sweep():
  """Searches that differ only in latency target / c lower to the same program, and each reads its own values.

  The same program text is the same key in the persistent compilation cache: a sweep over
  targets (or the unconstrained c = 0 control) compiles the search step once.
  """
  mesh = mesh_lib.make_mesh(1)
  model_def, phi, w, stats = functional.split(ToySupernet(rngs=nnx.Rngs(0)))
  control_fn = lambda c, arch: jnp.sum(arch["layer"] * c, (1, 2))  # linear "latency" in ms
  model = step_lib.SearchModel(model_def, control_fn=control_fn)
  tx_w, tx_phi = optax.sgd(1e-2), optax.sgd(1.0)
  control = jnp.array([[1.0, 5.0, 0.0], [2.0, 4.0, 0.0]])
  x, y = toy_data(jax.random.key(0), 16)
  new_phi, programs = {}, set()
  for target, c in [(0.0, 1.0), (100.0, 1.0), (0.0, 0.0)]:
    cfg = step_config(estimator="rebar", latency_estimator="relax", latency_target_ms=target, latency_c=c)
    state = mesh_lib.put_replicated(step_lib.init_state(0, phi["phi"], w, stats, tx_w, tx_phi, cfg), mesh)
    step = step_lib.make_search_step(model, tx_w, tx_phi, cfg, mesh, 8)
    z = step_lib.global_architectures(cfg, state.key, state.step, state.phi, 8, 1)
    args = (state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
            mesh_lib.put_global(control_fn(control, z), mesh), control)
    programs.add(step.lower(*args).as_text())
    state, metrics = step(*args)
    new_phi[(target, c)] = jax.device_get(state.phi["layer"])
    assert float(metrics["latency_c"]) == c
  # Target 100 ms is never exceeded (latencies here are <= 9 ms): the hinge is off, as with c = 0.
  np.testing.assert_allclose(new_phi[(100.0, 1.0)], new_phi[(0.0, 0.0)], rtol=1e-6, atol=1e-7)
  assert np.abs(new_phi[(0.0, 1.0)] - new_phi[(0.0, 0.0)]).max() > 1e-3
  assert len(programs) == 1, "latency target / c changed the compiled program"


def test_step_key_streams_keep_their_tags():
  """The named streams are ``fold_in(fold_in(key, step), tag)`` with tags arch 0, dropout 1,
  warmup_dropout 2: renaming or reordering them must not change any run's random numbers."""
  state_key = jax.random.key_data(jax.random.key(3))
  keys = step_lib.step_keys(state_key, jnp.int32(7))
  step_key = jax.random.fold_in(jax.random.key(3), 7)
  for tag, key in enumerate([keys.arch, keys.dropout, keys.warmup_dropout]):
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.fold_in(step_key, tag)))


def test_eta_lr_reaches_the_eta_update():
  """learn_eta: eta moves by Adam's first step, ``eta_lr * sign(d||g||^2/d eta)``, at the configured rate."""
  moved = {}
  for eta_lr in (1e-3, 1e-2):
    mesh, state, step = toy_search_step(step_config(estimator="rebar", learn_eta=True, eta_lr=eta_lr))
    x, y = toy_data(jax.random.key(0), 16)
    eta = float(state.eta)  # before the step, which donates the state
    new, _ = step(state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
                  mesh_lib.put_global(jnp.zeros(8), mesh), jnp.zeros(()))
    moved[eta_lr] = abs(float(new.eta) - eta)
  np.testing.assert_allclose(moved[1e-3], 1e-3, rtol=1e-3)
  np.testing.assert_allclose(moved[1e-2], 1e-2, rtol=1e-3)
