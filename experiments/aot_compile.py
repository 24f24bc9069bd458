r"""Ahead-of-time check of a launch: lower and compile the steps for a mesh, print their memory.

    # The DARTS CIFAR-10 search step for 8 devices, on this machine's CPU (simulated devices):
    python experiments/aot_compile.py --config=configs/darts_cifar10.py --devices=8
    # The training step of the evaluation network, on the real devices of this host:
    python experiments/aot_compile.py --config=configs/darts_cifar10_eval.py --devices=0

Nothing is run and no data is read for cifar10/cifar100/imagenet2012 (shapes only:
``jax.ShapeDtypeStruct`` arguments with the mesh's shardings, ``jit(...).lower(...).compile()``).
For each step it prints the compile time and XLA's ``compiled.memory_analysis()`` per device:
arguments, outputs, aliased (donated) bytes, temporaries, generated code, and their sum less the
aliases, an estimate of the peak; ``cost_analysis()`` FLOPs when the backend reports them.

``--devices=N`` (N > 0) simulates N CPU devices (``--xla_force_host_platform_device_count``,
set before JAX starts): the program is the per-device SPMD program of an N-device mesh, so the
figures show how memory scales with the per-device batch, but they are XLA:CPU's buffer
assignment, a guide for GPU/TPU rather than their exact figure. ``--devices=0`` compiles for the
devices JAX finds (run it on one GPU/TPU host with ``--config.mesh.num_devices`` and the
per-device batch of the planned launch). Schedules need a step count, which this script fixes to
1000 (it changes no shape). Supported jobs: ``darts_search`` (search and warm-up steps) and
``evaluate`` (training step).
"""
import os
import sys


def _devices_from_argv(argv) -> int:
  for i, arg in enumerate(argv):
    if arg.startswith("--devices="):
      return int(arg.split("=", 1)[1])
    if arg == "--devices" and i + 1 < len(argv):
      return int(argv[i + 1])
  return 0


if __name__ == "__main__":
  # Before JAX is imported: the simulated device count is read once, at backend start-up.
  _n = _devices_from_argv(sys.argv)
  if _n > 0:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={_n}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from unas_jax.errors import UnasError  # noqa: E402
from unas_jax.nn import functional  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/darts_cifar10.py:quick", "experiment config")
_DEVICES = flags.DEFINE_integer("devices", 0, "simulated CPU devices (0: the devices JAX finds)")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")

SCHEDULE_STEPS = 1000
FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
          "generated_code_size_in_bytes")


def _abstract(tree, sharding):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x), sharding=sharding), tree)


def _info(config):
  from unas_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  from unas_jax.evaluation import run as eval_run  # pylint: disable=import-outside-toplevel
  return eval_run.nominal_info(config.data) or data_lib.load(config.data).info


def _batch(info, global_batch, mesh):
  sharding = mesh_lib.batch_sharded(mesh)
  return (jax.ShapeDtypeStruct((global_batch, *info.image_shape), jnp.float32, sharding=sharding),
          jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=sharding))


def search_steps(config, mesh):
  """``{name: (jitted step, abstract args)}`` of the DARTS search (as ``loop.setup_search`` builds them)."""
  from unas_jax.search import darts, loop  # pylint: disable=import-outside-toplevel
  from unas_jax.search import step as step_lib  # pylint: disable=import-outside-toplevel
  loop.validate(config)
  info, space, cfg, s = _info(config), darts.DartsSearchSpace(config), loop.step_config(config), config.search
  global_batch = config.batch_size
  mesh_lib.check_batch(global_batch, mesh)
  model = space.build_supernet(config, info, mesh_lib.DATA_AXIS if s.bn == "sync" else None)
  model_def, phi_state, w, stats = functional.split(model)
  search_model = step_lib.SearchModel(model_def, arch_penalty_fn=space.arch_penalty_fn)
  tx_w, tx_phi, w_schedule, phi_schedule = step_lib.make_optimizers(s, global_batch, SCHEDULE_STEPS)
  state = jax.eval_shape(lambda: step_lib.init_state(config.seed, space.phi_from_state(phi_state), w, stats,
                                                     tx_w, tx_phi, cfg, eta=s.eta))
  state = _abstract(state, mesh_lib.replicated(mesh))
  n = step_lib.num_global_samples(cfg, global_batch, mesh.devices.size)
  latency = jax.ShapeDtypeStruct((n,), jnp.float32, sharding=(
      mesh_lib.replicated(mesh) if cfg.sampling == "shared" else mesh_lib.batch_sharded(mesh)))
  control = jax.ShapeDtypeStruct((), jnp.float32, sharding=mesh_lib.replicated(mesh))
  batch = _batch(info, global_batch, mesh)
  return {
      "search": (step_lib.make_search_step(search_model, tx_w, tx_phi, cfg, mesh, global_batch, w_schedule,
                                           phi_schedule), (state, batch, batch, latency, control)),
      "warmup": (step_lib.make_warmup_step(search_model, tx_w, cfg, mesh, global_batch, w_schedule),
                 (state, batch)),
  }


