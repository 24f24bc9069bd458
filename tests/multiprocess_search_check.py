"""One process of a multi-process toy search (run by tests/test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python multiprocess_search_check.py \
        OUT.json [COORDINATOR NUM_PROCESSES PROCESS_ID [MODE [WORKDIR]]]

MODE ``toy`` (the default) is described below; ``lut`` and ``probe`` run the
``proxyless_search`` job itself (:func:`unas_jax.search.loop.run_search`, a tiny
``configs/proxyless_latency.py:quick``) with a latency table written for the test, or
with the probe timing on a device each process reserves outside the mesh, in WORKDIR
(shared by the processes, as a pod's bucket is). They write what every process fed the
steps: each step's latency inputs, the surrogate, and phi at every step, as hex bytes.

Mode ``toy``:
Starts JAX's distributed runtime through :func:`unas_jax.parallel.distributed.initialize`
(gloo CPU collectives over loopback) when a coordinator is given, builds one ``data`` mesh
over every device of every process, and runs a few REBAR+RELAX search steps of the toy
supernet with synchronised BatchNorm on a fixed global batch, of which this process reads
only its own rows. Writes phi, a checksum of w and the device layout to OUT.json.
"""
import faulthandler
import json
import os
import signal
import sys

# tests/test_parallel.py sends SIGUSR1 before it kills a process that hangs: every thread's stack.
faulthandler.register(signal.SIGUSR1, all_threads=True)
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

from search_toys import ToySupernet, step_config, toy_data  # noqa: E402
from unas_jax.nn import functional  # noqa: E402
from unas_jax.parallel import distributed  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.search import step as step_lib  # noqa: E402

BATCH, STEPS = 16, 3


def _hex(x) -> str:
  return np.asarray(x).tobytes().hex()


def _tiny_lut(path, widths, resolution, num_classes) -> None:
  """A complete ProxylessNAS-format table for ``widths`` with seeded random block latencies."""
  import yaml  # pylint: disable=import-outside-toplevel
  from unas_jax.latency.lut import LatencyLUT  # pylint: disable=import-outside-toplevel
  from unas_jax.spaces import proxyless as sp  # pylint: disable=import-outside-toplevel
  lut = LatencyLUT({}, "empty")
  keys = set(lut.stem_keys(widths, resolution, num_classes))
  for spec, h in zip(sp.layer_specs(widths), sp.feature_sizes(resolution)):
    for op in sp.MBCONV_OPS:
      keys.add(lut.layer_key(spec, op, h))
  rng = np.random.default_rng(0)
  with open(path, "w") as f:
    yaml.safe_dump({k: {"mean": float(rng.uniform(0.5, 5.0)), "var": 0.1, "count": 10} for k in sorted(keys)}, f)


