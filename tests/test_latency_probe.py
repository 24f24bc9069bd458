"""Latency probe: cache on repeat and across probes, torn lines, queue API, timing gate."""
import json
import threading
import time

import pytest

from unas_jax.errors import ConfigError
from unas_jax.latency import probe as P
from unas_jax.spaces import proxyless as sp

TINY = P.ProbeConfig(batch_size=2, resolution=16, widths=(8, 8, 8, 8, 8, 8, 8, 8, 16), num_classes=4,
                     num_runs=3, num_warmup=1, depthwise_impl="xla")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
  """One probe run on a workdir: two architectures measured (compiled and timed once)."""
  workdir = tmp_path_factory.mktemp("probe")
  gs = sp.random_genotypes(0, 2)
  with P.LatencyProbe(str(workdir), TINY, compile_threads=2) as probe:
    assert probe.submit(gs) == 2
    assert probe.submit(gs) == 0  # already pending
    first = [probe.result(g) for g in gs]
    repeat = probe.measure(gs[0])
    stats = probe.stats()
  return workdir, gs, first, repeat, stats


def test_repeat_returns_the_cached_value(measured):
  _, gs, first, repeat, stats = measured
  assert not first[0].cached and repeat.cached
  assert repeat == first[0]
  assert stats["compiled"] == 2 and stats["timed"] == 2 and stats["cache_hits"] == 1
  assert first[0].median_ms > 0 and first[0].num_runs == 3 and first[0].compile_s > 0


def test_fresh_probe_on_the_same_workdir_never_remeasures(measured, monkeypatch):
  workdir, gs, first, _, _ = measured
  probe = P.LatencyProbe(str(workdir), TINY)
  monkeypatch.setattr(probe, "_build", lambda g: pytest.fail("re-measured a cached architecture"))
  assert probe.ready(gs[1])
  assert probe.submit(gs) == 0
  assert [probe.result(g).median_ms for g in gs] == [m.median_ms for m in first]
  assert probe.measure_many(gs)[1] == first[1]
  # A different setting is a different key.
  other = P.LatencyProbe(str(workdir), P.ProbeConfig(**{**TINY.__dict__, "batch_size": 3}))
  assert other.cached(gs[0]) is None
  probe.close()
  other.close()


def test_torn_last_line_is_skipped(measured, tmp_path):
  workdir, gs, first, _, _ = measured
  lines = (workdir / P.CACHE_FILE).read_text().splitlines()
  assert len(lines) == 2 and json.loads(lines[0])["arch"] == str(gs[0])
  (tmp_path / P.CACHE_FILE).write_text(lines[0] + "\n" + lines[1][:40])
  cache = P.LatencyCache(str(tmp_path / P.CACHE_FILE))
  assert len(cache) == 1 and cache.get(first[0].key).median_ms == first[0].median_ms


def test_measure_many_interleaves_and_caches(tmp_path):
  gs = sp.random_genotypes(3, 3)
  with P.LatencyProbe(str(tmp_path), TINY, compile_threads=2) as probe:
    ms = probe.measure_many(gs + [gs[0]], rounds=3)
    assert [m.arch for m in ms] == [str(g) for g in gs + [gs[0]]]
    assert all(m.num_runs == 3 for m in ms) and probe.stats()["timed"] == 3
  assert len((tmp_path / P.CACHE_FILE).read_text().splitlines()) == 3


def test_timing_gate_never_overlaps_compiles():
  gate = P.TimingGate(exclusive=True)
  events = []
  lock = threading.Lock()

  def log(what):
    with lock:
      events.append(what)

  def compiler():
    with gate.compiling():
      log("c+")
      time.sleep(0.05)
      log("c-")

  def timer():
    with gate.timing():
      log("t+")
      time.sleep(0.05)
      log("t-")

  threads = [threading.Thread(target=f) for f in [compiler, compiler, timer, compiler, timer, compiler]]
  for t in threads:
    t.start()
    time.sleep(0.01)
  for t in threads:
    t.join()
  active_c, timing = 0, False
  for e in events:
    active_c += {"c+": 1, "c-": -1}.get(e, 0)
    timing = {"t+": True, "t-": False}.get(e, timing)
    assert not (timing and active_c), events


def test_config_validation():
  with pytest.raises(ConfigError, match="dtype"):
    P.ProbeConfig(dtype="int8")
  with pytest.raises(ConfigError, match="batch_size"):
    P.ProbeConfig(batch_size=0)
  with pytest.raises(ConfigError, match="9 positive integers"):
    P.ProbeConfig(widths=(8, 8))


def test_persistent_cache_dir_enables_the_compilation_cache_for_every_compile(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(P.compilation_cache, "enable", lambda *a, **k: calls.append((a, k)))
  P.LatencyProbe(None, TINY, persistent_cache_dir=str(tmp_path)).close()
  P.LatencyProbe(None, TINY).close()
  assert calls == [((str(tmp_path),), {"min_compile_time_s": 0.0})]
