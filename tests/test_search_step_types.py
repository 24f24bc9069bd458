"""The search step returns a state of exactly the input's types, so it compiles once.

A state leaf whose dtype changes across a step (e.g. an int32 counter averaged by
``pmean`` into float32) makes the second call a cache miss: a second full compile,
minutes on CPU for a real supernet.
"""
import os
import sys

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from search_toys import ToySupernet, toy_data  # noqa: E402

from unas_jax.nn import functional  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.search import step as step_lib  # noqa: E402


def _types(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", False)), tree)


@pytest.mark.parametrize("estimator,baseline", [("reinforce", "moving_average"), ("reinforce", "constant"),
                                                ("rebar", "moving_average")])
def test_state_types_survive_a_step_and_step_compiles_once(estimator, baseline):
  mesh = mesh_lib.make_mesh(1)
  model_def, phi, w, stats = functional.split(ToySupernet(rngs=nnx.Rngs(0)))
  model = step_lib.SearchModel(model_def)
  tx_w, tx_phi = optax.adam(1e-2), optax.adam(1e-2)
  cfg = step_lib.StepConfig(estimator=estimator, baseline=baseline)
  state = mesh_lib.put_replicated(step_lib.init_state(0, phi["phi"], w, stats, tx_w, tx_phi, cfg), mesh)
  step = step_lib.make_search_step(model, tx_w, tx_phi, cfg, mesh, 8)
  before = _types(state)
  for i in range(2):
    x, y = toy_data(jax.random.key(i), 16)
    state, _ = step(state, mesh_lib.put_batch((x[:8], y[:8]), mesh), mesh_lib.put_batch((x[8:], y[8:]), mesh),
                    mesh_lib.put_global(jnp.zeros(8), mesh), jnp.zeros(()))
    assert _types(state) == before
  assert step._cache_size() == 1
