"""Files under a URI workdir go through etils.epath: nothing lands in a local folder named after the URI.

The storage behind ``gs://`` is replaced for the test by a local folder (etils'
``epath.testing.mock_epath``); what is checked is that every writer of the run's
files (history, genotype, plots, summaries) reaches it through epath, never
through ``open``/``os.makedirs`` on the URI string. For checkpoints, orbax
receives the URI and keeps its GCS code paths; only its calls that would reach
the network (tensorstore's ``gcs`` driver, the storage API) are pointed at the
same folder (:func:`fake_gcs`), so a search on ``gs://`` can stop and resume.
"""
import contextlib
import json
import os
import pathlib

import numpy as np
import pytest
from etils.epath import gpath
from etils.epath import testing as epath_testing

from unas_jax import jobs
from unas_jax.errors import WorkdirError
from unas_jax.spaces import darts_genotype
from unas_jax.spaces import darts_plot
from unas_jax.spaces import proxyless
from unas_jax.utils import files
from unas_jax.utils import metrics as metrics_lib
from unas_jax.utils import plots


@contextlib.contextmanager
def fake_bucket(root: pathlib.Path):
  """``gs://<path>`` -> ``root/<path>`` for every epath operation; local paths stay local.

  ``mock_epath`` replaces the backend of every scheme, local paths included (JAX's
  compilation cache goes through epath too): a ``gs://`` path is mapped into
  ``root`` and handed to epath's own local backend, anything else goes there as is.
  """
  def local(path):
    text = os.fspath(path)
    return str(root / text[len("gs://"):]) if text.startswith("gs://") else text

  def uri(path):
    """A path under ``root`` back to its ``gs://`` URI (what glob and walk return)."""
    return "gs://" + os.path.relpath(path, root)

  def redirect(fn_name):
    def fn(original, path, *args, **kwargs):
      if not os.fspath(path).startswith("gs://"):
        return original(path, *args, **kwargs)
      if fn_name in ("rename", "replace", "copy"):
        (dst, *args) = args
        return original(local(path), local(dst), *args, **kwargs)
      if fn_name == "glob":
        return [uri(p) for p in original(local(path))]
      if fn_name == "walk":
        return ((uri(d), dirs, names) for d, dirs, names in original(local(path), *args, **kwargs))
      return original(local(path), *args, **kwargs)
    return fn

  names = ("open", "exists", "isdir", "listdir", "glob", "walk", "stat", "makedirs", "mkdir", "remove", "rmtree",
           "rename", "replace", "copy")
  # With TensorFlow installed epath sends gs:// to tf.io.gfile whatever the mock says.
  with epath_testing.mock_epath(**{n: redirect(n) for n in names}), \
       pytest.MonkeyPatch.context() as mp:
    mp.setattr(gpath, "_is_tf_installed", lambda: False)
    mp.setattr(jobs, "gcs_client_installed", lambda: True)  # the fake bucket needs no storage client
    yield


def test_gs_workdir_without_the_storage_client_is_one_line(monkeypatch):
  monkeypatch.setattr(jobs, "gcs_client_installed", lambda: False)
  with pytest.raises(WorkdirError) as err:
    jobs.prepare_workdir("gs://runs/search")
  message = str(err.value)
  assert "\n" not in message and "google-cloud-storage" in message and ".[gcs]" in message


