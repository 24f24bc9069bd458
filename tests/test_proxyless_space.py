"""ProxylessNAS space: layout, genotypes and phi/arch helpers."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.spaces import proxyless as sp


def test_layout_matches_reference():
  specs = sp.layer_specs("gpu")
  assert len(specs) == 21
  assert [s.index for s in specs if not s.allows_zero] == [1, 5, 9, 13, 17, 21]
  assert [s.index for s in specs if s.stride == 2] == [1, 5, 9, 17]
  assert [s.index for s in specs if s.c_in != s.c_out] == [1, 5, 9, 13, 17, 21]
  assert specs[0].c_in == 24 and specs[0].c_out == 32 and specs[-1].c_out == 432
  assert sp.num_choices()["layer01"] == 6 and sp.num_choices()["layer02"] == 7
  assert sp.feature_sizes(224) == [112] + [56] * 4 + [28] * 4 + [14] * 8 + [7] * 5
  assert sp.FLAT_DIM == 6 * 6 + 15 * 7


def test_builtin_genotypes_are_the_reference_ones():
  unas = sp.BUILTIN_GENOTYPES["unas_proxyless"]
  gpu = sp.BUILTIN_GENOTYPES["proxylessnas_gpu"]
  assert str(unas) == ("k5_e3 k3_e3 0 0 k7_e3 0 0 0 k7_e3 k3_e3 k3_e3 k3_e3 k5_e3 k3_e3 k3_e3 k3_e3 "
                       "k7_e6 k7_e3 k7_e3 k7_e3 k7_e6")
  assert str(gpu) == ("k5_e3 0 0 0 k7_e3 0 0 k3_e3 k7_e6 0 0 k5_e3 k5_e6 0 k3_e3 k5_e3 k7_e6 k7_e6 k7_e6 "
                      "k5_e6 k7_e6")
  assert unas.num_zero == 5 and gpu.num_zero == 8


@pytest.mark.parametrize("ops, match", [
    (["k9_e3"] + ["k3_e3"] * 20, "unknown ProxylessNAS op"),
    (["zero"] + ["k3_e3"] * 20, "layer 1 cannot be 'zero'"),
    (["k3_e3"] * 12 + ["0"] + ["k3_e3"] * 8, "layer 13 cannot be 'zero'"),
    (["k3_e3"] * 20, "has 21 layer ops, got 20"),
])
def test_genotype_validation(ops, match):
  with pytest.raises(ConfigError, match=match):
    sp.ProxylessGenotype(tuple(ops))


def test_genotype_json_round_trip(tmp_path):
  g = sp.BUILTIN_GENOTYPES["unas_proxyless"]
  path = tmp_path / "g.json"
  g.save(str(path))
  assert sp.ProxylessGenotype.load(str(path)) == g
  assert sp.get_genotype(str(path)) == g
  data = json.loads(path.read_text())
  assert data["version"] == 1 and data["ops"][2] == "zero"
  data["version"] = 99
  with pytest.raises(ConfigError, match="version 99"):
    sp.ProxylessGenotype.from_dict(data)
  with pytest.raises(ConfigError, match="not valid JSON"):
    sp.ProxylessGenotype.from_json("{")
  with pytest.raises(ConfigError, match="unknown ProxylessNAS genotype"):
    sp.get_genotype("no_such_net")


def test_phi_arch_helpers():
  phi = sp.init_phi(jax.random.key(0), scale=1.0)
  assert {k: v.shape for k, v in phi.items()} == {s.name: (s.num_choices,) for s in sp.layer_specs()}
  g = sp.genotype_from_phi(phi)
  assert g.indices == tuple(int(np.argmax(phi[n])) for n in sp.LAYER_NAMES)
  gs = sp.random_genotypes(0, 5)
  arch = sp.genotype_to_arch(gs)
  assert arch["layer02"].shape == (5, 7)
  assert sp.genotypes_from_arch(arch) == gs
  flat = sp.flatten_arch(arch)
  np.testing.assert_array_equal(flat, sp.genotypes_to_flat(gs))
  back = sp.unflatten_arch(flat)
  for n in sp.LAYER_NAMES:
    np.testing.assert_array_equal(back[n], arch[n])
  assert sp.genotype_from_phi({n: jnp.log(arch[n][0] + 1e-3) for n in sp.LAYER_NAMES}) == gs[0]
  with pytest.raises(ConfigError, match="layer01..layer21"):
    sp.genotype_from_phi({"layer01": jnp.zeros(6)})
  with pytest.raises(ConfigError, match="expected \\[K\\] with K = 7"):
    sp.genotype_from_phi({**phi, "layer02": jnp.zeros(6)})


def test_random_genotypes_cover_every_choice():
  gs = sp.random_genotypes(1, 400)
  counts = sp.genotypes_to_flat(gs).sum(0)
  assert counts.min() > 20  # uniform per layer: ~400/7 each

