"""Evaluation networks of the DARTS space (unas_jax/nn/darts_network.py)."""
import json

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.evaluation import defaults, networks
from unas_jax.nn import darts_network as dn
from unas_jax.nn import functional, ops
from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype
from unas_jax.spaces.reference_counts import DARTS_SETTINGS, REFERENCE_COUNTS, aux_head_bn
from tree_checks import assert_trees_close

# Ground truth: the PyTorch reference networks (unas_jax/spaces/reference_counts.py).
REFERENCE = {k: v for k, v in REFERENCE_COUNTS.items() if k[1] in DARTS_SETTINGS}
SETTINGS = {name: kwargs for name, (kwargs, _) in DARTS_SETTINGS.items()}
IMAGE = {name: image for name, (_, image) in DARTS_SETTINGS.items()}
_aux_bn = aux_head_bn


@pytest.mark.parametrize("genotype,setting", sorted(REFERENCE))
def test_parameter_counts_equal_reference(genotype, setting):
  model = dn.abstract(genotype, aux_head_bn=_aux_bn(genotype), **SETTINGS[setting])
  params, without_aux, _ = REFERENCE[(genotype, setting)]
  assert dn.count_params(model) == params
  assert dn.count_params(model, with_aux=False) == without_aux


@pytest.mark.parametrize("genotype,setting", [("unas_cifar10", "cifar10"), ("unas_imagenet", "imagenet")])
def test_multiply_adds_equal_reference(genotype, setting):
  kwargs = dict(SETTINGS[setting])
  macs = dn.network_macs(genotype, IMAGE[setting], **kwargs)
  assert macs == REFERENCE[(genotype, setting)][2]
  if setting == "imagenet":
    assert macs < 600e6  # the mobile setting


def test_aux_head_bn_is_the_only_difference_between_the_imagenet_heads():
  with_bn = dn.abstract("darts_v2", aux_head_bn=True, **SETTINGS["imagenet"])
  without = dn.abstract("darts_v2", aux_head_bn=False, **SETTINGS["imagenet"])
  assert dn.count_params(with_bn) - dn.count_params(without) == 2 * 768
  assert dn.count_params(with_bn, with_aux=False) == dn.count_params(without, with_aux=False)


def test_jaxpr_macs_counts_convolutions_and_matmuls():
  def f(x, k, dw, m):
    y = jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    z = jax.lax.conv_general_dilated(y, dw, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=8)
    return jnp.mean(z, axis=(1, 2)) @ m
  args = (jnp.zeros((1, 8, 8, 3)), jnp.zeros((3, 3, 3, 8)), jnp.zeros((3, 3, 1, 8)), jnp.zeros((8, 5)))
  jaxpr = jax.make_jaxpr(jax.jit(f))(*args).jaxpr  # inside a pjit: counted through the call
  assert dn.jaxpr_macs(jaxpr) == 4 * 4 * 8 * 27 + 4 * 4 * 8 * 9 + 8 * 5


def _kwargs(**kwargs):
  return dict(dict(network="cifar", num_classes=10, channels=4, num_cells=3), **kwargs)


def _x(n=4, size=32):
  return jax.random.normal(jax.random.key(1), (n, size, size, 3))


def _shapes(genotype="unas_cifar10", *, size=32, train=False, **kwargs):
  """Output shapes of ``model(x, train=...)`` by abstract evaluation (no compile, no compute)."""
  model_def, _, w, stats = functional.split(dn.abstract(genotype, **_kwargs(**kwargs)))
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  return jax.eval_shape(lambda w, stats, x: functional.apply(model_def, w, stats, x, train=train,
                                                             key=jax.random.key(0))[0], w, stats, x)


