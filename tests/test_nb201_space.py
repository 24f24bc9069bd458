"""The NAS-Bench-201 space: strings, the supernet against discrete cells, the benchmark and latency tables."""
import csv
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from unas_jax.errors import ConfigError, DataError
from unas_jax.nn.nb201_supernet import NB201Supernet
from unas_jax.spaces import nb201
from unas_jax.spaces import nb201_tables as tables

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


# --------------------------------------------------------------------------- strings


def test_edge_order_follows_the_string():
  assert nb201.EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
  cell = nb201.Cell.from_string(EXAMPLE)
  assert cell.ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3",
                      "skip_connect")
  assert cell.incoming(3) == [(0, "skip_connect"), (1, "nor_conv_3x3"), (2, "skip_connect")]
  assert str(cell) == EXAMPLE
  assert nb201.Cell.from_string(ALL_SKIP).is_parameter_free() and not cell.is_parameter_free()


def test_every_cell_round_trips():
  cells = list(nb201.all_cells())
  assert len(cells) == nb201.NUM_CELLS == 15_625
  strings = [str(c) for c in cells]
  assert len(set(strings)) == 15_625
  for cell, text in zip(cells, strings):
    back = nb201.Cell.from_string(text)
    assert back == cell and str(back) == text
    assert nb201.Cell.from_indices(back.indices) == cell
  # cells -> one-hot arch -> cells
  arch = {"edges": jnp.concatenate([nb201.genotype_to_arch(c)["edges"] for c in cells[::97]])}
  assert nb201.genotypes_from_arch(arch) == cells[::97]


def test_every_cell_of_the_shared_table_round_trips(shared_data):
  with open(shared_data / "nb201_accuracy.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 15_625
  cells = set()
  for row in rows:
    cell = nb201.Cell.from_string(row["arch"])
    assert str(cell) == row["arch"]
    cells.add(cell)
  assert cells == set(nb201.all_cells())


@pytest.mark.parametrize("text,match", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "node groups"),
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_5x5"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "op~0"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "2 incoming"),
    ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "start and end"),
])
def test_malformed_strings_are_one_line_errors(text, match):
  with pytest.raises(ConfigError, match=match) as e:
    nb201.Cell.from_string(text)
  assert "\n" not in str(e.value)


def test_genotype_json_round_trips_and_names_a_wrong_file(tmp_path):
  """to_dict / from_dict and save / load, as the DARTS and ProxylessNAS genotypes'."""
  cell = nb201.Cell.from_string(EXAMPLE)
  d = cell.to_dict(meta={"step": 3})
  assert d["arch"] == EXAMPLE and d["ops"] == list(cell.ops) and d["meta"] == {"step": 3}
  assert nb201.Cell.from_dict(d) == cell and "meta" not in cell.to_dict()
  cell.save(str(tmp_path / "genotype.json"), {"step": 3})
  assert nb201.Cell.load(str(tmp_path / "genotype.json")) == cell
  with pytest.raises(ConfigError, match="not an NB201 genotype"):
    nb201.Cell.from_dict({"format": "unas_jax.darts_genotype"})
  (tmp_path / "other.json").write_text('{"format": "unas_jax.proxyless_genotype"}')
  with pytest.raises(ConfigError, match=r"other\.json: not an NB201 genotype \(format 'unas_jax.proxyless_genotype'\)"):
    nb201.Cell.load(str(tmp_path / "other.json"))


# --------------------------------------------------------------------------- supernet


@pytest.fixture(scope="module")
def supernet():
  return NB201Supernet(num_classes=5, channels=4, cells_per_stage=1, rngs=nnx.Rngs(params=0))


def _cells():
  return ([nb201.Cell.from_string(EXAMPLE), nb201.Cell.from_string(ALL_SKIP),
           nb201.Cell.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
           nb201.Cell.from_string("|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|")]
          + nb201.random_cells(3, 1))


