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
import resource
import sys
import tempfile
import time

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

_CONFIG = config_flags.DEFINE_config_file("config", "configs/darts_cifar10.py:quick", "search config")
_STEPS = flags.DEFINE_integer("steps", 10, "timed steps (after one compile step)")
_PARTS = flags.DEFINE_bool("parts", True, "also time the step's parts")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")
_CACHE = flags.DEFINE_string("compilation_cache", None,
                             "JAX's persistent compilation cache directory (default: none, every compile cold); "
                             "run twice with the same directory to measure a start with the program cached")
_QUIET_CHECK = flags.DEFINE_bool("quiet_check", True, "report other processes' CPU use during compile and steps")
flags.DEFINE_alias("quiet-check", "quiet_check")


def _rss_gib(field: str) -> float | None:
  """``VmRSS`` (now) or ``VmHWM`` (peak since start or the last reset) of this process, in GiB."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return None


def _reset_peak_rss() -> bool:
  """Resets this process's RSS high-water mark (``VmHWM``); False where the kernel does not allow it."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _proc_cpu_seconds() -> dict[int, tuple[float, str]]:
  """``{pid: (user + system CPU seconds, command)}`` of every process readable in /proc."""
  tick = os.sysconf("SC_CLK_TCK")
  out = {}
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat") as f:
        raw = f.read()
      with open(f"/proc/{name}/cmdline", "rb") as f:
        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
      continue
    fields = raw[raw.rindex(")") + 2:].split()
    out[int(name)] = ((int(fields[11]) + int(fields[12])) / tick, cmd or raw[raw.index("(") + 1:raw.rindex(")")])
  return out


class QuietCheck:
  """Other processes' CPU use between :meth:`start` and :meth:`stop` (cores = CPU seconds / wall seconds)."""

  def start(self):
    self.t0, self.before = time.perf_counter(), _proc_cpu_seconds()

  def stop(self) -> dict:
    wall, after = time.perf_counter() - self.t0, _proc_cpu_seconds()
    me = os.getpid()
    used = {pid: (cpu - self.before.get(pid, (0.0, ""))[0], cmd) for pid, (cpu, cmd) in after.items() if pid != me}
    busiest = sorted(((round(c / wall, 2), pid, cmd[:80]) for pid, (c, cmd) in used.items() if c > 0.01 * wall),
                     reverse=True)[:3]
    return {"wall_s": wall, "other_cores": sum(c for c, _ in used.values()) / wall,
            "cores": os.cpu_count(), "load_avg": os.getloadavg(), "busiest_others": busiest}


def _quiet_line(name: str, q: dict) -> str:
  others = "; ".join(f"pid {pid} {cores:.2f} cores: {cmd}" for cores, pid, cmd in q["busiest_others"]) or "none"
  verdict = "quiet" if q["other_cores"] < 0.1 else "NOT QUIET"
  return (f"  quiet check ({name}): other processes used {q['other_cores']:.2f} of {q['cores']} cores over "
          f"{q['wall_s']:.0f} s ({verdict}); load average {q['load_avg'][0]:.2f}; busiest others: {others}")


def _own_cpu_seconds() -> float:
  """User + system CPU seconds of this process (all its threads): less sensitive to other load than wall time."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


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
  space = DartsSearchSpace(config)
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
  t, cpu = time.perf_counter(), _own_cpu_seconds()
  latency_ms, control = loop.latency_inputs(setup, state, control)
  state, metrics = setup.search_step(state, bt, bv, latency_ms, control)
  jax.block_until_ready(state)
  compile_s, compile_cpu_s = time.perf_counter() - t, _own_cpu_seconds() - cpu
  quiet["compile"] = check.stop()
  rss_after_compile = _rss_gib("VmRSS")
  # Read before the reset: getrusage's ru_maxrss reads the same high-water mark that clear_refs resets.
  peak_before_steps = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  steps_peak_measured = _reset_peak_rss()
  check.start()
  cpu = _own_cpu_seconds()
  step_times = []
  for _ in range(_STEPS.value):
    t = time.perf_counter()
    latency_ms, control = loop.latency_inputs(setup, state, control)
    state, metrics = setup.search_step(state, bt, bv, latency_ms, control)
    jax.block_until_ready(state)
    step_times.append(time.perf_counter() - t)
  step_s = float(np.median(step_times))
  steps_peak_rss = _rss_gib("VmHWM") if steps_peak_measured else None
  step_cpu_s = (_own_cpu_seconds() - cpu) / max(1, _STEPS.value)
  quiet["steps"] = check.stop()
  rows = {"config": f"{config.model.cells} cells, {config.model.channels} ch, batch {batch}, "
                    f"{x_t.shape[1]}x{x_t.shape[2]}, ops {config.model.ops}, {cfg.estimator} + L_{cfg.objective}, "
                    f"{cfg.sampling}",
          "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
          "compile_s": compile_s, "compile_cpu_s": compile_cpu_s, "step_cpu_mean_s": step_cpu_s,
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
  rows["peak_rss_gib"] = max(peak_before_steps, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
  rows["rss_after_first_step_gib"] = rss_after_compile
  rows["steps_peak_rss_gib"] = steps_peak_rss

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
    print(f"  peak RSS over the steps  {steps_peak_rss:8.2f} GiB   (after the first step: {rss_after_compile:.2f} GiB)")
  for name, q in rows.get("quiet_check", {}).items():
    print(_quiet_line(name, q))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  sys.argv = [a for a in sys.argv]
  app.run(main)