class _Tiny:
  """A 3-cell, 4-channel network with one jitted training forward and one jitted eval forward."""

  def __init__(self):
    # Shapes from the abstract network, values drawn here: building eagerly compiles one random
    # kernel per weight shape (tens of seconds on 2 cores), which these tests do not need.
    self.model_def, _, w, stats = functional.split(dn.abstract("unas_cifar10", **_kwargs()))
    rng = np.random.default_rng(0)
    self.w = jax.tree.map(lambda a: jnp.asarray(rng.uniform(-0.3, 0.3, a.shape), jnp.float32), w)
    self.stats = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.full(a.shape, 1.0 if p[-1].key == "var" else 0.0, jnp.float32), stats)
    self.train = jax.jit(lambda w, stats, x, key, rate: functional.apply(
        self.model_def, w, stats, x, train=True, key=key, drop_path=rate)[0])
    self.eval = jax.jit(lambda w, stats, x: functional.apply(self.model_def, w, stats, x, train=False)[0])


@pytest.fixture(scope="module")
def tiny():
  return _Tiny()


class _Info:
  num_classes = 10
  image_shape = (32, 32, 3)


def test_genotype_json_from_a_search_loads_and_builds(tmp_path):
  genotype = darts_genotype.get_genotype("unas_cifar100")
  (tmp_path / "genotype").mkdir()
  path = tmp_path / "genotype" / "genotype.json"
  darts_genotype.Genotype(genotype.normal, genotype.reduce, {"dataset": "cifar10", "step": 123}).save(path)
  model = defaults.model_block("darts")
  model.genotype = str(path)
  model.channels, model.num_cells = 8, 5
  network = networks.from_config(model)
  assert network.genotype == genotype
  built = network.abstract(_Info())
  reference = dn.abstract("unas_cifar100", network="cifar", num_classes=10, channels=8, num_cells=5)
  assert dn.count_params(built) == dn.count_params(reference)
  logits, aux = _shapes(str(path))
  assert logits.shape == (2, 10) and aux is None


def test_aux_head_only_in_training(tiny):
  logits, aux = tiny.train(tiny.w, tiny.stats, _x(), jax.random.key(0), 0.0)
  assert logits.shape == (4, 10) and aux.shape == (4, 10)
  logits, aux = tiny.eval(tiny.w, tiny.stats, _x())
  assert logits.shape == (4, 10) and aux is None
  _, aux = _shapes(auxiliary=False, train=True)
  assert aux is None


def test_eval_output_does_not_depend_on_the_aux_head(tiny):
  shifted = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 1.0 if dn.is_aux(tuple(getattr(k, "key", k) for k in p)) else v, tiny.w)
  np.testing.assert_array_equal(tiny.eval(tiny.w, tiny.stats, _x())[0], tiny.eval(shifted, tiny.stats, _x())[0])
  key = jax.random.key(0)
  logits, aux = tiny.train(tiny.w, tiny.stats, _x(), key, 0.0)
  logits2, aux2 = tiny.train(shifted, tiny.stats, _x(), key, 0.0)
  np.testing.assert_array_equal(logits, logits2)  # the aux head is a side branch
  assert not np.allclose(aux, aux2)  # ... used in training


def test_drop_path_is_identity_at_eval_and_active_in_training(tiny):
  x, key = _x(), jax.random.key(3)
  base = tiny.eval(tiny.w, tiny.stats, x)[0]
  eval_dropped = jax.jit(lambda w, stats, x, key, rate: functional.apply(
      tiny.model_def, w, stats, x, train=False, key=key, drop_path=rate)[0][0])
  np.testing.assert_array_equal(base, eval_dropped(tiny.w, tiny.stats, x, key, 0.6))
  train0 = tiny.train(tiny.w, tiny.stats, x, key, 0.0)[0]
  train6 = tiny.train(tiny.w, tiny.stats, x, key, 0.6)[0]
  assert not np.allclose(train0, train6)
  assert np.allclose(train0, tiny.train(tiny.w, tiny.stats, x, jax.random.key(4), 0.0)[0])


def test_drop_path_scales_kept_examples_by_one_over_keep():
  x = jnp.ones((1000, 2, 2, 3))
  y = np.asarray(dn.drop_path(x, 0.25, jax.random.key(0)))
  per_example = y[:, 0, 0, 0]
  assert set(np.unique(per_example)) <= {0.0, np.float32(1 / 0.75)}
  assert np.all(y == y[:, :1, :1, :1])  # one decision per example
  assert abs((per_example > 0).mean() - 0.75) < 0.05