class ToyProxylessSupernet(nnx.Module):
  """The ProxylessNAS space's phi over a network that compiles in seconds (the real supernet's
  search step takes minutes to compile here): logits of the mean-pooled image, plus a learned
  offset per layer choice, ``h = W mean(x) + sum_l arch_l C_l``."""

  def __init__(self, channels, num_classes, *, rngs, phi_init_scale=0.0):
    from unas_jax.nn.functional import ArchParam  # pylint: disable=import-outside-toplevel
    from unas_jax.spaces import proxyless as sp  # pylint: disable=import-outside-toplevel
    phi = sp.init_phi(rngs.params() if phi_init_scale else None, phi_init_scale)
    for name, value in phi.items():
      setattr(self, name, ArchParam(value))
    self.names = tuple(sp.LAYER_NAMES)
    self.head = nnx.Linear(channels, num_classes, rngs=rngs)
    self.choices = nnx.data({name: nnx.Param(0.1 * jax.random.normal(rngs.params(), (phi[name].shape[-1], num_classes)))
                             for name in self.names})

  def __call__(self, x, arch, *, train, key=None):
    h = self.head(jnp.mean(x, (1, 2)))
    for name in self.names:
      h = h + jnp.repeat(arch[name], x.shape[0] // arch[name].shape[0], axis=0) @ self.choices[name][...]
    return h


def latency_search(source, workdir):
  """Runs the tiny latency search; returns what this process fed the steps."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  from unas_jax.search import loop  # pylint: disable=import-outside-toplevel
  from unas_jax.latency import proxyless_source  # pylint: disable=import-outside-toplevel
  from unas_jax.search import proxyless  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location("proxyless_latency", os.path.join(root, "configs",
                                                                                  "proxyless_latency.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("quick")
  config.data.image_size = 16
  config.batch_size = 8
  config.model.widths = "8,8,8,8,8,8,8,8,16"
  config.model.depthwise_impl = "xla"
  config.search.max_steps = 3
  config.log_every = 1
  config.checkpoint_every = 100
  lc = config.latency
  lc.penalty = "linear"          # every step's latency reaches phi
  lc.c = 1.0
  lc.warmup_steps = 1
  lc.resolution = 16
  lc.surrogate_archs = 40 if source == "lut" else 5   # each probe measurement is a compile: the fewest validation allows
  if source == "lut":
    lc.source = "lut"
    lc.lut_path = os.path.join(workdir, "tiny_lut.yaml")
    lc.widths = ""
    lc.lut_num_classes = 10
    lc.refit_every = 2           # process 0 refits from the search's measurements; the others receive it
    if jax.process_index() == 0:
      _tiny_lut(lc.lut_path, [8, 8, 8, 8, 8, 8, 8, 8, 16], 16, 10)
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices("lut written")
  else:
    lc.source = "probe"
    lc.reserve_device = True     # each process times on its own device, outside the mesh
    config.search.sampling = "shared"  # one architecture (one compile and timing) per step
    lc.batch_size = 2
    lc.num_runs = 3
    lc.num_warmup = 1
    lc.rounds = 1
  record = {"latency_inputs": [], "surrogates": [], "phi": []}
  original_measure = proxyless_source.ProxylessLatency.measure
  original_after = proxyless_source.ProxylessLatency.after_step
  hooks = {}

  def measure(self, z):
    hooks["latency"] = self
    values = original_measure(self, z)
    record["latency_inputs"].append(_hex(np.asarray(values, np.float64)))
    record["surrogates"].append(_hex(self.surrogate.coef) + ":" + _hex(self.surrogate.bias))
    return values

  def after_step(self, step, phi):
    out = original_after(self, step, phi)
    record["phi"].append(_hex(np.concatenate([np.asarray(phi[k], np.float32).ravel() for k in sorted(phi)])))
    record["surrogates"].append(_hex(self.surrogate.coef) + ":" + _hex(self.surrogate.bias))
    return out

  proxyless_source.ProxylessLatency.measure, proxyless_source.ProxylessLatency.after_step = measure, after_step

  class ToySpace(proxyless.ProxylessSearchSpace):
    def build_supernet(self, config, info, bn_axis_name):
      return ToyProxylessSupernet(info.image_shape[-1], info.num_classes, rngs=nnx.Rngs(params=config.seed),
                                  phi_init_scale=config.search.phi_init_scale)

  setup_mesh = {}
  original_setup = loop.setup_search

  def setup_search(*args, **kwargs):
    setup = original_setup(*args, **kwargs)
    setup_mesh["devices"] = [d.id for d in setup.mesh.devices.flat]
    return setup

  loop.setup_search = setup_search
  space_ = ToySpace(config)
  try:
    loop.run_search(config, workdir, space_)
  finally:
    if space_.latency is not None:
      space_.latency.close()
  latency = hooks["latency"]
  record.update(mesh_devices=setup_mesh["devices"], measured_here=latency.probe is not None or latency.table is not None,
                timing_device=None if latency.timing_device is None else latency.timing_device.id,
                surrogate=_hex(latency.surrogate.coef) + ":" + _hex(latency.surrogate.bias))
  return record


def main(out_path, coordinator=None, num_processes=None, process_id=None, mode="toy", workdir=None):
  coordinator, num_processes, process_id = (v or None for v in (coordinator, num_processes, process_id))
  if mode != "toy" and coordinator:
    # The latency runs compile for minutes on a loaded machine: JAX's default 100 s heartbeat
    # timeout killed both processes here (DEADLINE_EXCEEDED) with the CPUs oversubscribed.
    jax.distributed.initialize(coordinator, int(num_processes), int(process_id), heartbeat_timeout_seconds=1800)
    how = f"process {process_id} of {num_processes} (coordinator {coordinator})"
  else:
    how = distributed.initialize(coordinator, None if num_processes is None else int(num_processes),
                                 None if process_id is None else int(process_id))
  if mode != "toy":
    # Process-dependent float64 input, -0.0 included: only process 0's bits may come back.
    sent = distributed.broadcast_from_main({"x": np.array([1 / 3 + jax.process_index(), -0.0]),
                                            "n": np.int64(2 ** 40 + jax.process_index())})
    result = {"how": how, "process": jax.process_index(), "processes": jax.process_count(),
              "devices": jax.device_count(), "local_devices": [d.id for d in jax.local_devices()],
              "broadcast": _hex(sent["x"]) + ":" + _hex(sent["n"]) + ":" + str(sent["x"].dtype),
              **latency_search(mode, workdir)}
    with open(out_path, "w") as f:
      json.dump(result, f)
    if jax.process_count() > 1:
      jax.distributed.shutdown()
    return
  mesh = mesh_lib.make_mesh(0)
  n_dev, p, n_proc = mesh.devices.size, jax.process_index(), jax.process_count()
  local = BATCH // n_proc
  rows = slice(p * local, (p + 1) * local)  # this process's rows of each global batch

  model_def, phi, w, stats = functional.split(ToySupernet(bn_axis_name=mesh_lib.DATA_AXIS, rngs=nnx.Rngs(0)))
  control_fn = lambda c, arch: jnp.sum(arch["layer"] * c, (1, 2))  # noqa: E731
  model = step_lib.SearchModel(model_def, control_fn=control_fn)
  tx_w, tx_phi = optax.adam(1e-2), optax.adam(1e-2)
  cfg = step_config(estimator="rebar", latency_estimator="relax", latency_target_ms=1.0)
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
    jax.block_until_ready(state)  # keeps XLA:CPU collectives from piling up (docs/engineering.md section 2)
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
