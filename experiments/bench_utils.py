"""What the benchmark scripts share: peak memory, own CPU time and the quiet check.

``python experiments/benchmark_*.py`` puts this folder on ``sys.path``, so the
scripts import it as ``bench_utils``.
"""
import os
import resource
import time


def rss_gib(field: str) -> float | None:
  """``VmRSS`` (now) or ``VmHWM`` (peak since start or the last reset) of this process, in GiB."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return None


def reset_peak_rss() -> bool:
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


def quiet_line(name: str, q: dict) -> str:
  others = "; ".join(f"pid {pid} {cores:.2f} cores: {cmd}" for cores, pid, cmd in q["busiest_others"]) or "none"
  verdict = "quiet" if q["other_cores"] < 0.1 else "NOT QUIET"
  return (f"  quiet check ({name}): other processes used {q['other_cores']:.2f} of {q['cores']} cores over "
          f"{q['wall_s']:.0f} s ({verdict}); load average {q['load_avg'][0]:.2f}; busiest others: {others}")


def own_cpu_seconds() -> float:
  """User + system CPU seconds of this process (all its threads): less sensitive to other load than wall time."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def peak_rss_gib() -> float:
  """This process's peak RSS since start (or since :func:`reset_peak_rss`), in GiB (``ru_maxrss``)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_steps(run_step, steps: int) -> dict:
  """Times ``steps`` calls of ``run_step()`` (which returns what to wait for), after the first step.

  Returns the step times (wall s), this process's mean CPU s a step, the quiet check over the
  steps, and memory: ``peak_before_steps_gib`` (the whole process so far, the compile
  included; read before the reset, since ``ru_maxrss`` reads the high-water mark that
  ``clear_refs`` resets), ``rss_after_first_step_gib`` and ``steps_peak_rss_gib`` (None where
  the kernel does not allow the reset).
  """
  import jax  # pylint: disable=import-outside-toplevel
  out = {"peak_before_steps_gib": peak_rss_gib(),
         "rss_after_first_step_gib": rss_gib("VmRSS")}
  measured = reset_peak_rss()
  check = QuietCheck()
  check.start()
  cpu = own_cpu_seconds()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    jax.block_until_ready(run_step())
    times.append(time.perf_counter() - t)
  out.update(times=times, cpu_mean_s=(own_cpu_seconds() - cpu) / max(1, steps), quiet=check.stop(),
             steps_peak_rss_gib=rss_gib("VmHWM") if measured else None)
  return out
