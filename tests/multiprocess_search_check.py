"""One process of a multi-process toy search (run by tests/test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python multiprocess_search_check.py \
        OUT.json [COORDINATOR NUM_PROCESSES PROCESS_ID]

Starts JAX's distributed runtime through :func:`unas_jax.parallel.distributed.initialize`
(gloo CPU collectives over loopback) when a coordinator is given, builds one ``data`` mesh
over every device of every process, and runs a few REBAR+RELAX search steps of the toy
supernet with synchronised BatchNorm on a fixed global batch, of which this process reads
only its own rows. Writes phi, a checksum of w and the device layout to OUT.json.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

if "jax_cpu_collectives_implementation" in jax.config.values:
  # gloo is the default in jax 0.10-0.12; explicit so that a changed default cannot break the test.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from search_toys import ToySupernet, toy_data  # noqa: E402
from unas_jax.nn import functional  # noqa: E402
from unas_jax.parallel import distributed  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.search import step as step_lib  # noqa: E402

BATCH, STEPS = 16, 3


def main(out_path, coordinator=None, num_processes=None, process_id=None):
  how = distributed.initialize(coordinator, None if num_processes is None else int(num_processes),
                               None if process_id is None else int(process_id))
  mesh = mesh_lib.make_mesh(0)
  n_dev, p, n_proc = mesh.devices.size, jax.process_index(), jax.process_count()
  local = BATCH // n_proc
  rows = slice(p * local, (p + 1) * local)  # this process's rows of each global batch

  model_def, phi, w, stats = functional.split(ToySupernet(bn_axis_name=mesh_lib.DATA_AXIS, rngs=nnx.Rngs(0)))
  control_fn = lambda c, arch: jnp.sum(arch["layer"] * c, (1, 2))  # noqa: E731
  model = step_lib.SearchModel(model_def, control_fn=control_fn)
  tx_w, tx_phi = optax.adam(1e-2), optax.adam(1e-2)
  cfg = step_lib.StepConfig(estimator="rebar", latency_estimator="relax", latency_target_ms=1.0)
  state = mesh_lib.put_replicated(step_lib.init_state(0, phi["phi"], w, stats, tx_w, tx_phi, cfg), mesh)
  step = step_lib.make_search_step(model, tx_w, tx_phi, cfg, mesh, BATCH)
  control = mesh_lib.put_replicated(np.array([1.0, 2.0, 0.0], np.float32), mesh)
  for i in range(STEPS):
    x, y = jax.device_get(toy_data(jax.random.key(i), 2 * BATCH))
    x_t, y_t, x_v, y_v = x[:BATCH], y[:BATCH], x[BATCH:], y[BATCH:]
    # Phase one of the latency term on the host: every process draws all global samples.
    z = jax.device_get(step_lib.global_architectures(cfg, state.key, state.step, state.phi, BATCH, n_dev))
    latency = np.asarray(control_fn(np.array([1.0, 2.0, 0.0], np.float32), z))
    state, metrics = step(state, mesh_lib.put_batch((x_t[rows], y_t[rows]), mesh),
                          mesh_lib.put_batch((x_v[rows], y_v[rows]), mesh), mesh_lib.put_global(latency, mesh),
                          control)
    jax.block_until_ready(state)  # keeps XLA:CPU collectives from piling up (STYLE.md)
  phi_host = jax.device_get(state.phi)
  w_host = jax.device_get(state.w)
  result = {"how": how, "process": p, "processes": n_proc, "devices": n_dev,
            "local_devices": [d.id for d in jax.local_devices()],
            "mesh_devices": [d.id for d in mesh.devices.flat],
            "phi": np.asarray(phi_host["layer"]).tolist(),
            "w_sum": float(sum(np.abs(np.asarray(v, np.float64)).sum() for v in jax.tree.leaves(w_host))),
            "objective": float(metrics["objective"])}
  with open(out_path, "w") as f:
    json.dump(result, f)
  if n_proc > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])