@pytest.mark.parametrize("train", [True, False])
def test_one_hot_arch_equals_the_discrete_cell(supernet, train):
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  outputs = []
  for cell in _cells():
    mixed = supernet(x, nb201.genotype_to_arch(cell), train=train)
    direct = supernet.discrete(x, cell, train=train)
    np.testing.assert_allclose(np.asarray(mixed), np.asarray(direct), rtol=1e-6, atol=1e-6)
    outputs.append(np.asarray(direct))
  # Different cells give different networks: the comparison is not vacuous (cells whose
  # edges into node 3 are all 'none' all output zeros, so compare with the first cell only).
  assert min(np.max(np.abs(outputs[0] - b)) for b in outputs[1:]) > 1e-4


def test_per_example_arch_equals_each_discrete_cell(supernet):
  """S == batch: example n runs cell n (eval mode, where examples do not interact through BN)."""
  cells = _cells()[:4]
  x = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))
  arch = {"edges": jnp.concatenate([nb201.genotype_to_arch(c)["edges"] for c in cells])}
  mixed = supernet(x, arch, train=False)
  for n, cell in enumerate(cells):
    np.testing.assert_allclose(np.asarray(mixed[n]), np.asarray(supernet.discrete(x, cell, train=False)[n]),
                               rtol=1e-6, atol=1e-6)


def test_relaxed_edge_is_the_weighted_sum_of_its_ops(supernet):
  """A relaxed weight on edge 0 mixes that edge's ops linearly: sum_k w_k cell_k(x) for the cells
  that differ only in edge 0 (edges into node 2 'none', into node 3 'skip_connect')."""
  cell_module = supernet.layers[0]
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 4))
  w0 = jax.nn.softmax(jax.random.normal(jax.random.key(4), (5,)))
  w = jnp.concatenate([w0[None], jax.nn.one_hot(jnp.array([0, 0, 1, 1, 1]), 5)])[None]  # [1, 6, 5]
  out = cell_module(x, w, train=False)
  expected = sum(w0[k] * cell_module.discrete(x, nb201.Cell.from_indices([k, 0, 0, 1, 1, 1]), train=False)
                 for k in range(5))
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_bad_arch_is_refused(supernet):
  x = jnp.zeros((4, 8, 8, 3))
  with pytest.raises(ConfigError, match="edges"):
    supernet(x, {"edges": jnp.zeros((4, 6, 4))}, train=False)
  with pytest.raises(ConfigError, match="sample axis"):
    supernet(x, {"edges": jnp.zeros((3, 6, 5))}, train=False)


