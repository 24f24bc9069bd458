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
1000 (it changes no shape). The steps are the job's own (``unas_jax.utils.lowering.job_steps``:
``loop.build_search`` with abstract state, the trainer's steps): ``darts_search`` and
``proxyless_search`` (search, warm-up and eval steps) and ``evaluate`` (training and eval steps);
``--steps=search`` compiles only those named.

Rematerialisation at the paper's DARTS search config (8 cells, 16 channels, 64 images a device)::

    python experiments/aot_compile.py --config=configs/darts_cifar10.py --steps=search --config.model.remat=none
    python experiments/aot_compile.py --config=configs/darts_cifar10.py --steps=search --config.model.remat=cell
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

from unas_jax.errors import UnasError  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.utils import lowering  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/darts_cifar10.py:quick", "experiment config")
_DEVICES = flags.DEFINE_integer("devices", 0, "simulated CPU devices (0: the devices JAX finds)")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")
_STEPS = flags.DEFINE_list("steps", None, "compile only these steps (e.g. search); default: all")
FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
          "generated_code_size_in_bytes")


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
    # The job's own setup, from abstract shapes (unas_jax.utils.lowering.job_steps).
    steps = lowering.job_steps(config, mesh, probe=False)
    if _STEPS.value:
      unknown = set(_STEPS.value) - set(steps)
      if unknown:
        raise UnasError(f"--steps: {sorted(unknown)} not among this job's steps {sorted(steps)}")
      steps = {k: v for k, v in steps.items() if k in _STEPS.value}
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