def train_steps(config, mesh):
  """``{'train': (jitted step, abstract args)}`` of the ``evaluate`` job (as ``run_training`` builds it)."""
  from unas_jax.evaluation import networks, trainer  # pylint: disable=import-outside-toplevel
  from unas_jax.evaluation import run as eval_run  # pylint: disable=import-outside-toplevel
  from unas_jax.parallel import batchnorm  # pylint: disable=import-outside-toplevel
  eval_run.check_config(config)
  t, info = config.train, _info(config)
  global_batch = config.batch_size
  mesh_lib.check_batch(global_batch, mesh)
  module = networks.from_config(config.model, seed=config.seed).abstract(info)
  batchnorm.apply_mode(module, t.get("bn", "local"), mesh_lib.DATA_AXIS, "train.bn")
  model_def, _, w, stats = functional.split(module)
  decay_mask = trainer.weight_decay_mask(module, w) if t.get("no_decay_bn", False) else None
  steps_per_epoch = max(1, SCHEDULE_STEPS // max(1, int(t.epochs)))
  tx, schedule, total_steps = trainer.make_optimizer(t, global_batch, steps_per_epoch, decay_mask)
  cfg = trainer.TrainConfig(label_smoothing=t.label_smoothing,
                            aux_weight=t.aux_weight if config.model.get("auxiliary", False) else 0.0,
                            drop_path=t.drop_path, total_steps=total_steps, ema_decay=t.ema_decay)
  state = _abstract(jax.eval_shape(lambda: trainer.init_state(config.seed, w, stats, tx)), mesh_lib.replicated(mesh))
  return {"train": (trainer.make_train_step(model_def, tx, cfg, mesh, schedule), (state, _batch(info, global_batch,
                                                                                                mesh)))}


def analyse(name, step, args) -> dict:
  t0 = time.perf_counter()
  lowered = step.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  row = {"step": name, "lower_s": t1 - t0, "compile_s": t2 - t1}
  try:
    memory = compiled.memory_analysis()
  except (NotImplementedError, AttributeError, RuntimeError) as e:  # some backends do not implement it
    memory, row["memory_error"] = None, f"{type(e).__name__}: {e}"
  if memory is None:
    row.setdefault("memory_error", "this backend reports no memory analysis (compiled.memory_analysis() is None)")
  else:
    for field in FIELDS:
      row[field] = int(getattr(memory, field, 0) or 0)
    row["estimated_peak_bytes"] = (row["argument_size_in_bytes"] + row["output_size_in_bytes"] -
                                   row["alias_size_in_bytes"] + row["temp_size_in_bytes"] +
                                   row["generated_code_size_in_bytes"])
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and cost.get("flops") is not None:
      row["gflops_per_device"] = float(cost["flops"]) / 1e9
  except Exception:  # pylint: disable=broad-except  # cost analysis is optional everywhere
    pass
  return row


def _mib(n: int) -> str:
  return f"{n / 2**20:10.1f}"


def main(argv):
  del argv
  config = _CONFIG.value
  try:
    mesh = mesh_lib.make_mesh(config.mesh.num_devices)
    job = config.get("job")
    if job == "darts_search":
      steps = search_steps(config, mesh)
    elif job == "evaluate":
      steps = train_steps(config, mesh)
    else:
      raise UnasError(f"config.job={job!r}: aot_compile.py supports darts_search and evaluate")
  except UnasError as e:
    print(f"aot_compile: error: {e}", file=sys.stderr)
    sys.exit(2)
  device = jax.devices()[0]
  n = mesh.devices.size
  print(f"{job}: global batch {config.batch_size} on a {n}-device '{mesh_lib.DATA_AXIS}' mesh "
        f"({config.batch_size // n} per device), {device.platform} ({device.device_kind}), jax {jax.__version__}")
  rows = [analyse(name, step, args) for name, (step, args) in steps.items()]
  print(f"{'step':8s} {'lower s':>8s} {'compile s':>10s} {'args MiB':>10s} {'out MiB':>10s} {'alias MiB':>10s} "
        f"{'temp MiB':>10s} {'code MiB':>10s} {'peak~ MiB':>10s} {'GFLOP':>8s}")
  for r in rows:
    if "memory_error" in r:
      mem = f"  memory_analysis unavailable: {r['memory_error']}"
    else:
      mem = " ".join(_mib(r[f]) for f in FIELDS) + " " + _mib(r["estimated_peak_bytes"])
    flops = f" {r['gflops_per_device']:8.2f}" if "gflops_per_device" in r else ""
    print(f"{r['step']:8s} {r['lower_s']:8.1f} {r['compile_s']:10.1f} {mem}{flops}")
  print("Figures are per device (one SPMD program per device); peak~ = args + outputs - aliases + temp + code.")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"job": job, "devices": n, "platform": device.platform, "global_batch": config.batch_size,
                 "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