def _cell_fn(nodes):
  cell = dn.Cell(nodes, 8, 8, 8, reduction=False, reduction_prev=False, rngs=nnx.Rngs(0))
  model_def, _, w, stats = functional.split(cell)
  return jax.jit(lambda s, rate: functional.merge(model_def, None, w, stats)(
      s, s, train=True, key=jax.random.key(1), drop_path_rate=rate))


def test_identity_edges_are_never_dropped():
  s = jax.random.normal(jax.random.key(0), (6, 8, 8, 8))
  skips = _cell_fn(tuple(darts_genotype.Node((0, 1), ("skip_connect", "skip_connect")) for _ in range(4)))
  np.testing.assert_array_equal(skips(s, 0.0), skips(s, 0.9))
  convs = _cell_fn(tuple(darts_genotype.Node((0, 1), ("sep_conv_3x3", "skip_connect")) for _ in range(4)))
  assert not np.allclose(convs(s, 0.0), convs(s, 0.9))


def test_nodes_may_read_the_same_state_twice_and_reduction_cells_halve():
  nodes = (darts_genotype.Node((0, 0), ("sep_conv_5x5", "skip_connect")),
           darts_genotype.Node((2, 2), ("avg_pool_3x3", "none")))
  cell = nnx.eval_shape(lambda: dn.Cell(nodes, 6, 6, 4, reduction=True, reduction_prev=False,
                                        rngs=dn.KeyStream(0)))
  assert len(cell.edges) == 4 and isinstance(cell.edges[1], ops.FactorizedReduce)
  model_def, _, w, stats = functional.split(cell)
  s = jax.ShapeDtypeStruct((2, 8, 8, 6), jnp.float32)
  out = jax.eval_shape(lambda w, stats, s: functional.merge(model_def, None, w, stats)(s, s, train=False),
                       w, stats, s)
  assert out.shape == (2, 4, 4, 8)


def test_darts_op_set_genotype_with_none_builds():
  g = darts_genotype.Genotype.from_indices([([0, 1], [0, 3])] * 4, [([0, 1], [1, 7])] * 4,
                                           op_names=darts.DARTS_OPS)
  logits, _ = _shapes(g)
  assert logits.shape == (2, 10)


def test_imagenet_network_shapes():
  logits, aux = _shapes("unas_imagenet", network="imagenet", num_classes=7, channels=8, num_cells=3,
                        auxiliary=False, size=64, train=True)
  assert logits.shape == (2, 7) and aux is None
  logits, aux = _shapes("unas_imagenet", network="imagenet", num_classes=7, channels=8, num_cells=3,
                        size=224, train=True)
  assert logits.shape == aux.shape == (2, 7)


def test_aux_head_on_a_wrong_size_fails_with_a_config_error():
  with pytest.raises(ConfigError, match="auxiliary head needs an 8x8"):
    _shapes(size=16, train=True)


def _one_line(excinfo):
  message = str(excinfo.value)
  assert "\n" not in message and message
  return message


def test_bad_genotypes_are_rejected_with_one_line_messages(tmp_path):
  with pytest.raises(ConfigError) as e:
    darts_genotype.Genotype.from_indices([([0, 1], [1, 7])] * 4, [([0, 1], [1, 1])] * 4)
  assert "op index 7" in _one_line(e)
  good = darts_genotype.get_genotype("unas_cifar10").to_dict()

  def write(d, name):
    path = tmp_path / name
    path.write_text(json.dumps(d))
    model = defaults.model_block("darts")
    model.genotype = str(path)
    return model

  later = json.loads(json.dumps(good))
  later["normal"][1]["inputs"] = [0, 4]
  with pytest.raises(ConfigError) as e:
    networks.from_config(write(later, "later.json"))
  assert "later node 2" in _one_line(e)
  bad_op = json.loads(json.dumps(good))
  bad_op["reduce"][0]["ops"] = ["sep_conv_9x9", "skip_connect"]
  with pytest.raises(ConfigError) as e:
    networks.from_config(write(bad_op, "bad_op.json"))
  assert "sep_conv_9x9" in _one_line(e)
  three = json.loads(json.dumps(good))
  three["normal"], three["reduce"] = three["normal"][:3], three["reduce"][:3]
  three.pop("normal_concat"), three.pop("reduce_concat")
  with pytest.raises(ConfigError) as e:
    networks.from_config(write(three, "three.json"))
  assert "3 nodes" in _one_line(e)
  with pytest.raises(ConfigError) as e:
    networks.from_config(write({"normal": []}, "nonsense.json"))
  _one_line(e)
  missing = defaults.model_block("darts")
  missing.genotype = str(tmp_path / "absent.json")
  with pytest.raises(ConfigError) as e:
    networks.from_config(missing)
  assert "does not exist" in _one_line(e)


