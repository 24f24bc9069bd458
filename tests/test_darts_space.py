"""The DARTS search space: op sets, phi layout, factorised edge weights, pairing penalty, genotypes."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.estimators import categorical
from unas_jax.objectives import pairing
from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype
from unas_jax.spaces import darts_plot


def test_op_sets():
  assert darts.op_set("unas7") == darts.UNAS_OPS
  assert darts.op_set("unas5") == ("skip_connect", "sep_conv_3x3", "max_pool_3x3", "dil_conv_3x3", "sep_conv_5x5")
  assert darts.op_set("unas4") == darts.UNAS_OPS[:4]
  assert darts.op_set("unas3") == ("skip_connect", "sep_conv_3x3", "max_pool_3x3")
  assert darts.op_set("darts8")[0] == "none" and len(darts.op_set("darts8")) == 8
  assert darts.op_set(["sep_conv_3x3", "skip_connect"]) == ("sep_conv_3x3", "skip_connect")
  assert darts.op_set("sep_conv_3x3, skip_connect") == ("sep_conv_3x3", "skip_connect")


@pytest.mark.parametrize("spec,match", [
    ("unas6", "unknown op set 'unas6'.*unas7"),
    (["sep_conv_3x3", "conv_1x1"], "unknown op 'conv_1x1'; valid DARTS op names: none, max_pool_3x3"),
    (["skip_connect", "skip_connect"], "names an op twice"),
    ([], "empty"),
])
def test_bad_op_sets(spec, match):
  with pytest.raises(ConfigError, match=match):
    darts.op_set(spec)


def test_space_shapes_and_init():
  space = darts.DartsSpace("unas5")
  assert space.num_ops == 5
  shapes = space.phi_shapes()
  assert shapes["normal"] == {"inputs_0": (2, 2), "inputs_1": (2, 3), "inputs_2": (2, 4), "inputs_3": (2, 5),
                              "ops": (4, 2, 5)}
  assert shapes["reduce"] == shapes["normal"]
  phi = darts.init_phi(jax.random.key(0), space, scale=1e-3)
  assert jax.tree.map(jnp.shape, phi) == shapes
  assert float(jnp.max(jnp.abs(phi["reduce"]["ops"]))) < 1e-2
  zeros = darts.init_phi(jax.random.key(0), space, scale=0.0)
  assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(zeros))
  assert space.num_decisions() == 32
  with pytest.raises(ConfigError, match="num_nodes"):
    darts.DartsSpace("unas7", num_nodes=0)


def _sample(space, s, key=0, tau=0.7):
  phi = darts.init_phi(jax.random.key(key), space, scale=1.0)
  return categorical.sample(jax.random.key(key + 1), categorical.soften(phi), tau=tau, sample_shape=(s,))


def test_edge_weights_are_the_outer_products():
  space = darts.DartsSpace("unas7")
  zeta = _sample(space, 3).zeta["normal"]
  weights = darts.edge_weights(zeta)
  assert [w.shape for w in weights] == [(3, j + 2, 7) for j in range(4)]
  for j, w in enumerate(weights):
    for s in range(3):
      ia, ib = np.asarray(zeta[f"inputs_{j}"][s])
      oa, ob = np.asarray(zeta["ops"][s, j])
      np.testing.assert_allclose(w[s], np.outer(ia, oa) + np.outer(ib, ob), rtol=1e-6)
  # Relaxed weights of a node sum to 2 (two edges, each a product of two simplex points).
  np.testing.assert_allclose(jnp.sum(weights[3], axis=(1, 2)), 2.0, rtol=1e-5)


def test_edge_weights_of_a_one_hot_sample_select_the_genotype():
  space = darts.DartsSpace("unas7")
  genotype = darts_genotype.get_genotype("unas_cifar100")
  z = darts_genotype.genotype_to_arch(genotype, space)
  for cell_type in darts.CELL_TYPES:
    for j, (w, node) in enumerate(zip(darts.edge_weights(z[cell_type]), genotype.cell(cell_type))):
      want = np.zeros((j + 2, 7))
      for i, op in zip(node.inputs, node.ops):
        want[i, space.op_index(op)] += 1  # both selectors may pick the same input
      np.testing.assert_array_equal(w[0], want)


def _one_hot_arch(space, nodes_normal, nodes_reduce):
  g = darts_genotype.Genotype.from_indices(nodes_normal, nodes_reduce, space.op_names)
  return darts_genotype.genotype_to_arch(g, space)


def test_pairing_penalty_on_hand_made_cases():
  space = darts.DartsSpace("unas3")
  distinct = [([0, 1], [0, 0]), ([0, 1], [1, 1]), ([0, 0], [0, 1]), ([2, 3], [2, 1])]
  arch = _one_hot_arch(space, distinct, distinct)
  np.testing.assert_array_equal(pairing.pairing_penalty(arch), [0.0])
  # Same input and same op in normal nodes 0 and 3 and reduction node 1.
  normal = [([1, 1], [2, 2]), ([0, 1], [1, 1]), ([0, 0], [0, 1]), ([4, 4], [1, 1])]
  reduce = [([0, 1], [0, 0]), ([2, 2], [0, 0]), ([0, 0], [0, 1]), ([2, 3], [2, 1])]
  np.testing.assert_array_equal(pairing.pairing_penalty(_one_hot_arch(space, normal, reduce)), [3.0])
  # Uniform relaxed selectors: sum_j (1 / (j + 2)) (1 / K), twice.
  uniform = {t: {leaf: jnp.full((1, *shape), 1.0 / shape[-1]) for leaf, shape in cell.items()}
             for t, cell in space.phi_shapes().items()}
  want = 2 * sum(1.0 / (j + 2) / 3 for j in range(4))
  np.testing.assert_allclose(pairing.pairing_penalty(uniform), [want], rtol=1e-6)
  # Per sample, equal to the inner product of the outer products.
  zeta = _sample(space, 4).zeta
  total = 0.0
  for t in darts.CELL_TYPES:
    for j in range(4):
      a = zeta[t][f"inputs_{j}"][:, 0, :, None] * zeta[t]["ops"][:, j, 0, None, :]
      b = zeta[t][f"inputs_{j}"][:, 1, :, None] * zeta[t]["ops"][:, j, 1, None, :]
      total = total + jnp.sum(a * b, axis=(1, 2))
  np.testing.assert_allclose(pairing.pairing_penalty(zeta), total, rtol=1e-5)


# The published cells of NVlabs/unas darts/genotypes.py, decoded by hand from their op indices
# with that file's primitive list (0 skip_connect, 1 sep_conv_3x3, 2 max_pool_3x3,
# 3 dil_conv_3x3, 4 sep_conv_5x5, 5 avg_pool_3x3, 6 sep_conv_7x7): op names, not indices, so a
# wrong op order in darts.UNAS_OPS (or a wrong decoding) fails here.
S3, S5, S7, D3, SK, AV = "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3", "skip_connect", "avg_pool_3x3"
PUBLISHED = {
    "unas_cifar10": (
        [((0, 0), (S5, SK)), ((0, 1), (SK, D3)), ((0, 1), (S3, D3)), ((1, 0), (S3, D3))],
        [((0, 0), (S3, S5)), ((1, 0), (SK, S3)), ((1, 0), (AV, SK)), ((3, 1), (S5, AV))]),
    "unas_cifar100": (
        [((0, 0), (S3, D3)), ((1, 0), (D3, S3)), ((0, 1), (SK, S3)), ((1, 0), (S5, S3))],
        [((0, 0), (S7, S3)), ((1, 0), (S3, S5)), ((1, 0), (S7, D3)), ((0, 3), (D3, S3))]),
    "unas_imagenet": (
        [((0, 0), (S3, SK)), ((0, 1), (S3, SK)), ((1, 0), (S3, S5)), ((0, 1), (S3, D3))],
        [((0, 1), (S5, S3)), ((0, 1), (S5, S3)), ((1, 0), (S5, D3)), ((3, 1), (D3, S3))]),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_builtin_unas_genotypes(name):
  g = darts_genotype.get_genotype(name)
  normal, reduce = PUBLISHED[name]
  assert [(n.inputs, n.ops) for n in g.normal] == normal
  assert [(n.inputs, n.ops) for n in g.reduce] == reduce
  assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
  g.validate(op_names=darts.UNAS_OPS)


def test_builtin_darts_v2():
  g = darts_genotype.get_genotype("darts_v2")
  assert [(n.inputs, n.ops) for n in g.normal] == [
      ((0, 1), ("sep_conv_3x3", "sep_conv_3x3")), ((0, 1), ("sep_conv_3x3", "sep_conv_3x3")),
      ((1, 0), ("sep_conv_3x3", "skip_connect")), ((0, 2), ("skip_connect", "dil_conv_3x3"))]
  assert [(n.inputs, n.ops) for n in g.reduce] == [
      ((0, 1), ("max_pool_3x3", "max_pool_3x3")), ((2, 1), ("skip_connect", "max_pool_3x3")),
      ((0, 2), ("max_pool_3x3", "skip_connect")), ((2, 1), ("skip_connect", "max_pool_3x3"))]
  g.validate(op_names=darts.DARTS_OPS)
  with pytest.raises(ConfigError, match="not in the op set"):
    g.validate(op_names=darts.UNAS_OPS[:3])


def test_unknown_builtin_genotype_lists_names():
  with pytest.raises(ConfigError, match="'unas_mnist' is neither a built-in genotype.*unas_cifar10.*darts_v2"):
    darts_genotype.get_genotype("unas_mnist")


@pytest.mark.parametrize("name", sorted(darts_genotype.BUILTIN_GENOTYPES))
def test_json_round_trip(name, tmp_path):
  g = darts_genotype.get_genotype(name)
  g = darts_genotype.Genotype(g.normal, g.reduce, {"dataset": "cifar10", "step": 12})
  text = g.to_json()
  assert sum(line.startswith('    {"inputs"') for line in text.splitlines()) == 8  # one line per node
  d = json.loads(text)
  assert d["format"] == "unas_jax.darts_genotype" and d["version"] == 1
  back = darts_genotype.Genotype.from_json(text)
  assert back == g and back.meta == g.meta and back.to_json() == text
  path = tmp_path / "genotype.json"
  g.save(path)
  loaded = darts_genotype.Genotype.load(path, num_nodes=4)
  assert loaded == g and loaded.to_dict() == g.to_dict()
  assert darts_genotype.get_genotype(str(path)) == g
  assert darts_genotype.get_genotype(name) is darts_genotype.BUILTIN_GENOTYPES[name]
  assert darts_genotype.get_genotype(loaded) is loaded


def _genotype_dict(**changes):
  d = darts_genotype.get_genotype("unas_cifar10").to_dict()
  d.update(changes)
  return d


def _node(inputs, ops):
  return {"inputs": inputs, "ops": ops}


@pytest.mark.parametrize("changes,match", [
    ({"normal": [_node([0, 0], ["sep_conv_3x3", "sep_conv_9x9"])] + _genotype_dict()["normal"][1:]},
     "unknown op in normal node 0 'sep_conv_9x9'; valid DARTS op names"),
    ({"normal": [_node([0, 2], ["sep_conv_3x3", "skip_connect"])] + _genotype_dict()["normal"][1:]},
     "normal node 0 has input 2, which refers to itself"),
    ({"reduce": _genotype_dict()["reduce"][:1] + [_node([0, 5], ["sep_conv_3x3", "skip_connect"])] +
      _genotype_dict()["reduce"][2:]}, "reduce node 1 has input 5, which refers to the later node 3"),
    ({"normal": [_node([-1, 0], ["sep_conv_3x3", "skip_connect"])] + _genotype_dict()["normal"][1:]},
     "inputs are integers >= 0"),
    ({"normal": [_node([0], ["sep_conv_3x3"])] + _genotype_dict()["normal"][1:]}, "exactly two inputs"),
    ({"normal_concat": [2, 3, 4]}, "concatenates every intermediate node"),
    ({"version": 2}, "unsupported genotype version 2"),
    ({"format": "darts"}, "not a DARTS genotype"),
    ({"extra": 1}, "unknown genotype keys"),
])
def test_bad_genotypes_are_rejected(changes, match):
  with pytest.raises(ConfigError, match=match):
    darts_genotype.Genotype.from_dict(_genotype_dict(**changes))


def test_wrong_number_of_nodes():
  d = _genotype_dict()
  d["normal"], d["reduce"] = d["normal"][:3], d["reduce"][:3]
  d["normal_concat"], d["reduce_concat"] = [2, 3, 4], [2, 3, 4]
  assert darts_genotype.Genotype.from_dict(d).num_nodes == 3  # valid on its own
  with pytest.raises(ConfigError, match="has 3 nodes; this search space has 4"):
    darts_genotype.Genotype.from_dict(d, num_nodes=4)
  d["reduce"] = _genotype_dict()["reduce"]
  del d["reduce_concat"]
  with pytest.raises(ConfigError, match="normal cell has 3 nodes and its reduction cell 4"):
    darts_genotype.Genotype.from_dict(d)


def test_op_index_out_of_range():
  g = darts_genotype.get_genotype("unas_cifar100")  # its reduction cell uses op 6 (sep_conv_7x7)
  normal, reduce = (g.to_indices(darts.UNAS_OPS)[t] for t in ("normal", "reduce"))
  with pytest.raises(ConfigError, match="op index 6; the op set has 5 ops"):
    darts_genotype.Genotype.from_indices(normal, reduce, darts.op_set("unas5"))


def test_bad_files(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    darts_genotype.Genotype.load(tmp_path / "missing.json")
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ConfigError, match="not valid JSON"):
    darts_genotype.Genotype.load(bad)


def test_genotype_from_phi_is_the_argmax_of_every_selector():
  space = darts.DartsSpace("unas7")
  want = darts_genotype.get_genotype("unas_cifar10")
  z = darts_genotype.genotype_to_arch(want, space)
  phi = jax.tree.map(lambda a: 3.0 * a[0] + 0.1 * jax.random.normal(jax.random.key(0), a[0].shape), z)
  assert darts_genotype.genotype_from_phi(phi, space) == want
  with pytest.raises(ConfigError, match="expected \\(4, 2, 5\\)"):
    darts_genotype.genotype_from_phi(phi, darts.DartsSpace("unas5"))
  with pytest.raises(ConfigError, match="uses op 'dil_conv_3x3', which is not in the op set"):
    darts_genotype.genotype_to_arch(darts_genotype.get_genotype("darts_v2"), darts.DartsSpace("unas3"))


def test_plot_cell(tmp_path):
  g = darts_genotype.get_genotype("unas_cifar10")
  for which in darts.CELL_TYPES:
    path = tmp_path / f"{which}.png"
    darts_plot.plot_cell(g, which, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
  with pytest.raises(ConfigError, match="unknown cell type"):
    darts_plot.plot_cell(g, "middle", tmp_path / "x.png")
