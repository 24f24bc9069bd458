"""Speed of the evaluation phase's training step: compile time, step time, images/s, peak memory.

    # The 20-cell CIFAR network of the paper's recipe (36 channels, batch 128, auxiliary head,
    # drop-path), on synthetic images of CIFAR-10's shape (nothing is downloaded):
    python experiments/benchmark_train.py --config=configs/darts_cifar10_eval.py --steps=5
    # The same with every cell unrolled (before lax.scan over the repeated cells):
    python experiments/benchmark_train.py --config=configs/darts_cifar10_eval.py --steps=5 \\
        --config.model.scan_cells=False

The step is the job's own (``unas_jax.evaluation.trainer.build_training``), traced and
lowered (``.lower``), compiled (``.compile()``; each timed apart), run once, then ``--steps``
calls are timed. The
images are Gaussian noise with the dataset's shape and the labels uniform: the
arithmetic does not depend on the values. Memory and the quiet check are as in
``benchmark_search.py`` (``bench_utils``); quote medians and name the machine.
"""
import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags
import jax
import numpy as np

from bench_utils import QuietCheck, own_cpu_seconds, peak_rss_gib, quiet_line, time_steps
from unas_jax.errors import UnasError
from unas_jax.evaluation import networks, trainer
from unas_jax.evaluation import run as eval_run
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.utils import lowering

_CONFIG = config_flags.DEFINE_config_file("config", "configs/darts_cifar10_eval.py", "evaluation config")
_STEPS = flags.DEFINE_integer("steps", 5, "timed steps (after the compile step)")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")
_CACHE = flags.DEFINE_string("compilation_cache", None,
                             "persistent compilation cache directory (default: off, every compile is cold)")


def main(argv):
  del argv
  config = _CONFIG.value
  if _CACHE.value:
    from unas_jax.utils import compilation_cache  # pylint: disable=import-outside-toplevel
    compilation_cache.enable(_CACHE.value)
  try:
    eval_run.check_config(config)
    info = lowering.dataset_info(config)
    network = networks.from_config(config.model, seed=config.seed)
    mesh = mesh_lib.make_mesh(config.mesh.num_devices)
    setup = trainer.build_training(config, network, info, mesh, steps_per_epoch=1000)
  except UnasError as e:
    print(f"benchmark_train: error: {e}", file=sys.stderr)
    sys.exit(2)
  batch = config.batch_size
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, *info.image_shape), np.float32)
  y = rng.integers(0, info.num_classes, batch).astype(np.int32)
  data = mesh_lib.put_batch((x, y), mesh)
  state = setup.state

  quiet, check = {}, QuietCheck()
  check.start()
  t, cpu = time.perf_counter(), own_cpu_seconds()
  lowered = setup.train_step.lower(state, data)  # tracing included
  lower_s, t = time.perf_counter() - t, time.perf_counter()
  step = lowered.compile()
  compile_s, compile_cpu_s = time.perf_counter() - t, own_cpu_seconds() - cpu
  quiet["compile"] = check.stop()
  t = time.perf_counter()
  state, _ = step(state, data)
  jax.block_until_ready(state)
  first_step_s = time.perf_counter() - t
  holder = {"state": state}

  def run_step():
    holder["state"], holder["metrics"] = step(holder["state"], data)
    return holder["state"]
  timed = time_steps(run_step, _STEPS.value)
  step_times, metrics = timed["times"], holder["metrics"]
  quiet["steps"] = timed["quiet"]
  step_s = float(np.median(step_times))
  m = config.model
  rows = {"config": f"{network.name}, batch {batch}, {'x'.join(map(str, info.image_shape))}, "
                    f"scan_cells {m.get('scan_cells')}, remat {m.remat}, dtype {m.dtype}",
          "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
          "lower_s": lower_s, "compile_s": compile_s, "compile_cpu_s": compile_cpu_s, "first_step_s": first_step_s,
          "step_median_s": step_s,
          "step_times_s": step_times, "step_cpu_mean_s": timed["cpu_mean_s"],
          "images_per_s": batch / step_s, "loss": float(metrics["loss"]),
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "quiet_check": quiet,
          "peak_rss_gib": max(timed["peak_before_steps_gib"], peak_rss_gib()),
          "rss_after_first_step_gib": timed["rss_after_first_step_gib"],
          "steps_peak_rss_gib": timed["steps_peak_rss_gib"]}

  print(f"training step benchmark: {rows['config']} on {rows['devices']}")
  print(f"  XLA_FLAGS                {rows['xla_flags'] or '(none)'}")
  print(f"  trace + lower            {lower_s:8.1f} s")
  print(f"  compile                  {compile_s:8.1f} s   "
        f"[{compile_cpu_s:.1f} CPU s of this process, lowering included]")
  print(f"  first step               {first_step_s:8.1f} s")
  print(f"  step (median of {len(step_times)})      {step_s:8.3f} s   "
        f"[min {min(step_times):.3f}, max {max(step_times):.3f}; mean {rows['step_cpu_mean_s']:.3f} CPU s]")
  print(f"  throughput               {rows['images_per_s']:8.1f} images/s   (loss {rows['loss']:.4f})")
  print(f"  peak host memory (RSS)   {rows['peak_rss_gib']:8.2f} GiB   (whole process, the compile included)")
  for name, q in quiet.items():
    print(quiet_line(name, q))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
