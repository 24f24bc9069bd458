"""ProxylessNAS supernet and discrete network: equality on one-hot archs, counts."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.nn import functional as F
from unas_jax.nn import proxyless_network as pn
from unas_jax.nn import proxyless_supernet as ps
from unas_jax.spaces import proxyless as sp
from tree_checks import assert_trees_close

SMALL = (8, 8, 8, 16, 16, 24, 24, 32, 64)
# The library depthwise kernel compiles ~5x faster than shifted slices; both are tested
# equal in test_depthwise.py, and every comparison here uses one implementation on both sides.
IMPL = "xla"


def _jit_apply(model_def):
  """``functional.apply`` jitted (eager dispatch compiles every op of 126 MBConvs one by one)."""
  @jax.jit
  def run(w, stats, x, arch, key):
    return F.apply(model_def, w, stats, x, arch, train=False, key=key)

  @jax.jit
  def run_train(w, stats, x, arch, key):
    return F.apply(model_def, w, stats, x, arch, train=True, key=key)
  return lambda w, stats, x, arch=None, *, train, key=None: (run_train if train else run)(w, stats, x, arch, key)


@pytest.fixture(scope="module")
def supernet():
  model = ps.ProxylessSupernet(SMALL, 10, rngs=nnx.Rngs(0), zero_dropout=0.0, depthwise_impl=IMPL)
  model_def, phi, w, stats = F.split(model)
  return model_def, phi, w, stats, _jit_apply(model_def)


def _random_stats(stats, seed):
  """BatchNorm statistics away from (0, 1), so eval mode exercises them."""
  rng = np.random.default_rng(seed)
  def leaf(path, x):
    if path[-1].key == "var":
      return jnp.asarray(rng.uniform(0.5, 2.0, x.shape), x.dtype)
    return jnp.asarray(rng.normal(0.0, 0.3, x.shape), x.dtype)
  return jax.tree_util.tree_map_with_path(leaf, stats)


def test_supernet_phi_is_the_space_layout(supernet):
  _, phi, _, _, _ = supernet
  assert {k: v.shape for k, v in phi.items()} == {s.name: (s.num_choices,) for s in sp.layer_specs()}


@pytest.mark.parametrize("train", [False, True])
def test_supernet_one_hot_equals_discrete_network(supernet, train):
  _, _, w, stats, apply = supernet
  stats = _random_stats(stats, 1)
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  for g in [sp.BUILTIN_GENOTYPES["unas_proxyless"], sp.BUILTIN_GENOTYPES["proxylessnas_gpu"]]:
    y_super, st_super = apply(w, stats, x, sp.genotype_to_arch(g), train=train, key=jax.random.key(1))
    net_def, _, _, _ = F.split(pn.ProxylessNetwork(g, SMALL, 10, rngs=nnx.Rngs(5), depthwise_impl=IMPL))
    w_net, stats_net = ps.network_weights_from_supernet(g, w, stats)
    y_net, st_net = _jit_apply(net_def)(w_net, stats_net, x, train=train)
    np.testing.assert_allclose(y_super, y_net, rtol=1e-5, atol=1e-5)
    if train:  # the chosen ops' running statistics move identically
      _, st_cut = ps.network_weights_from_supernet(g, w, st_super)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), st_cut, st_net)


def test_supernet_per_example_archs(supernet):
  """S == batch: each example is computed by its own architecture (eval mode)."""
  _, _, w, stats, apply = supernet
  gs = sp.random_genotypes(3, 3)
  x = jax.random.normal(jax.random.key(2), (3, 32, 32, 3))
  y, _ = apply(w, stats, x, sp.genotype_to_arch(gs), train=False)
  for i, g in enumerate(gs):
    y_i, _ = apply(w, stats, x[i:i + 1], sp.genotype_to_arch(g), train=False)
    np.testing.assert_allclose(y[i], y_i[0], rtol=1e-5, atol=1e-5)


def test_supernet_relaxed_arch_mixes_ops(supernet):
  model_def, phi, w, stats, _ = supernet
  x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
  uniform = {k: jnp.full((1,) + v.shape, 1.0 / v.shape[-1]) for k, v in phi.items()}
  y, _ = jax.jit(lambda w, s, x, a: F.apply(model_def, w, s, x, a, train=False))(w, stats, x, uniform)
  assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))
  with pytest.raises(ConfigError, match="S = 1 or S = batch"):
    jax.eval_shape(lambda w, s, x, a: F.apply(model_def, w, s, x, a, train=False), w, stats, x,
                   {k: jnp.ones((3,) + v.shape) for k, v in phi.items()})


def test_zero_dropout_needs_key_and_is_active_in_training():
  model_def, phi, w, stats = F.split(ps.ProxylessSupernet(SMALL, 10, rngs=nnx.Rngs(0), depthwise_impl=IMPL))
  arch = sp.genotype_to_arch(sp.all_zero_genotype())
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  with pytest.raises(ConfigError, match="PRNG key"):
    jax.eval_shape(lambda w, s, x, a: F.apply(model_def, w, s, x, a, train=True), w, stats, x, arch)
  apply = _jit_apply(model_def)
  y1, _ = apply(w, stats, x, arch, train=True, key=jax.random.key(1))
  y2, _ = apply(w, stats, x, arch, train=True, key=jax.random.key(2))
  assert not np.allclose(y1, y2)
  e1, _ = apply(w, stats, x, arch, train=False)
  e2, _ = apply(w, stats, x, arch, train=False, key=jax.random.key(3))
  np.testing.assert_array_equal(e1, e2)


@pytest.mark.parametrize("name", sorted(sp.BUILTIN_GENOTYPES))
def test_builtin_networks_build_and_count(name):
  net = pn.ProxylessNetwork(name, "gpu", 1000, rngs=nnx.Rngs(0))
  assert pn.count_module_params(net) == pn.count_params(name, "gpu", 1000)
  g = sp.BUILTIN_GENOTYPES[name]
  assert len(net.layers) == 21 - g.num_zero
  model_def, _, w, stats = F.split(pn.ProxylessNetwork(name, SMALL, 10, rngs=nnx.Rngs(0), depthwise_impl=IMPL))
  y, _ = _jit_apply(model_def)(w, stats, jnp.zeros((2, 32, 32, 3)), train=False)
  assert y.shape == (2, 10)


def test_proxylessnas_gpu_matches_published_counts():
  # mit-han-lab/proxylessnas logs/imagenet_gpu_log.txt: 7.12M params, 465.3M FLOPs (multiply-adds).
  assert pn.count_params("proxylessnas_gpu", "gpu", 1000) == 7_119_848
  assert round(pn.count_macs("proxylessnas_gpu", "gpu", 224, 1000) / 1e5) == 4653


def test_layer_runs_are_the_stages_repeated_layers():
  assert ps.layer_runs(sp.layer_specs("gpu")) == ((0, 1), (1, 4), (4, 5), (5, 8), (8, 9), (9, 12), (12, 13),
                                                  (13, 16), (16, 17), (17, 20), (20, 21))
  # Equal widths across a stage boundary do not join a run: the first layer of a stage never offers zero.
  assert ps.layer_runs(sp.layer_specs((8,) * 9))[:3] == ((0, 1), (1, 4), (4, 5))
  with pytest.raises(ConfigError, match="scan_layers"):
    ps.ProxylessSupernet(SMALL, 10, rngs=nnx.Rngs(0), scan_layers="yes")


# Slow (CI's slow pass): two programs of the network's forward and backward, 1.5-2.5 min on 2 cores.
@pytest.mark.slow
def test_scanned_layers_equal_unrolled_layers():
  """Training-mode logits, BatchNorm statistics and gradients (w and arch), the zero-op dropout on."""
  outs = {}
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  for scan_layers in (True, False):
    model = nnx.eval_shape(lambda: ps.ProxylessSupernet(SMALL, 10, rngs=nnx.Rngs(0), depthwise_impl=IMPL,
                                                         scan_layers=scan_layers))
    model_def, phi, w, stats = F.split(model)
    rng = np.random.default_rng(0)
    w = jax.tree.map(lambda a: jnp.asarray(rng.uniform(-0.3, 0.3, a.shape), jnp.float32), w)
    stats = _random_stats(stats, 1)
    arch = {k: jax.nn.softmax(jnp.asarray(rng.normal(0, 1, (4, *v.shape)), jnp.float32)) for k, v in phi.items()}
    jaxpr = jax.make_jaxpr(lambda w, arch: F.apply(model_def, w, stats, x, arch, train=True,
                                                   key=jax.random.key(2)))(w, arch)
    assert len([e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]) == (5 if scan_layers else 0)

    def loss(w, arch):
      logits, new_stats = F.apply(model_def, w, stats, x, arch, train=True, key=jax.random.key(2))
      return jnp.sum(logits ** 2), (logits, new_stats)
    (_, (logits, new_stats)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(w, arch)
    outs[scan_layers] = logits, new_stats, grads
  # The scan body is fused apart from its neighbours, so sums run in another order: the
  # tolerances of the remat comparisons (tests/test_precision.py).
  assert_trees_close(outs[True][:2], outs[False][:2], 1e-6)   # logits, BatchNorm statistics
  assert_trees_close(outs[True][2], outs[False][2], 1e-5)     # gradients
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), outs[True][1], stats)
  assert all(jax.tree.leaves(moved["layers"]["layer03"]))
