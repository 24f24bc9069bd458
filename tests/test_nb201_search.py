"""The NB201-space search end to end on a tiny supernet (digits, 8x8 images, C=4, N=1)."""
import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from unas_jax.errors import ConfigError, DataError
from unas_jax.search import nb201 as nb201_search
from unas_jax.spaces import nb201
from unas_jax.spaces import nb201_tables as tables
from unas_jax.utils import checkpoint as checkpoint_lib

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "nb201_cifar10.py")


@pytest.fixture(scope="module")
def bench_table(tmp_path_factory):
  """A synthetic benchmark table over all 15,625 cells (accuracy = a function of the cell)."""
  cells = list(nb201.all_cells())
  rng = np.random.default_rng(0)
  acc = rng.uniform(10, 95, (len(cells), 3)).round(4)
  path = str(tmp_path_factory.mktemp("bench") / "bench.csv")
  tables.write_benchmark_csv(path, cells, acc)
  return path


def tiny_config(table="", **search):
  spec = importlib.util.spec_from_file_location("nb201_cifar10", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("quick_digits")
  config.data.image_size = 8
  config.batch_size = 8
  config.model.channels = 4
  config.model.cells_per_stage = 1
  config.search.max_steps = 6
  config.search.init_epochs = 0.0
  config.log_every = 2
  config.eval_every = 3
  config.checkpoint_every = 100
  config.benchmark.table = table
  for k, v in search.items():
    config.search[k] = v
  return config


def _final_phi(workdir):
  state, meta = checkpoint_lib.Checkpointer(str(workdir)).read()
  return meta["step"], state["phi"]


# REINFORCE on L_train: the cheapest step to compile (no backward pass to phi through the
# network); resuming does not depend on the estimator, the loop and the state are shared.
RESUME = dict(estimator="reinforce", objective="train", baseline="moving_average")


@pytest.mark.slow
def test_search_writes_outputs_and_resumes_identically(tmp_path, bench_table):
  straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
  summary = nb201_search.run(tiny_config(bench_table, **RESUME), str(straight))
  genotype = json.loads(open(summary["genotype"]).read())
  cell = nb201.Cell.from_string(genotype["arch"])
  assert nb201.Cell.load(summary["genotype"]) == cell
  assert (straight / "genotype" / "cell.png").stat().st_size > 1000
  # The found cell's benchmark values are the table's.
  table = tables.BenchmarkTable(bench_table)
  assert summary["benchmark"] == table.lookup(cell).to_dict() == genotype["meta"]["benchmark"]
  history = [json.loads(l) for l in open(straight / "history.jsonl")]
  evals = [r for r in history if r.get("phase") == "eval"]
  assert [r["step"] for r in evals] == [3, 6]
  assert evals[-1]["bench_cifar10"] == table.lookup(cell).cifar10
  assert evals[-1]["bench_rank"] == table.lookup(cell).rank_cifar10

  # Interrupted at step 4 (as on SIGTERM), then the same command again.
  assert nb201_search.run(tiny_config(bench_table, stop_at_step=4, **RESUME), str(interrupted)) == {"stopped_at": 4}
  resumed = nb201_search.run(tiny_config(bench_table, **RESUME), str(interrupted))
  assert resumed["steps"] == 6 and resumed["arch"] == summary["arch"]
  (step_a, phi_a), (step_b, phi_b) = _final_phi(straight), _final_phi(interrupted)
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(phi_a), jax.tree.leaves(phi_b)):
    np.testing.assert_array_equal(a, b)
  # phi moved away from its initialisation (scale 1e-3): the comparison is not vacuous.
  assert float(np.max(np.abs(phi_a["edges"]))) > 2e-2


@pytest.mark.slow
@pytest.mark.parametrize("estimator,objective,baseline,sampling", [
    ("reinforce", "val", "leave_one_out", "per_example"),
    ("gumbel_softmax", "train", "moving_average", "shared")])
def test_other_estimators_run(tmp_path, estimator, objective, baseline, sampling):
  summary = nb201_search.run(tiny_config(estimator=estimator, objective=objective, baseline=baseline,
                                         max_steps=3, sampling=sampling), str(tmp_path))
  assert "benchmark" not in summary  # no table configured
  assert nb201.Cell.from_string(summary["arch"])


def _latency_table(tmp_path):
  """An additive latency table over all cells: 1 ms plus up to 0.3 ms per (edge, op)."""
  cells = list(nb201.all_cells())
  ms = 1.0 + nb201.cells_to_flat(cells) @ np.linspace(0.0, 0.3, 30)
  path = str(tmp_path / "latency.csv")
  tables.write_latency_csv(path, cells, ms)
  return cells, ms, path


