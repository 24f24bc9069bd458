r"""The latency probe: time a discrete architecture's compiled forward pass on this device.

True latency (docs/design.md section 8): the median of ``num_runs`` timed forward passes of the
discrete subnetwork (:class:`unas_jax.nn.proxyless_network.ProxylessNetwork`, random
weights, eval mode), each synchronised with ``block_until_ready``, after ``num_warmup``
untimed runs; batch, resolution, dtype and widths from :class:`ProbeConfig`.

Compilation is the expensive part on CPU, so it is *overlapped* with the search: ``submit``
queues architectures that background threads compile ahead; ``result`` times one when the
search asks for it. Timing never overlaps compilation (``exclusive_timing``, default): a
compile worker waits while a timing runs, and a timing waits for the compiles in flight
to finish (a readers-writer gate). docs/engineering.md section 4: ~30% inflated latency on 2 cores when
compiling in background threads while timing. The search's own work must also be finished
before ``result`` times (call it after ``jax.block_until_ready`` on the step's output):
JAX dispatches asynchronously. For batches of architectures (fitting the surrogate),
:meth:`LatencyProbe.measure_many` compiles a chunk, then times it in interleaved, shuffled
rounds and takes medians over all rounds, which resists drifts in the machine's load.

Every measurement is appended to ``<workdir>/latency_cache.jsonl`` (one JSON object per
line, written with one ``write`` under an ``flock``; a torn last line is skipped on read),
keyed by (architecture, backend and device kind, batch, resolution, dtype, widths, classes,
jax and jaxlib versions; a new compiler may change the latency): a repeat,
a second probe on the same workdir, or a resumed run returns the stored value and never
re-measures. JAX's persistent compilation cache (``persistent_cache_dir``) makes a
recompile of a known architecture a disk read.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import threading
import time
from typing import Iterable, Sequence

try:
  import fcntl
except ImportError:  # pragma: no cover - non-POSIX
  fcntl = None

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError
from unas_jax.nn import functional
from unas_jax.nn.proxyless_network import ProxylessNetwork
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.spaces import proxyless as space
from unas_jax.utils import compilation_cache
from unas_jax.utils import files

CACHE_FILE = "latency_cache.jsonl"
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """What a measurement depends on besides the architecture and the device."""
  batch_size: int = 32
  resolution: int = 224
  dtype: str = "float32"
  widths: tuple[int, ...] = space.GPU_WIDTHS
  num_classes: int = 1000
  num_runs: int = 10
  num_warmup: int = 2
  depthwise_impl: str = "auto"
  seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, "widths", space.resolve_widths(self.widths))
    check_choice("probe dtype", self.dtype, DTYPES)
    for name in ("batch_size", "resolution", "num_classes", "num_runs"):
      if int(getattr(self, name)) < 1:
        raise ConfigError(f"probe {name}={getattr(self, name)} must be a positive integer")
    if self.num_warmup < 0:
      raise ConfigError(f"probe num_warmup={self.num_warmup} must be >= 0")


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One timed architecture. ``spread_ms`` is the interquartile range of the runs."""
  arch: str
  median_ms: float
  iqr_ms: float
  std_ms: float
  min_ms: float
  num_runs: int
  compile_s: float
  device_kind: str
  batch_size: int
  resolution: int
  dtype: str
  widths: tuple[int, ...]
  num_classes: int
  method: str = "network"
  versions: str = ""
  cached: bool = dataclasses.field(default=False, compare=False)

  @property
  def spread_ms(self) -> float:
    return self.iqr_ms

  @property
  def genotype(self) -> space.ProxylessGenotype:
    return space.ProxylessGenotype.from_string(self.arch)

  @property
  def key(self) -> str:
    return cache_key(self.arch, self.device_kind, self.batch_size, self.resolution, self.dtype, self.widths,
                     self.num_classes, self.method, self.versions)

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d.pop("cached")
    d["widths"] = list(self.widths)
    return json.dumps(d, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict) -> "Measurement":
    d = dict(d)
    d["widths"] = tuple(d["widths"])
    d.pop("cached", None)
    return cls(**d)