def test_network_matches_the_benchmark_layout():
  net = NB201Supernet(num_classes=10, channels=16, cells_per_stage=5, rngs=nnx.Rngs(params=0))
  kinds = [type(l).__name__ for l in net.layers]
  assert kinds == ["SearchCell"] * 5 + ["ResidualReduction"] + ["SearchCell"] * 5 + ["ResidualReduction"] + \
      ["SearchCell"] * 5
  assert [l.channels for l in net.layers if type(l).__name__ == "SearchCell"] == [16] * 5 + [32] * 5 + [64] * 5
  logits = jax.eval_shape(lambda x: net(x, nb201.genotype_to_arch(nb201.Cell.from_string(EXAMPLE)), train=False),
                          jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert logits.shape == (2, 10)


# --------------------------------------------------------------------------- tables


def _write(path, header, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return str(path)


def test_benchmark_lookup_returns_the_tables_values(tmp_path):
  cells = nb201.random_cells(0, 50)
  cells = list(dict.fromkeys(cells))
  acc = np.random.default_rng(0).uniform(10, 95, (len(cells), 3)).round(4)
  acc[3, 0] = acc[:, 0].max() + 0.5  # a unique best cell
  path = str(tmp_path / "bench.csv")
  tables.write_benchmark_csv(path, cells, acc)
  table = tables.BenchmarkTable(path)
  assert len(table) == len(cells)
  for n, cell in enumerate(cells):
    r = table.lookup(cell)
    assert (r.cifar10, r.cifar100, r.imagenet16_120) == tuple(float(a) for a in acc[n])
    assert r.rank_cifar10 == 1 + int(np.sum(acc[:, 0] > acc[n, 0]))
    assert table.lookup(str(cell)) == r
  assert table.lookup(cells[3]).rank_cifar10 == 1
  missing = next(c for c in nb201.all_cells() if c not in table)
  with pytest.raises(DataError, match="no row for the cell") as e:
    table.lookup(missing)
  assert "\n" not in str(e.value)


def test_shared_benchmark_table(shared_data):
  table = tables.BenchmarkTable(str(shared_data / "nb201_accuracy.csv"))
  s = table.summary()
  assert s["num_cells"] == 15_625
  # The figures the issue quotes for this table.
  assert round(s["best_cifar10"], 2) == 94.37 and round(s["mean_cifar10"], 2) == 87.06
  assert round(s["median_cifar10"], 2) == 90.75
  r = table.lookup(ALL_SKIP)
  assert round(r.cifar10, 2) == 54.30
  with open(shared_data / "nb201_accuracy.csv", newline="") as f:
    row = next(row for row in csv.DictReader(f) if row["arch"] == EXAMPLE)
  r = table.lookup(EXAMPLE)
  assert (r.cifar10, r.cifar100, r.imagenet16_120) == (float(row["cifar10"]), float(row["cifar100"]),
                                                       float(row["imagenet16_120"]))
  best = max(nb201.all_cells(), key=lambda c: table.lookup(c).cifar10)
  assert table.lookup(best).rank_cifar10 == 1


@pytest.mark.parametrize("header,rows,match", [
    (["arch", "cifar10", "cifar100"], [[EXAMPLE, 1, 2]], "header"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [[EXAMPLE, 1, 2]], "fields"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [["|bad~0|", 1, 2, 3]], "line 2"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [[EXAMPLE, "x", 2, 3]], "non-numeric"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [[EXAMPLE, "nan", 2, 3]], "non-finite"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [[EXAMPLE, 101, 2, 3]], "outside"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [[EXAMPLE, 1, 2, 3], [EXAMPLE, 1, 2, 3]], "repeats"),
    (["arch", "cifar10", "cifar100", "imagenet16_120"], [], "no rows"),
])
def test_malformed_benchmark_tables_are_one_line_errors(tmp_path, header, rows, match):
  path = _write(tmp_path / "t.csv", header, rows)
  with pytest.raises(DataError, match=match) as e:
    tables.BenchmarkTable(path)
  assert "\n" not in str(e.value)


def test_missing_benchmark_file(tmp_path):
  with pytest.raises(DataError, match="not a file"):
    tables.BenchmarkTable(str(tmp_path / "absent.csv"))


# --------------------------------------------------------------------------- latency table


def _latency_config(path, target_ms=100.0):
  return ml_collections.ConfigDict({
      "search": {"eps": 0.0},
      "latency": {"enabled": True, "source": "table", "table_path": path, "estimator": "relax",
                  "target_ms": target_ms, "penalty": "hinge", "c": 0.1, "warmup_steps": 0, "ridge_lambda": 1.0,
                  "surrogate_seed": 0, "test_fraction": 0.2}})


def _synthetic_latency_table(tmp_path, noise=0.0):
  """An additive latency table over all cells: ms = 1 + sum_e cost[e, op_e] (+ noise)."""
  rng = np.random.default_rng(0)
  cost = rng.uniform(0.0, 0.5, (nb201.NUM_EDGES, nb201.NUM_OPS))
  cells = list(nb201.all_cells())
  ms = 1.0 + nb201.cells_to_flat(cells) @ cost.reshape(-1) + noise * rng.standard_normal(len(cells))
  path = str(tmp_path / "latency.csv")
  tables.write_latency_csv(path, cells, ms)
  return path, cells, ms


def test_latency_table_surrogate(tmp_path):
  from unas_jax.latency import nb201_table
  path, cells, ms = _synthetic_latency_table(tmp_path, noise=0.02)
  hooks = nb201_table.NB201TableLatency(_latency_config(path), str(tmp_path / "work"))
  t = hooks.report["test"]
  assert hooks.report["num_test"] == 3125 and t["r2"] > 0.95 and t["mae_ms"] < 0.03
  assert os.path.exists(tmp_path / "work" / "latency" / "surrogate_report.json")
  # measure() returns the table's values for the cells of a one-hot batch.
  picks = [cells[i] for i in (0, 17, 15_624)]
  z = {"edges": np.concatenate([np.asarray(nb201.genotype_to_arch(c)["edges"]) for c in picks])}
  np.testing.assert_allclose(hooks.measure(z), [ms[0], ms[17], ms[15_624]], rtol=1e-6)
  # The control is differentiable in arch and predicts close to the table.
  pred = hooks.control_fn(hooks.control_params(), jax.tree.map(jnp.asarray, z))
  np.testing.assert_allclose(np.asarray(pred), [ms[0], ms[17], ms[15_624]], atol=0.1)
  grad = jax.grad(lambda a: jnp.sum(hooks.control_fn(hooks.control_params(), a)))(jax.tree.map(jnp.asarray, z))
  assert grad["edges"].shape == (3, 6, 5) and float(jnp.max(jnp.abs(grad["edges"]))) > 0


def test_latency_table_errors(tmp_path):
  from unas_jax.latency import nb201_table
  path, _, ms = _synthetic_latency_table(tmp_path)
  # The one target check of every latency source (unas_jax.latency.hooks.check_target).
  with pytest.raises(ConfigError, match=r"latency\.target_ms=\S+ is below the smallest reachable latency") as info:
    nb201_table.NB201TableLatency(_latency_config(path, target_ms=float(ms.min()) - 0.1), str(tmp_path / "w"))
  assert "fastest cell of the table" in str(info.value) and "\n" not in str(info.value)
  with pytest.raises(ConfigError, match="table_path"):
    nb201_table.NB201TableLatency(_latency_config(""), str(tmp_path / "w"))
  present = [EXAMPLE, ALL_SKIP, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", str(nb201.random_cells(5, 1)[0])]
  partial = _write(tmp_path / "partial.csv", ["arch", "ms"], [[a, 1.0 + n] for n, a in enumerate(present)])
  hooks = nb201_table.NB201TableLatency(_latency_config(partial), str(tmp_path / "w"))
  np.testing.assert_allclose(hooks.measure(nb201.genotype_to_arch(nb201.Cell.from_string(ALL_SKIP))), [2.0])
  missing = next(c for c in nb201.all_cells() if str(c) not in present)
  with pytest.raises(DataError, match="no row for the cell"):
    hooks.measure(nb201.genotype_to_arch(missing))
  bad = _write(tmp_path / "bad.csv", ["arch", "ms"], [[EXAMPLE, -1.0]])
  with pytest.raises(DataError, match="non-positive"):
    tables.LatencyTable(bad)


def test_disconnected_cells_by_hand():
  assert nb201.Cell.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|").is_disconnected()
  # Node 1 reached, but nothing from 0 or 1 reaches 3 except through node 2, which is cut off.
  assert nb201.Cell.from_string("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|").is_disconnected()
  assert not nb201.Cell.from_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|").is_disconnected()
  assert not nb201.Cell.from_string("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|").is_disconnected()


def test_disconnected_cells_are_exactly_the_benchmarks_chance_cells(shared_data):
  """Independent check: the benchmark trained every cell; a disconnected one outputs a constant."""
  table = tables.BenchmarkTable(str(shared_data / "nb201_accuracy.csv"))
  cells = list(nb201.all_cells())
  disconnected = [c for c in cells if c.is_disconnected()]
  assert {table.lookup(c).cifar10 for c in disconnected} == {10.0}
  assert min(table.lookup(c).cifar10 for c in cells if not c.is_disconnected()) > 40.0
  assert len(disconnected) == 341