@pytest.mark.slow
@pytest.mark.parametrize("penalty", ["hinge", "lagrangian"])
def test_latency_table_search(tmp_path, penalty):
  cells, ms, path = _latency_table(tmp_path)
  config = tiny_config(max_steps=3, **RESUME)
  config.latency.enabled = True
  config.latency.table_path = path
  config.latency.penalty = penalty
  config.latency.target_ms = float(np.quantile(ms, 0.05))
  summary = nb201_search.run(config, str(tmp_path / "w"))
  history = [json.loads(l) for l in open(tmp_path / "w" / "history.jsonl")]
  search = [r for r in history if r.get("phase") == "search"]
  assert search and all("latency_ms" in r and "latency_expected_ms" in r for r in search)
  if penalty == "lagrangian":
    # The multiplier starts at 0 and rises while E[lat] (about the table's mean) exceeds 0.95 x the 25% quantile.
    assert all("latency_lambda" in r for r in search) and search[-1]["latency_lambda"] > 0
  found = ms[cells.index(nb201.Cell.from_string(summary["arch"]))]
  lat = json.load(open(tmp_path / "w" / "genotype" / "latency.json"))
  assert lat["measured_ms"] == pytest.approx(found, rel=1e-6)
  assert summary["latency"]["ratio"] == pytest.approx(found / config.latency.target_ms, rel=1e-6)
  assert summary["latency"]["meets_target"] == (found <= config.latency.target_ms)
  # latency.selection=constrained_mode (the default): after 3 steps p_phi's mode is a random
  # cell (here 1.86 ms, above the 5% quantile); the found cell is the most probable one the
  # surrogate (R^2 > 0.99 below) prices under the target, and the mode is reported beside it.
  mode = summary["latency"]["mode"]
  assert summary["latency"]["selection"] == "constrained_mode" and not mode["meets_target"]
  assert found < mode["measured_ms"] and found <= 1.02 * config.latency.target_ms
  report = json.load(open(tmp_path / "w" / "latency" / "surrogate_report.json"))
  assert report["test"]["r2"] > 0.99


@pytest.mark.parametrize("penalty", ["hinge", "lagrangian"])
def test_target_below_the_fastest_cell_is_a_one_line_error(tmp_path, penalty):
  _, ms, path = _latency_table(tmp_path)
  config = tiny_config()
  config.latency.enabled = True
  config.latency.table_path = path
  config.latency.penalty = penalty
  config.latency.target_ms = float(ms.min()) * 0.9
  # The one target check of every latency source (unas_jax.latency.hooks.check_target).
  with pytest.raises(ConfigError, match=r"latency\.target_ms=\S+ is below the smallest reachable latency.*"
                                        r"the fastest cell of the table") as info:
    nb201_search.run(config, str(tmp_path / "w"))
  assert "\n" not in str(info.value)


def test_table_errors_are_one_line(tmp_path, bench_table):
  # A malformed table fails before the search starts.
  bad = tmp_path / "bad.csv"
  bad.write_text("arch,cifar10\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n")
  with pytest.raises(DataError, match="header"):
    nb201_search.run(tiny_config(str(bad)), str(tmp_path / "a"))
  with pytest.raises(DataError, match="not a file"):
    nb201_search.run(tiny_config(str(tmp_path / "absent.csv")), str(tmp_path / "b"))
  config = tiny_config()
  config.latency.enabled = True
  with pytest.raises(ConfigError, match="table_path"):
    nb201_search.run(config, str(tmp_path / "c"))


@pytest.mark.slow
def test_table_without_the_found_cell(tmp_path):
  # A valid table that lacks the cells the search finds: a one-line error at the first look-up.
  path = str(tmp_path / "one.csv")
  tables.write_benchmark_csv(path, [nb201.Cell.from_indices([0] * 6)], np.array([[10.0, 5.0, 1.0]]))
  # Random logits (scale 1): the mode cell is not the table's one cell (all 'none').
  config = tiny_config(path, max_steps=3, phi_init_scale=1.0, **RESUME)
  with pytest.raises(DataError, match="no row for the cell") as e:
    nb201_search.run(config, str(tmp_path / "w"))
  assert "\n" not in str(e.value)


@pytest.mark.slow
def test_warmup_is_checkpointed_before_the_search_step_compiles(tmp_path):
  """The loop saves the w-only warm-up before the search step's first compile (a stop during it exits at once).

  Stopped one step into the search, the run holds the warm-up's checkpoint and its own;
  resumed, it ends where an uninterrupted run ends.
  """
  def config(**kw):
    c = tiny_config(max_steps=5, **RESUME, **kw)
    c.search.init_epochs = 2.5 / _steps_per_epoch(c)  # 2 w-only steps
    return c

  straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
  nb201_search.run(config(), str(straight))
  assert nb201_search.run(config(stop_at_step=3), str(interrupted)) == {"stopped_at": 3}
  assert checkpoint_lib.Checkpointer(str(interrupted)).all_steps() == [2, 3]
  history = [json.loads(l) for l in open(interrupted / "history.jsonl")]
  assert [r["phase"] for r in history if r.get("phase") in ("warmup", "search")][:1] == ["warmup"]
  nb201_search.run(config(), str(interrupted))
  (step_a, phi_a), (step_b, phi_b) = _final_phi(straight), _final_phi(interrupted)
  assert step_a == step_b == 5
  for a, b in zip(jax.tree.leaves(phi_a), jax.tree.leaves(phi_b)):
    np.testing.assert_array_equal(a, b)


def _steps_per_epoch(config) -> int:
  from unas_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  return data_lib.steps_per_epoch(data_lib.load(config.data), "search_train", config.batch_size)