def test_run_files_reach_the_uri_through_epath(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a local folder named after the URI would appear here
  bucket = tmp_path / "bucket"
  bucket.mkdir()
  workdir = "gs://runs/search"
  with fake_bucket(bucket):
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


@contextlib.contextmanager
def fake_gcs(root: pathlib.Path):
  """:func:`fake_bucket`, plus orbax's and TensorBoard's own ways to reach GCS, into the same folder.

  orbax keeps its GCS code paths (tensorstore spec from ``get_kvstore_for_gcs``,
  deletion through ``gcs_utils.rmtree``, recorded in the dict yielded); where
  it would reach the network it is redirected:
  tensorstore gets a ``file`` kvstore under ``root`` instead of its ``gcs``
  driver, the bucket has no hierarchical namespace (asking needs
  google-cloud-storage and the network), and any other storage API call fails.
  TensorFlow's file system (clu's TensorBoard writer) gets the mapped local path.
  """
  from clu import metric_writers
  from orbax.checkpoint._src.path import gcs_utils
  seen = {"kvstore": [], "rmtree": [], "tensorboard": []}

  def kvstore(path):
    assert str(path).startswith("gs://"), path
    seen["kvstore"].append(str(path))
    return {"driver": "file", "path": str(root / str(path)[len("gs://"):])}

  def no_network(*args, **kwargs):
    raise AssertionError(f"the test's bucket has no storage API: {args}")

  rmtree = gcs_utils.rmtree

  def gcs_rmtree(path, **kwargs):
    seen["rmtree"].append(str(path))
    return rmtree(path, **kwargs)

  create_default_writer = metric_writers.create_default_writer

  def writer(logdir, **kwargs):
    assert str(logdir).startswith("gs://"), logdir
    seen["tensorboard"].append(str(logdir))
    return create_default_writer(str(root / str(logdir)[len("gs://"):]), **kwargs)

  with fake_bucket(root), pytest.MonkeyPatch.context() as mp:
    mp.setattr(gcs_utils, "get_kvstore_for_gcs", kvstore)
    mp.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
    mp.setattr(gcs_utils, "get_bucket", no_network)
    mp.setattr(gcs_utils, "cleanup_hns_folders", no_network)
    mp.setattr(gcs_utils, "rmtree", gcs_rmtree)
    mp.setattr(metric_writers, "create_default_writer", writer)
    yield seen


def test_checkpoints_on_a_gs_workdir_rotate_fall_back_and_restore_in_the_bucket(tmp_path, monkeypatch, capfd):
  """orbax gets the URI (its GCS code paths); steps rotate, and a damaged newest step is moved aside, in the bucket."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from unas_jax.utils import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel

  def state(step):
    return {"phi": jnp.arange(6.0).reshape(2, 3) + step, "step": jnp.asarray(step, jnp.int32)}

  monkeypatch.chdir(tmp_path)
  bucket = tmp_path / "bucket"
  bucket.mkdir()
  workdir = "gs://runs/ckpt"
  directory = bucket / "runs" / "ckpt" / "checkpoints"
  with fake_gcs(bucket) as seen:
    ckpt = checkpoint_lib.Checkpointer(workdir)
    assert str(ckpt.directory) == f"{workdir}/checkpoints"
    for step in (1, 2, 3):
      ckpt.save(step, state(step), {"step": step}, force=True)
    ckpt.close()
    assert sorted(os.listdir(directory)) == ["2", "3"]
    assert seen["rmtree"] == [f"{workdir}/checkpoints/1"]  # deleted by orbax's GCS deleter
    (directory / "3" / "state" / "_METADATA").write_bytes(b"\x00garbage")
    ckpt = checkpoint_lib.Checkpointer(workdir)
    restored, meta, step = ckpt.restore(state(0))
    assert step == 2 and meta == {"step": 2}
    np.testing.assert_array_equal(restored["phi"], state(2)["phi"])
    assert f"moved aside to {workdir}/checkpoints/3.damaged" in capfd.readouterr().err
    ckpt.save(4, state(4), {"step": 4}, force=True)
    ckpt.close()
    assert checkpoint_lib.Checkpointer(workdir).restore(state(0))[2] == 4
  assert seen["kvstore"] and all(p.startswith(f"{workdir}/checkpoints/") for p in seen["kvstore"])
  assert sorted(os.listdir(directory)) == ["2", "3.damaged", "4"]
  assert not [p for p in tmp_path.rglob("gs:*")], [p for p in tmp_path.rglob("gs:*")]


@pytest.mark.slow
def test_search_with_a_gs_workdir_resumes_from_the_bucket(tmp_path, monkeypatch):
  """A tiny DARTS search on ``gs://``, stopped after a checkpoint and resumed, ends as an uninterrupted local run."""
  import jax  # pylint: disable=import-outside-toplevel
  from unas_jax.search import darts as darts_search  # pylint: disable=import-outside-toplevel
  from unas_jax.utils import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
  from test_darts_search import tiny_config  # pylint: disable=import-error,import-outside-toplevel

  def config(**search):
    c = tiny_config(**search)
    c.checkpoint_every = 2
    return c

  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)  # a local folder named after the URI would appear here
  bucket = tmp_path / "bucket"
  bucket.mkdir()
  straight = tmp_path / "straight"
  darts_search.run(config(), str(straight))

  workdir = "gs://runs/search"
  with fake_gcs(bucket) as seen:
    assert jobs.prepare_workdir(workdir) == workdir
    assert darts_search.run(config(stop_at_step=3), workdir) == {"stopped_at": 3}
    assert checkpoint_lib.Checkpointer(workdir).all_steps() == [2, 3]
    resumed = darts_search.run(config(), workdir)
    assert resumed["steps"] == 6 and resumed["genotype"] == f"{workdir}/genotype/genotype.json"
    steps = checkpoint_lib.Checkpointer(workdir).all_steps()
  assert seen["kvstore"] and seen["tensorboard"] == [f"{workdir}/tensorboard"] * 2

  # Nothing local is named after the URI, in the working directory or anywhere else under tmp_path.
  assert not [p for p in tmp_path.rglob("gs:*")], [p for p in tmp_path.rglob("gs:*")]
  assert sorted(os.listdir(cwd)) == []
  # Everything is in the bucket; orbax took its GCS code paths (tensorstore spec, deletion of old steps).
  run = bucket / "runs" / "search"
  assert steps == [4, 6] and sorted(os.listdir(run / "checkpoints")) == ["4", "6"]
  assert sorted(seen["rmtree"]) == [f"{workdir}/checkpoints/2", f"{workdir}/checkpoints/3"]
  for name in ("history.jsonl", "summary.json", "search_curves.png", "genotype/genotype.json",
               "genotype/normal_cell.png"):
    assert (run / name).is_file(), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "tensorboard"))

  # The resumed run ends where the uninterrupted local one does: every array, the history, the genotype.
  a, meta_a = checkpoint_lib.Checkpointer(str(straight)).read()
  b, meta_b = checkpoint_lib.Checkpointer(str(run)).read()  # the bucket's folder, read as a local workdir
  assert meta_a["step"] == meta_b["step"] == 6
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert max(float(np.max(np.abs(p))) for p in jax.tree.leaves(a["phi"])) > 2e-3  # phi moved: not vacuous
  history = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
  assert history == [json.loads(l) for l in (straight / "history.jsonl").read_text().splitlines()]
  assert [r["step"] for r in history] == [2, 4, 6, 6]
  assert (darts_genotype.Genotype.load(run / "genotype" / "genotype.json")
          == darts_genotype.Genotype.load(straight / "genotype" / "genotype.json"))