def cache_key(arch: str, device_kind: str, batch_size: int, resolution: int, dtype: str,
              widths: Sequence[int], num_classes: int, method: str = "network", versions: str = "") -> str:
  """``device_kind`` starts with the backend (``cpu``, ``gpu``, ``tpu``); ``versions`` is :func:`versions`."""
  return (f"{method}|{arch}|{device_kind}|b{batch_size}|r{resolution}|{dtype}|"
          f"w{'-'.join(str(c) for c in widths)}|c{num_classes}|{versions}")


def versions() -> str:
  """``jax<version>-jaxlib<version>``: the compiler that made a measured program."""
  import jaxlib  # pylint: disable=import-outside-toplevel
  return f"jax{jax.__version__}-jaxlib{jaxlib.__version__}"


def device_kind(device: jax.Device | None = None) -> str:
  """``platform:kind``; for CPUs also the processor model and core count (``cpu`` alone says little)."""
  device = device or jax.local_devices()[0]
  kind = f"{device.platform}:{device.device_kind}"
  if device.platform == "cpu":
    model = platform.processor() or platform.machine()
    try:
      with open("/proc/cpuinfo") as f:
        for line in f:
          if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    except OSError:
      pass
    kind += f":{model}:{os.cpu_count()}cores"
  return kind


def timing_device(reserve: bool = False) -> jax.Device:
  """The device this process times latency on: a local one, never another host's.

  ``reserve``: this process's device kept out of the mesh
  (:func:`unas_jax.parallel.mesh.reserved_local_devices`), so timing does not share it
  with the search; else ``jax.local_devices()[0]`` (``jax.devices()[0]`` would be
  process 0's device on every process).
  """
  if reserve:
    return next(d for d in mesh_lib.reserved_local_devices() if d.process_index == jax.process_index())
  return jax.local_devices()[0]


