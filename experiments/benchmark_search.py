"""Speed of the architecture-search step: images/s, median step time, compile time, peak memory.

    python experiments/benchmark_search.py --config=configs/darts_cifar10.py:quick \
        --config.model.cells=5 --config.model.channels=8 --config.batch_size=32 \
        --config.data.image_size=32 --config.model.ops=unas7 --steps=10

Any config override works as on the main command line. Besides the whole step
it times its parts (discrete forwards, REBAR's relaxed forward+backward for phi,
the w update's forward+backward) to show what dominates. Prints one table;
quote medians and name the machine.

Memory: the process's peak RSS over its whole life (the XLA compile of the first step
included), and the peak RSS over the timed steps alone (Linux: ``/proc/self/clear_refs``
resets the high-water mark after the first step). The persistent compilation cache is off
unless ``--compilation_cache=DIR`` names one: a second run with the same directory reads the
compiled step instead of compiling it, as a resumed or repeated job does.

``--quiet-check`` (on by default) reads ``/proc`` before and after the compile and
the timed steps and prints how much CPU *other* processes used meanwhile (in cores,
and the busiest of them): on a shared machine a figure measured while something
else ran is visible in the output, not only in a note beside it.
"""
import json
import os
import sys
import tempfile
import time

from bench_utils import QuietCheck, own_cpu_seconds, peak_rss_gib, quiet_line, time_steps

from absl import app, flags
from ml_collections import config_flags
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax import data as data_lib
from unas_jax import estimators as est
from unas_jax.objectives import losses
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.search import loop
from unas_jax.search.darts import DartsSearchSpace
from unas_jax.search.proxyless import ProxylessSearchSpace

_CONFIG = config_flags.DEFINE_config_file("config", "configs/darts_cifar10.py:quick", "search config")
_STEPS = flags.DEFINE_integer("steps", 10, "timed steps (after one compile step)")
_PARTS = flags.DEFINE_bool("parts", True, "also time the step's parts")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")
_CACHE = flags.DEFINE_string("compilation_cache", None,
                             "JAX's persistent compilation cache directory (default: none, every compile cold); "
                             "run twice with the same directory to measure a start with the program cached")
_QUIET_CHECK = flags.DEFINE_bool("quiet_check", True, "report other processes' CPU use during compile and steps")
flags.DEFINE_alias("quiet-check", "quiet_check")


def _median_time(fn, *args, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times)), times


