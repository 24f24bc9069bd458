r"""The accelerator check to run when a GPU is lent (``experiments/device_check.sh``): one table.

    PYTHONPATH=. python experiments/device_check.py            # on the GPU host (at most ~8 minutes)
    PYTHONPATH=. python experiments/device_check.py --tiny     # tiny sizes: checks the script on a CPU

Cases (each: the job's own setup, ``unas_jax.search.loop.build_search``, concrete state, random
batches of the right shape; compiled ahead of time, then timed):

* ``darts_f32`` / ``darts_bf16``: the DARTS search step at the paper's config (8 cells, 16 channels,
  64 images per device, 32x32, 7 ops, REBAR, L_gen), ``model.dtype`` float32 / bfloat16;
* ``proxyless_f32`` / ``proxyless_bf16``: the ProxylessNAS supernet search step at 224x224 (GPU widths,
  32 images per device, no latency term: the supernet's cost alone).

Columns: kernels the step was traced with, compile seconds, XLA's per-device memory (arguments,
temporaries, estimated peak), the median step time of ``--steps`` timed steps after two warm-up
steps (each synchronised with ``block_until_ready``), images per second, and the conditionals,
host callbacks and bf16/f32 convolutions in the lowered step (``unas_jax.utils.lowering``).
The probe's throughput is the latency developer's (issue 10, part B).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.nn import kernels as kernels_lib
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.utils import lowering

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name: str, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def cases(tiny: bool, num_devices: int) -> dict:
  """``{name: config}``; ``tiny`` shrinks every size so the script runs on a CPU in minutes."""
  out = {}
  for dtype in ("float32", "bfloat16"):
    c = _config("darts_cifar10")
    c.model.dtype = dtype
    c.batch_size = (4 if tiny else 64) * num_devices
    if tiny:
      c.model.update(cells=3, channels=4)
      c.data.image_size = 8
    short = "f32" if dtype == "float32" else "bf16"
    out[f"darts_{short}"] = c
    p = _config("proxyless_latency")
    p.model.dtype = dtype
    p.latency.enabled = False
    p.batch_size = (2 if tiny else 32) * num_devices
    p.search.sampling = "per_device"
    if tiny:
      p.model.widths = "8,8,8,8,8,8,8,8,16"
      p.data.image_size = 32
    out[f"proxyless_{short}"] = p
  return dict(sorted(out.items()))


def _concrete_args(setup, config, mesh):
  """The search step's arguments with the setup's concrete state and random batches."""
  info = lowering.dataset_info(config)
  rng = np.random.default_rng(0)
  n = config.batch_size

  def batch():
    x = rng.standard_normal((n, *info.image_shape)).astype(np.float32)
    y = rng.integers(0, info.num_classes, (n,)).astype(np.int32)
    return mesh_lib.put_global(x, mesh), mesh_lib.put_global(y, mesh)
  from unas_jax.search import step as step_lib  # pylint: disable=import-outside-toplevel
  samples = step_lib.num_global_samples(setup.cfg, n, mesh.devices.size)
  latency = (jnp.zeros((samples,)) if setup.cfg.sampling == "shared"
             else mesh_lib.put_global(np.zeros((samples,), np.float32), mesh))
  return batch(), batch(), latency, jnp.zeros(())


def run_case(name: str, config, mesh, timed_steps: int) -> dict:
  from unas_jax.search import loop  # pylint: disable=import-outside-toplevel
  row = {"case": name, "kernels": kernels_lib.current()}
  # Counts of the lowered step for this platform (abstract state; a fresh jit).
  abstract = lowering.job_steps(config, mesh, probe=False)["search"]
  counts = lowering.count_ops(lowering.lower(*abstract, jax.default_backend() if jax.default_backend() != "gpu"
                                             else "cuda").as_text())
  row.update(conditionals=counts["conditionals"], host_callbacks=counts["host_callbacks"],
             convolutions=counts["convolutions"])
  space, _ = lowering._search_space(config)  # pylint: disable=protected-access
  info = lowering.dataset_info(config)
  setup = loop.build_search(config, info, mesh, space, lambda _: None, lowering.SCHEDULE_STEPS)
  batch_t, batch_v, latency, control = _concrete_args(setup, config, mesh)
  t0 = time.perf_counter()
  compiled = setup.search_step.lower(setup.state, batch_t, batch_v, latency, control).compile()
  row["compile_s"] = time.perf_counter() - t0
  try:
    m = compiled.memory_analysis()
    row["args_mib"] = m.argument_size_in_bytes / 2**20
    row["temp_mib"] = m.temp_size_in_bytes / 2**20
    row["peak_mib"] = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes +
                       m.temp_size_in_bytes + m.generated_code_size_in_bytes) / 2**20
  except Exception as e:  # pylint: disable=broad-except  # some backends report no memory analysis
    row["memory_error"] = f"{type(e).__name__}: {e}"
  state = setup.state
  times = []
  for i in range(2 + timed_steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch_t, batch_v, latency, control)
    jax.block_until_ready((state, metrics))
    if i >= 2:
      times.append(time.perf_counter() - t)
  row["step_ms"] = 1e3 * statistics.median(times)
  row["images_per_s"] = config.batch_size / statistics.median(times)
  row["loss_finite"] = bool(np.isfinite(float(jax.device_get(metrics.get("w_loss", 0.0)))))
  return row


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--tiny", action="store_true", default=os.environ.get("DEVICE_CHECK_TINY") == "1",
                 help="tiny sizes (a CPU check of the script); env DEVICE_CHECK_TINY=1")
  p.add_argument("--steps", type=int, default=10, help="timed steps per case")
  p.add_argument("--cases", default="", help="comma-separated subset of the cases")
  p.add_argument("--json", default="", help="also write the rows here")
  args = p.parse_args(argv)
  mesh = mesh_lib.make_mesh(1)  # one device: per-device figures
  device = jax.devices()[0]
  print(f"device_check: {device.platform} ({device.device_kind}), jax {jax.__version__}, "
        f"{'TINY sizes' if args.tiny else 'paper sizes'}", flush=True)
  todo = cases(args.tiny, 1)
  if args.cases:
    todo = {k: v for k, v in todo.items() if k in args.cases.split(",")}
  rows = []
  for name, config in todo.items():
    t0 = time.perf_counter()
    try:
      rows.append(run_case(name, config, mesh, args.steps))
    except Exception as e:  # pylint: disable=broad-except  # one failing case must not hide the others
      rows.append({"case": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
    print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
  head = (f"{'case':15s} {'kernels':7s} {'compile s':>9s} {'args MiB':>9s} {'temp MiB':>9s} {'peak~ MiB':>9s} "
          f"{'step ms':>9s} {'img/s':>8s} {'conds':>5s} {'callbk':>6s}  convolutions")
  print(head)
  for r in rows:
    if "error" in r:
      print(f"{r['case']:15s} ERROR {r['error']}")
      continue
    mem = (f"{r['args_mib']:9.1f} {r['temp_mib']:9.1f} {r['peak_mib']:9.1f}" if "args_mib" in r
           else f"{'n/a':>9s} {'n/a':>9s} {'n/a':>9s}")
    print(f"{r['case']:15s} {r['kernels']:7s} {r['compile_s']:9.1f} {mem} {r['step_ms']:9.1f} "
          f"{r['images_per_s']:8.1f} {r['conditionals']:5d} {r['host_callbacks']:6d}  {r['convolutions']}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": device.device_kind, "platform": device.platform, "tiny": args.tiny, "rows": rows}, f,
                indent=1)
  return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
  sys.exit(main())
