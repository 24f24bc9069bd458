"""Run in a subprocess with 8 simulated CPU devices: toy search steps on 1 vs 8 devices.

Prints one JSON line with the largest phi/w differences per estimator.
"""
import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from search_toys import ToySupernet, step_config, toy_data  # noqa: E402
from unas_jax.nn import functional  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.search import step as step_lib  # noqa: E402


def run(num_devices, estimator, latency, steps=3, batch=16, bn_axis_name="data"):
  mesh = mesh_lib.make_mesh(num_devices)
  model_def, phi, w, stats = functional.split(ToySupernet(bn_axis_name=bn_axis_name, rngs=nnx.Rngs(0)))
  control_fn = lambda c, arch: jnp.sum(arch["layer"] * c, (1, 2))
  model = step_lib.SearchModel(model_def, control_fn=control_fn)
  tx_w, tx_phi = optax.adam(1e-2), optax.adam(1e-2)
  cfg = step_config(estimator=estimator, latency_estimator=latency, latency_target_ms=1.0,
                    baseline="moving_average")
  state = mesh_lib.put_replicated(step_lib.init_state(0, phi["phi"], w, stats, tx_w, tx_phi, cfg), mesh)
  step = step_lib.make_search_step(model, tx_w, tx_phi, cfg, mesh, batch)
  control = jnp.array([1.0, 2.0, 0.0])
  for i in range(steps):
    x, y = toy_data(jax.random.key(i), 2 * batch)
    z = step_lib.global_architectures(cfg, state.key, state.step, state.phi, batch, num_devices)
    latency = control_fn(control, z)
    latency_spec = mesh_lib.put_batch(latency, mesh)
    state, _ = step(state, mesh_lib.put_batch((x[:batch], y[:batch]), mesh),
                    mesh_lib.put_batch((x[batch:], y[batch:]), mesh), latency_spec, control)
    jax.block_until_ready(state)
  return jax.device_get((state.phi, state.w, state.stats))


def main():
  assert jax.device_count() == 8, jax.devices()
  out = {}
  for estimator, latency in [("rebar", "relax"), ("gumbel_softmax", None), ("reinforce", None)]:
    one, eight = run(1, estimator, latency), run(8, estimator, latency)
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), one, eight)
    moved = float(jnp.max(jnp.abs(one[0]["layer"])))
    out[f"{estimator}+{latency}"] = {"phi": max(jax.tree.leaves(diffs[0])), "w": max(jax.tree.leaves(diffs[1])),
                                     "stats": max(jax.tree.leaves(diffs[2])), "phi_moved": moved}
  # Sensitivity: per-device BatchNorm statistics must change the result on 8 devices.
  one, eight = run(1, "rebar", None, bn_axis_name=None), run(8, "rebar", None, bn_axis_name=None)
  out["rebar_local_bn"] = {"w": max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                                                  one[1], eight[1])))}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