def main(argv):
  del argv
  config = _CONFIG.value
  config.search.init_epochs = 0
  if _CACHE.value:
    from unas_jax.utils import compilation_cache  # pylint: disable=import-outside-toplevel
    compilation_cache.enable(_CACHE.value)
  # The ProxylessNAS space with a latency table (e.g. configs/proxyless_latency.py:quick_lut): its
  # setup times nothing. With latency.source='probe' the setup first times the surrogate's networks.
  space = ProxylessSearchSpace(config) if config.job == "proxyless_search" else DartsSearchSpace(config)
  with tempfile.TemporaryDirectory() as workdir:
    setup = loop.setup_search(config, workdir, space)
  cfg, mesh, batch = setup.cfg, setup.mesh, config.batch_size
  batches = data_lib.search_batches(setup.dataset, batch, config.seed)
  (x_t, y_t), (x_v, y_v) = next(batches)
  bt, bv = mesh_lib.put_batch((x_t, y_t), mesh), mesh_lib.put_batch((x_v, y_v), mesh)
  state, control = setup.state, jnp.zeros(())

  quiet = {}
  check = QuietCheck()
  check.start()
  t, cpu = time.perf_counter(), own_cpu_seconds()
  latency_ms, control = loop.latency_inputs(setup, state, control)
  state, metrics = setup.search_step(state, bt, bv, latency_ms, control)
  jax.block_until_ready(state)
  compile_s, compile_cpu_s = time.perf_counter() - t, own_cpu_seconds() - cpu
  quiet["compile"] = check.stop()
  holder = {"state": state, "control": control}

  def run_step():
    latency_ms, holder["control"] = loop.latency_inputs(setup, holder["state"], holder["control"])
    holder["state"], _ = setup.search_step(holder["state"], bt, bv, latency_ms, holder["control"])
    return holder["state"]
  timed = time_steps(run_step, _STEPS.value)
  state, step_times = holder["state"], timed["times"]
  step_s = float(np.median(step_times))
  quiet["steps"] = timed["quiet"]
  network = (f"widths {config.model.widths}" if config.job == "proxyless_search" else
             f"{config.model.cells} cells, {config.model.channels} ch, ops {config.model.ops}")
  rows = {"config": f"{network}, batch {batch}, "
                    f"{x_t.shape[1]}x{x_t.shape[2]}, {cfg.estimator} + L_{cfg.objective}, "
                    f"{cfg.sampling}",
          "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
          "compile_s": compile_s, "compile_cpu_s": compile_cpu_s, "step_cpu_mean_s": timed["cpu_mean_s"],
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "step_median_s": step_s, "step_times_s": step_times,
          "images_per_s": batch / step_s}

  if _PARTS.value:
    model, w, stats = setup.model, state.w, state.stats
    logits = est.soften(state.phi, cfg.eps)
    keys = est.per_sample_keys(jax.random.key(0), jnp.arange(batch))
    sample = est.sample(keys, logits, tau=cfg.tau, sample_shape=(batch,))
    xs, ys = jnp.stack([jnp.asarray(x_t), jnp.asarray(x_v)]), jnp.stack([jnp.asarray(y_t), jnp.asarray(y_v)])

    def pair_loss(w, arch):
      out = jax.vmap(lambda x: model.apply(w, stats, x, arch, train=True)[0])(xs)
      return jnp.sum(losses.cross_entropy(out.reshape(-1, out.shape[-1]), ys.reshape(-1)))

    parts = {
        "discrete forward (train+val)": jax.jit(pair_loss),
        "relaxed fwd+bwd to arch (train+val)": jax.jit(jax.grad(pair_loss, argnums=1)),
        "w update fwd+bwd (train)": jax.jit(jax.grad(
            lambda w, arch: jnp.sum(losses.cross_entropy(model.apply(w, stats, xs[0], arch, train=True)[0], ys[0])))),
    }
    part_rows = {}
    for name, fn in parts.items():
      arch = sample.z if name.startswith("discrete") else sample.zeta
      t = time.perf_counter()
      jax.block_until_ready(fn(w, arch))
      c = time.perf_counter() - t
      m, _ = _median_time(fn, w, arch, repeats=max(3, _STEPS.value // 2))
      part_rows[name] = {"median_s": m, "compile_s": c}
    rows["parts"] = part_rows
  if _QUIET_CHECK.value:
    rows["quiet_check"] = quiet
  # The whole process's peak, the first step's compile included.
  rows["peak_rss_gib"] = max(timed["peak_before_steps_gib"], peak_rss_gib())
  rows["rss_after_first_step_gib"] = timed["rss_after_first_step_gib"]
  rows["steps_peak_rss_gib"] = steps_peak_rss = timed["steps_peak_rss_gib"]

  print(f"search step benchmark: {rows['config']} on {rows['devices']}")
  print(f"  XLA_FLAGS                {rows['xla_flags'] or '(none)'}")
  print(f"  compile (first step)     {rows['compile_s']:8.1f} s   [{rows['compile_cpu_s']:.1f} CPU s of this process]")
  print(f"  step (median of {len(step_times)})      {rows['step_median_s']:8.3f} s   "
        f"[min {min(step_times):.3f}, max {max(step_times):.3f}; mean {rows['step_cpu_mean_s']:.3f} CPU s]")
  print(f"  throughput               {rows['images_per_s']:8.1f} images/s")
  for name, p in rows.get("parts", {}).items():
    print(f"  part: {name:38s} {p['median_s']:7.3f} s (compile {p['compile_s']:.1f} s)")
  print(f"  peak host memory (RSS)   {rows['peak_rss_gib']:8.2f} GiB   (whole process, the compile included)")
  if steps_peak_rss is not None:
    print(f"  peak RSS over the steps  {steps_peak_rss:8.2f} GiB   "
          f"(after the first step: {rows['rss_after_first_step_gib']:.2f} GiB)")
  for name, q in rows.get("quiet_check", {}).items():
    print(quiet_line(name, q))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  sys.argv = [a for a in sys.argv]
  app.run(main)