def test_cell_runs_cover_the_repeated_cells_and_end_at_the_aux_head():
  model = dn.abstract("unas_cifar10", **_kwargs(num_cells=20))
  assert model.cell_runs == ((0, 1), (1, 2), (2, 6), (6, 7), (7, 8), (8, 13), (13, 14), (14, 15), (15, 20))
  # The auxiliary head reads the state after cell 13; a run ends there even where cells repeat.
  assert dn._cell_runs([False, True, True, True, True], 2) == ((0, 1), (1, 3), (3, 5))
  imagenet = dn.abstract("unas_cifar10", **_kwargs(network="imagenet", num_cells=14, channels=8))
  assert imagenet.cell_runs == ((0, 1), (1, 2), (2, 4), (4, 5), (5, 6), (6, 9), (9, 10), (10, 11), (11, 14))

  def scans(scan_cells):
    model_def, _, w, stats = functional.split(dn.abstract("unas_cifar10", **_kwargs(num_cells=20,
                                                                                 scan_cells=scan_cells)))
    jaxpr = jax.make_jaxpr(lambda w, stats, x: functional.apply(model_def, w, stats, x, train=True,
                                                                key=jax.random.key(0), drop_path=0.2))(
        w, stats, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
    return [e.params["length"] for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
  assert scans(True) == [4, 5, 5]
  assert scans(False) == []


# Slow (CI's slow pass): two programs of the network's forward and backward, 1.5-2.5 min on 2 cores.
@pytest.mark.slow
def test_scanned_cells_equal_unrolled_cells():
  """Logits, BatchNorm statistics and gradients of 11 cells (runs 5-6 and 9-10) with drop-path."""
  outs = {}
  for scan_cells in (True, False):
    model_def, _, w, stats = functional.split(dn.abstract(
        "unas_cifar10", **_kwargs(num_cells=11, auxiliary=False, scan_cells=scan_cells)))
    if scan_cells:
      assert [r for r in dn.abstract("unas_cifar10", **_kwargs(num_cells=11)).cell_runs if r[1] - r[0] > 1] == \
          [(5, 7), (9, 11)]
    rng = np.random.default_rng(0)
    w = jax.tree.map(lambda a: jnp.asarray(rng.uniform(-0.3, 0.3, a.shape), jnp.float32), w)
    stats = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.0, a.shape), jnp.float32), stats)

    def loss(w, stats, x):
      (logits, _), new_stats = functional.apply(model_def, w, stats, x, train=True, key=jax.random.key(2),
                                                drop_path=0.3)
      return jnp.sum(logits ** 2), (logits, new_stats)
    (_, (logits, new_stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(w, stats, _x(size=8))
    outs[scan_cells] = logits, new_stats, grads
  # The scan body is fused apart from its neighbours, so sums run in another order: the
  # tolerances of the remat comparisons (tests/test_precision.py).
  assert_trees_close(outs[True][:2], outs[False][:2], 1e-6)   # logits, BatchNorm statistics
  assert_trees_close(outs[True][2], outs[False][2], 1e-5)     # gradients
  # The scanned cells' statistics moved (they are written back after the scan).
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), outs[True][1], stats)
  assert all(jax.tree.leaves(moved["cells"][9]))
