"""Files under a URI workdir go through etils.epath: nothing lands in a local folder named after the URI.

The storage behind ``gs://`` is replaced for the test by a local folder (etils'
``epath.testing.mock_epath``); what is checked is that every writer of the run's
files (history, genotype, plots, summaries) reaches it through epath, never
through ``open``/``os.makedirs`` on the URI string.
"""
import contextlib
import os
import pathlib
import shutil

import numpy as np
import pytest
from etils.epath import gpath
from etils.epath import testing as epath_testing

from unas_jax.spaces import darts_genotype
from unas_jax.spaces import darts_plot
from unas_jax.spaces import proxyless
from unas_jax.utils import files
from unas_jax.utils import metrics as metrics_lib
from unas_jax.utils import plots


@contextlib.contextmanager
def fake_bucket(root: pathlib.Path):
  """``gs://<path>`` -> ``root/<path>`` for every epath operation."""
  def local(path):
    text = os.fspath(path)
    assert text.startswith("gs://"), f"a local path reached the bucket backend: {text}"
    return str(root / text[len("gs://"):])

  def redirect(fn_name):
    def fn(original, path, *args, **kwargs):
      del original
      target = local(path)
      impl = {
          "open": lambda p, mode="r", **kw: open(p, mode, **kw),
          "exists": os.path.exists, "isdir": os.path.isdir, "listdir": os.listdir,
          "makedirs": lambda p, exist_ok=False, mode=0o777: os.makedirs(p, exist_ok=exist_ok),
          "mkdir": lambda p, exist_ok=False, mode=0o777: (os.mkdir(p) if not (exist_ok and os.path.isdir(p))
                                                          else None),
          "remove": os.remove, "rmtree": shutil.rmtree,
          "rename": lambda p, dst: os.rename(p, local(dst)),
          "replace": lambda p, dst: os.replace(p, local(dst)),
      }[fn_name]
      return impl(target, *args, **kwargs)
    return fn

  names = ("open", "exists", "isdir", "listdir", "makedirs", "mkdir", "remove", "rmtree", "rename", "replace")
  # With TensorFlow installed epath sends gs:// to tf.io.gfile whatever the mock says.
  with epath_testing.mock_epath(**{n: redirect(n) for n in names}), \
       pytest.MonkeyPatch.context() as mp:
    mp.setattr(gpath, "_is_tf_installed", lambda: False)
    yield


def test_run_files_reach_the_uri_through_epath(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a local folder named after the URI would appear here
  bucket = tmp_path / "bucket"
  bucket.mkdir()
  workdir = "gs://runs/search"
  with fake_bucket(bucket):
    from unas_jax import jobs
    assert jobs.prepare_workdir(workdir) == workdir
    history = metrics_lib.JsonlHistory(os.path.join(workdir, "history.jsonl"))
    for step in (2, 4, 6):
      history.append({"step": step, "objective": 1.0 / step})
    history.truncate_after(4)
    assert [r["step"] for r in history.read()] == [2, 4]
    out = plots.ensure_dir(os.path.join(workdir, "genotype"))
    darts_genotype.BUILTIN_GENOTYPES["unas_cifar10"].save(os.path.join(out, "genotype.json"))
    darts_plot.plot_cell(darts_genotype.BUILTIN_GENOTYPES["unas_cifar10"], "normal",
                         os.path.join(out, "normal_cell.png"))
    proxyless.BUILTIN_GENOTYPES["unas_proxyless"].save(os.path.join(out, "proxyless.json"))
    plots.curves(history.read(), ["objective"], os.path.join(workdir, "search_curves.png"), "search")
    plots.probability_heatmaps([2, 4], [{"g": np.full((2, 3), 1 / 3)}] * 2, {"g": ["a", "b", "c"]},
                               os.path.join(workdir, "probs.png"))
    files.write_json(os.path.join(workdir, "summary.json"), {"steps": 6})
    assert files.listdir(out) == ["genotype.json", "normal_cell.png", "proxyless.json"]
  assert not any(p.name.startswith("gs:") for p in tmp_path.iterdir()), os.listdir(tmp_path)
  run = bucket / "runs" / "search"
  assert sorted(p.name for p in run.iterdir()) == ["genotype", "history.jsonl", "probs.png", "search_curves.png",
                                                   "summary.json"]
  assert (darts_genotype.Genotype.load(run / "genotype" / "genotype.json")
          == darts_genotype.BUILTIN_GENOTYPES["unas_cifar10"])
  assert (run / "search_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_latency_and_nb201_files_reach_the_uri_through_epath(tmp_path, monkeypatch):
  """The surrogate (saved, reported, plotted, read back), the probe cache's place, NB201 files."""
  from unas_jax.latency import probe as probe_lib
  from unas_jax.latency import surrogate as surrogate_lib
  from unas_jax.spaces import nb201
  monkeypatch.chdir(tmp_path)
  bucket = tmp_path / "bucket"
  bucket.mkdir()
  workdir = "gs://runs/latency"
  genotypes = proxyless.random_genotypes(0, 12)
  ms = np.linspace(1.0, 3.0, 12)
  with fake_bucket(bucket):
    directory = files.makedirs(os.path.join(workdir, "latency"))
    fitted, report = surrogate_lib.fit_surrogate(genotypes, ms, lam=1.0)
    fitted.save(os.path.join(directory, "surrogate.npz"))
    surrogate_lib.write_report({"mae": 0.1}, os.path.join(directory, "report.json"))
    surrogate_lib.scatter_plot(report["y_test"], report["y_pred"], os.path.join(directory, "scatter.png"))
    loaded = surrogate_lib.LinearSurrogate.load(os.path.join(directory, "surrogate.npz"))
    np.testing.assert_allclose(loaded.latencies(genotypes), fitted.latencies(genotypes))
    cell = nb201.Cell.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                             "skip_connect~2|")
    cell.save(os.path.join(workdir, "cell.json"))
    nb201.plot_cell(cell, os.path.join(workdir, "cell.png"))
    assert nb201.Cell.load(os.path.join(workdir, "cell.json")) == cell
  # The probe's append-only cache cannot live in an object store: local, keyed by the URI.
  cache = probe_lib.cache_path(workdir, "probe_cache.jsonl")
  assert "://" not in cache and cache != probe_lib.cache_path("gs://runs/other", "probe_cache.jsonl")
  assert probe_lib.cache_path(str(tmp_path), "c.jsonl") == os.path.join(str(tmp_path), "c.jsonl")
  assert not any(p.name.startswith("gs:") for p in tmp_path.iterdir()), os.listdir(tmp_path)
  run = bucket / "runs" / "latency"
  assert sorted(p.name for p in (run / "latency").iterdir()) == [
      "report.json", "scatter.png", "surrogate.npz", "surrogate_report.json"]
  assert sorted(p.name for p in run.iterdir()) == ["cell.json", "cell.png", "latency"]