def default_compile_threads() -> int:
  """One background compile thread per CPU core this process may use (timing never overlaps them)."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # pragma: no cover - not Linux
    return max(1, os.cpu_count() or 1)


def summarise(times_s: Sequence[float]) -> dict[str, float]:
  """Median, IQR, std and min of run times, in ms."""
  t = np.asarray(times_s, np.float64) * 1e3
  q25, q50, q75 = np.percentile(t, [25, 50, 75])
  return {"median_ms": float(q50), "iqr_ms": float(q75 - q25), "std_ms": float(t.std()),
          "min_ms": float(t.min()), "num_runs": int(len(t))}


def cache_path(workdir: str, cache_file: str) -> str:
  """Where the measurement cache lives: in the workdir, or on local disk for a URI workdir.

  The cache is a lock-protected append log shared by concurrent probes, which object
  stores (``gs://``) cannot append to. What a resume needs from the measurements (the
  fitted surrogate, its report, the block table) is written to the workdir itself; a
  URI workdir's cache is only a speed-up, kept under the system's temporary folder.
  """
  if files.is_local(workdir):
    return os.path.join(workdir, cache_file)
  digest = hashlib.sha1(str(workdir).encode()).hexdigest()[:16]
  return os.path.join(tempfile.gettempdir(), "unas_jax_latency_cache", digest, cache_file)


class LatencyCache:
  """Append-only JSONL store of measurements, safe for concurrent appends."""

  def __init__(self, path: str | None):
    self.path = path
    self._lock = threading.Lock()
    self._data: dict[str, Measurement] = {}
    self._read_bytes = 0
    if path:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      self._reload()

  def _reload(self) -> None:
    if not self.path or not os.path.exists(self.path):
      return
    size = os.path.getsize(self.path)
    if size == self._read_bytes:
      return
    with open(self.path, "rb") as f:
      f.seek(self._read_bytes)
      chunk = f.read()
    # Only complete lines; a torn last line (crash mid-write) is left for later / ignored.
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
      try:
        m = Measurement.from_dict(json.loads(line))
      except (ValueError, TypeError, KeyError):
        continue
      self._data[m.key] = m
    self._read_bytes += end

  def get(self, key: str) -> Measurement | None:
    with self._lock:
      m = self._data.get(key)
      if m is None and self.path:
        self._reload()  # another probe/process may have measured it since
        m = self._data.get(key)
    return None if m is None else dataclasses.replace(m, cached=True)

  def put(self, m: Measurement) -> None:
    with self._lock:
      self._data[m.key] = m
      if not self.path:
        return
      line = (m.to_json() + "\n").encode()
      with open(self.path, "ab") as f:
        if fcntl is not None:
          fcntl.flock(f, fcntl.LOCK_EX)
        try:
          f.write(line)
          f.flush()
          os.fsync(f.fileno())
        finally:
          if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_UN)

  def __len__(self) -> int:
    return len(self._data)

  def values(self) -> list[Measurement]:
    with self._lock:
      self._reload()
      return list(self._data.values())


class TimingGate:
  """Readers-writer gate: many compiles at once, or one timing alone (writer first)."""

  def __init__(self, exclusive: bool = True):
    self.exclusive = exclusive
    self._cv = threading.Condition()
    self._compiling = 0
    self._timing = False
    self._timers_waiting = 0

  @contextlib.contextmanager
  def compiling(self):
    if not self.exclusive:
      yield
      return
    with self._cv:
      while self._timing or self._timers_waiting:
        self._cv.wait()
      self._compiling += 1
    try:
      yield
    finally:
      with self._cv:
        self._compiling -= 1
        self._cv.notify_all()

  @contextlib.contextmanager
  def timing(self):
    if not self.exclusive:
      yield
      return
    with self._cv:
      self._timers_waiting += 1
      while self._timing or self._compiling:
        self._cv.wait()
      self._timers_waiting -= 1
      self._timing = True
    try:
      yield
    finally:
      with self._cv:
        self._timing = False
        self._cv.notify_all()


@dataclasses.dataclass
class Compiled:
  """A compiled forward pass and its arguments, ready to time."""
  fn: object
  args: tuple
  compile_s: float


def compile_forward(module: nnx.Module, input_shape: Sequence[int], dtype: str, device: jax.Device,
                    seed: int = 0) -> Compiled:
  """``jit``-compiles ``module(x, train=False)`` ahead of time; weights and input on ``device``."""
  t0 = time.perf_counter()
  model_def, _, w, stats = functional.split(module)
  jdtype = jnp.dtype(dtype)
  cast = lambda a: jax.device_put(np.asarray(a).astype(jdtype) if jnp.issubdtype(a.dtype, jnp.floating)  # noqa: E731
                                  else np.asarray(a), device)
  w, stats = jax.tree.map(cast, w), jax.tree.map(cast, stats)
  x = jax.device_put(np.random.default_rng(seed).standard_normal(tuple(input_shape)).astype(jdtype), device)

  def forward(w, stats, x):
    return functional.apply(model_def, w, stats, x, None, train=False)[0]

  fn = jax.jit(forward).lower(w, stats, x).compile()
  return Compiled(fn, (w, stats, x), time.perf_counter() - t0)


def time_runs(compiled: Compiled, num_runs: int, num_warmup: int) -> list[float]:
  """Seconds per synchronised call, after ``num_warmup`` untimed calls."""
  for _ in range(num_warmup):
    jax.block_until_ready(compiled.fn(*compiled.args))
  times = []
  for _ in range(num_runs):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled.fn(*compiled.args))
    times.append(time.perf_counter() - t0)
  return times


class LatencyProbe:
  """Measures (and caches) the latency of discrete ProxylessNAS architectures.

  Typical use in a search::

      probe = LatencyProbe(workdir, ProbeConfig(batch_size=32, resolution=224))
      probe.submit(genotypes_of_next_steps)       # compile ahead, in the background
      ...                                         # train
      if probe.ready(g): ms = probe.result(g).median_ms   # time it (exclusive), cache it
  """

  def __init__(self, workdir: str | None, config: ProbeConfig = ProbeConfig(), *, compile_threads: int = 0,
               exclusive_timing: bool = True, persistent_cache_dir: str | None = None,
               device: jax.Device | None = None, cache_file: str = CACHE_FILE):
    """Args:
      workdir: where ``latency_cache.jsonl`` lives (None: in-memory cache only).
      config: batch, resolution, dtype, widths, runs.
      compile_threads: background compile workers (0: one per CPU core, :func:`default_compile_threads`).
      exclusive_timing: never time while compiling (see the module docstring).
      persistent_cache_dir: enables JAX's persistent compilation cache there (process-wide).
      device: the device to time on (default: :func:`timing_device`, this process's first local device).
    """
    self.config = config
    self.device = device or timing_device()
    self.device_kind = device_kind(self.device)
    self.versions = versions()
    self.cache = LatencyCache(cache_path(workdir, cache_file) if workdir else None)
    self.gate = TimingGate(exclusive_timing)
    if persistent_cache_dir:
      # Every architecture's forward, however quick to compile: a probe reuses them across runs.
      compilation_cache.enable(persistent_cache_dir, min_compile_time_s=0.0)
    self._pool = concurrent.futures.ThreadPoolExecutor(compile_threads or default_compile_threads(),
                                                       thread_name_prefix="probe-compile")
    self._pending: dict[str, concurrent.futures.Future] = {}
    self._lock = threading.Lock()
    self._stats = {"compiled": 0, "compile_s": 0.0, "timed": 0, "timing_s": 0.0, "cache_hits": 0}
    self._t_start = None

  # -- keys and cache

  def key(self, genotype: space.ProxylessGenotype | str) -> str:
    c = self.config
    return cache_key(str(space.get_genotype(genotype)), self.device_kind, c.batch_size, c.resolution, c.dtype,
                     c.widths, c.num_classes, versions=self.versions)

  def cached(self, genotype) -> Measurement | None:
    """The stored measurement, or None."""
    return self.cache.get(self.key(genotype))

  # -- compile

  def _build(self, genotype: space.ProxylessGenotype) -> Compiled:
    c = self.config
    with self.gate.compiling():
      net = ProxylessNetwork(genotype, c.widths, c.num_classes, rngs=nnx.Rngs(c.seed),
                             depthwise_impl=c.depthwise_impl, dtype=jnp.dtype(c.dtype))
      compiled = compile_forward(net, (c.batch_size, c.resolution, c.resolution, 3), c.dtype, self.device, c.seed)
    with self._lock:
      self._stats["compiled"] += 1
      self._stats["compile_s"] += compiled.compile_s
    return compiled

  def _mark_start(self):
    if self._t_start is None:
      self._t_start = time.perf_counter()

  def submit(self, genotypes: Iterable[space.ProxylessGenotype | str]) -> int:
    """Queues background compiles of the architectures not cached or pending; returns how many."""
    self._mark_start()
    n = 0
    for g in genotypes:
      g = space.get_genotype(g)
      k = self.key(g)
      with self._lock:
        if k in self._pending or self.cache.get(k) is not None:
          continue
        self._pending[k] = self._pool.submit(self._build, g)
      n += 1
    return n

  def ready(self, genotype) -> bool:
    """True if :meth:`result` would not wait for a compile (cached, or compiled)."""
    k = self.key(genotype)
    with self._lock:
      fut = self._pending.get(k)
    return fut.done() if fut is not None else self.cache.get(k) is not None

  def pending(self) -> int:
    with self._lock:
      return len(self._pending)

  # -- time

  def _record(self, genotype: space.ProxylessGenotype, times: Sequence[float], compile_s: float) -> Measurement:
    c = self.config
    m = Measurement(arch=str(genotype), compile_s=float(compile_s), device_kind=self.device_kind,
                    batch_size=c.batch_size, resolution=c.resolution, dtype=c.dtype, widths=tuple(c.widths),
                    num_classes=c.num_classes, versions=self.versions, **summarise(times))
    self.cache.put(m)
    return m

  def _time(self, compiled: Compiled, num_runs: int, num_warmup: int) -> list[float]:
    with self.gate.timing():
      t0 = time.perf_counter()
      times = time_runs(compiled, num_runs, num_warmup)
      with self._lock:
        self._stats["timing_s"] += time.perf_counter() - t0
    return times

  def result(self, genotype, timeout: float | None = None) -> Measurement:
    """The latency of ``genotype``: from the cache, else compiled (waiting for a pending compile) and timed."""
    self._mark_start()
    g = space.get_genotype(genotype)
    k = self.key(g)
    m = self.cache.get(k)
    if m is not None:
      with self._lock:
        self._stats["cache_hits"] += 1
        fut = self._pending.pop(k, None)
      if fut is not None:
        fut.cancel()
      return m
    with self._lock:
      fut = self._pending.get(k)
    try:
      compiled = fut.result(timeout) if fut is not None else self._build(g)
    except concurrent.futures.TimeoutError:
      raise
    except Exception:
      with self._lock:  # a failed compile is not retried from the queue, but on the next call
        self._pending.pop(k, None)
      raise
    times = self._time(compiled, self.config.num_runs, self.config.num_warmup)
    m = self._record(g, times, compiled.compile_s)
    with self._lock:
      self._pending.pop(k, None)
      self._stats["timed"] += 1
    return m

  def measure(self, genotype) -> Measurement:
    """Synchronous :meth:`result`."""
    return self.result(genotype)

  def measure_many(self, genotypes: Sequence[space.ProxylessGenotype | str], *, rounds: int = 3,
                   chunk_size: int = 16, seed: int = 0, progress_fn=None) -> list[Measurement]:
    """Measures many architectures: per chunk, compile all (background threads), then time them in
    ``rounds`` interleaved, shuffled rounds of ``ceil(num_runs / rounds)`` runs each; median over
    all runs. Cached architectures are not re-measured."""
    self._mark_start()
    genotypes = [space.get_genotype(g) for g in genotypes]
    rng = np.random.default_rng(seed)
    out: dict[str, Measurement] = {}
    todo = []
    for g in genotypes:
      m = self.cache.get(self.key(g))
      if m is not None:
        out[str(g)] = m
      elif str(g) not in {str(t) for t in todo}:
        todo.append(g)
    runs_per_round = -(-self.config.num_runs // rounds)
    for start in range(0, len(todo), chunk_size):
      chunk = todo[start:start + chunk_size]
      self.submit(chunk)
      compiled = {}
      for g in chunk:
        with self._lock:
          fut = self._pending.get(self.key(g))
        compiled[str(g)] = fut.result() if fut is not None else self._build(g)
      times: dict[str, list[float]] = {str(g): [] for g in chunk}
      for r in range(rounds):
        for i in rng.permutation(len(chunk)):
          name = str(chunk[i])
          times[name] += self._time(compiled[name], runs_per_round, self.config.num_warmup if r == 0 else 1)
      for g in chunk:
        out[str(g)] = self._record(g, times[str(g)], compiled[str(g)].compile_s)
        with self._lock:
          self._pending.pop(self.key(g), None)
          self._stats["timed"] += 1
      del compiled
      if progress_fn is not None:
        progress_fn(min(start + chunk_size, len(todo)), len(todo))
    return [out[str(g)] for g in genotypes]

  # -- reporting

  def stats(self) -> dict[str, float]:
    """Counts, seconds spent compiling (summed over threads) and timing, and throughput."""
    with self._lock:
      s = dict(self._stats)
    wall = 0.0 if self._t_start is None else time.perf_counter() - self._t_start
    s["wall_s"] = wall
    s["archs_per_min"] = 60.0 * s["timed"] / wall if wall > 0 else 0.0
    s["mean_compile_s"] = s["compile_s"] / s["compiled"] if s["compiled"] else 0.0
    return s

  def close(self) -> None:
    with self._lock:
      for fut in self._pending.values():
        fut.cancel()
      self._pending.clear()
    self._pool.shutdown(wait=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
