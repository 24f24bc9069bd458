"""The DARTS supernet: one-hot samples equal the discrete cell, the grouped evaluation equals the
edge-by-edge reference, per-example and shared architectures, both depthwise implementations."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.estimators import categorical
from unas_jax.nn import darts_supernet
from unas_jax.nn import functional
from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype

N, RES, CLASSES = 4, 8, 5


def _model(ops="unas7", channels=4, num_cells=3, impl="auto", seed=0, **kw):
  return darts_supernet.DartsSupernet(darts.DartsSpace(ops), num_classes=CLASSES, channels=channels,
                                      num_cells=num_cells, depthwise_impl=impl, rngs=nnx.Rngs(seed), **kw)


def _x(n=N, res=RES, seed=1):
  return jax.random.normal(jax.random.key(seed), (n, res, res, 3))


def _sample(model, s, seed=2, tau=0.4):
  phi = model.phi
  phi = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(seed), p.shape), phi)
  return categorical.sample(jax.random.key(seed + 1), categorical.soften(phi), tau=tau, sample_shape=(s,))


def _stats(model):
  return nnx.state(model, nnx.BatchStat).to_pure_dict()


def _close(a, b, tol=2e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = max(1.0, float(jnp.max(jnp.abs(y))))
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("ops,name", [("unas7", "unas_cifar10"), ("unas7", "unas_imagenet"), ("darts8", "darts_v2")])
@pytest.mark.parametrize("train", [True, False])
def test_one_hot_sample_equals_discrete_cell(ops, name, train):
  model = _model(ops)
  genotype = darts_genotype.get_genotype(name)
  z = darts_genotype.genotype_to_arch(genotype, model.space)  # S = 1, shared by the batch
  x = _x()
  a, b = nnx.clone(model), nnx.clone(model)
  mixed = a(x, z, train=train)
  discrete = b.discrete(x, genotype, train=train)
  _close(mixed, discrete)


def test_per_example_one_hot_equals_per_example_discrete_network():
  # Eval mode (running statistics), so each example's output depends on its own architecture only.
  model = _model()
  names = ["unas_cifar10", "unas_cifar100", "unas_imagenet"]
  genotypes = [darts_genotype.get_genotype(n) for n in names]
  archs = [darts_genotype.genotype_to_arch(g, model.space) for g in genotypes]
  z = jax.tree.map(lambda *a: jnp.concatenate(a), *archs)  # S = 3 = batch
  x = _x(n=3)
  out = model(x, z, train=False)
  for n, g in enumerate(genotypes):
    _close(out[n:n + 1], model.discrete(x[n:n + 1], g, train=False))


# unas3 in the default run; the full op sets take minutes each to compile on a 2-core CPU,
# so they run in CI's slow pass.
@pytest.mark.parametrize("ops", [pytest.param("unas7", marks=pytest.mark.slow),
                                 pytest.param("darts8", marks=pytest.mark.slow), "unas3"])
def test_grouped_evaluation_equals_edge_by_edge_reference(ops):
  model = _model(ops)
  zeta = _sample(model, N).zeta
  x = _x()
  a, b = nnx.clone(model), nnx.clone(model)
  _close(a(x, zeta, train=True), b(x, zeta, train=True, mode="reference"))
  _close(_stats(a), _stats(b))
  _close(a(x, zeta, train=False), b(x, zeta, train=False, mode="reference"))


# Slow (CI runs it in its slow pass): compiling the edge-by-edge reference takes minutes on a 2-core CPU.
@pytest.mark.slow
def test_gradients_equal_reference_under_jit():
  model = _model()
  model_def, _, w, stats = functional.split(model)
  zeta = _sample(model, N).zeta
  x = _x()
  y = jnp.arange(N) % CLASSES

  def loss(w, arch, mode):
    m = functional.merge(model_def, None, w, stats)
    logits = m(x, arch, train=True, mode=mode)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(N), y])

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
  got = grad(w, zeta, "batched")
  want = grad(w, zeta, "reference")
  _close(got, want, tol=1e-4)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(got))
  assert float(jnp.max(jnp.abs(got[1]["normal"]["ops"]))) > 0


# Slow (CI runs it in its slow pass): ~90 s of compiling both implementations' gradients.
@pytest.mark.slow
def test_depthwise_implementations_agree():
  zeta = None
  x = _x()
  outs, grads = [], []
  for impl in ("slices", "xla"):
    model = _model(impl=impl)
    if zeta is None:
      zeta = _sample(model, N).zeta
    model_def, _, w, stats = functional.split(model)

    def loss(arch, w):
      out, _ = functional.apply(model_def, w, stats, x, arch, train=True)
      return jnp.sum(out ** 2)

    outs.append(functional.apply(model_def, w, stats, x, zeta, train=True)[0])
    grads.append(jax.jit(jax.grad(loss, argnums=(0, 1)))(zeta, w))
  _close(outs[0], outs[1])
  _close(grads[0], grads[1], tol=1e-4)


def test_shared_and_per_example_arch_shapes():
  model = _model()
  x = _x()
  for s in (1, N):
    sample = _sample(model, s)
    for arch in (sample.z, sample.zeta):
      assert model(x, arch, train=True).shape == (N, CLASSES)
  with pytest.raises(ConfigError, match="sample axis is \\[2\\]; it must be 1 .* or the batch size 4"):
    model(x, _sample(model, 2).z, train=True)
  bad = _sample(model, 1).z
  del bad["reduce"]["inputs_3"]
  with pytest.raises(ConfigError, match="arch\\['reduce'\\]\\['inputs_3'\\] has shape None"):
    model(x, bad, train=True)
  with pytest.raises(ConfigError, match="needs an architecture sample"):
    model(x, None, train=True)


def test_functional_split_layout_and_genotype():
  space = darts.DartsSpace("unas5")
  model = darts_supernet.DartsSupernet(space, num_classes=CLASSES, channels=4, num_cells=3, rngs=nnx.Rngs(0))
  model_def, phi, w, stats = functional.split(model)
  assert jax.tree.map(jnp.shape, phi) == space.phi_shapes()
  assert model.genotype() == darts_genotype.genotype_from_phi(phi, space)
  sample = categorical.sample(jax.random.key(0), categorical.soften(phi), tau=0.4, sample_shape=(N,))
  out, new_stats = jax.jit(lambda w, s, a: functional.apply(model_def, w, s, _x(), a, train=True))(
      w, stats, sample.z)
  assert out.shape == (N, CLASSES)
  assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(new_stats), jax.tree.leaves(stats)))


# Parameter counts of the reference search networks (torch 2.13.0, scratch venv):
# NVlabs/unas darts/model_search.py Network(C, 10, layers, steps=4, multiplier=4)
# after set_primitives(num_ops), and for darts8 quark0/darts cnn/model_search.py
# Network(C, 10, layers, criterion, steps=4, multiplier=4) without the alphas.
REFERENCE_SUPERNET_PARAMS = {
    ("unas7", 8, 5): 537234,
    ("unas7", 4, 3): 106174,
    ("unas5", 8, 5): 321074,
    ("unas3", 4, 3): 21110,
    ("darts8", 8, 5): 394210,
    ("darts8", 4, 3): 72854,
}


@pytest.mark.parametrize("key", sorted(REFERENCE_SUPERNET_PARAMS))
def test_supernet_param_count_equals_reference(key):
  ops, channels, cells = key
  model = darts_supernet.DartsSupernet(darts.DartsSpace(ops), num_classes=10, channels=channels,
                                       num_cells=cells, rngs=nnx.Rngs(0))
  _, _, w, _ = functional.split(model)
  assert sum(x.size for x in jax.tree.leaves(w)) == REFERENCE_SUPERNET_PARAMS[key]


def test_imagenet_stem():
  # Shapes only, abstractly (nnx.eval_shape traces, nothing runs): op by op the model's
  # construction and forward took 60-115 s on a 2-core CPU, this about 12 s.
  model = nnx.eval_shape(lambda: _model(stem="imagenet"))
  arch = {t: {leaf: jax.ShapeDtypeStruct((2,) + shape, jnp.float32) for leaf, shape in shapes.items()}
          for t, shapes in model.space.phi_shapes().items()}
  forward = lambda res: nnx.eval_shape(lambda m, x, a: m(x, a, train=True), model,
                                       jax.ShapeDtypeStruct((2, res, res, 3), jnp.float32), arch)
  assert forward(32).shape == (2, CLASSES)  # the smallest it takes: 32 -> 8 (s0) -> 4 (s1) -> 2 -> 1
  with pytest.raises(ConfigError, match="48x48 input: .* divisible by 32"):
    forward(48)


def test_bad_configs():
  with pytest.raises(ConfigError, match="num_cells must be >= 3"):
    _model(num_cells=2)
  with pytest.raises(ConfigError, match="even"):
    _model(channels=5)
  with pytest.raises(ConfigError, match="unknown stem"):
    _model(stem="mnist")
  model = _model()
  with pytest.raises(ConfigError, match="6x6 input: use a height and width divisible by 4"):
    model(_x(res=6), _sample(model, 1).z, train=True)
  with pytest.raises(ConfigError, match="6x6 input: use a height and width divisible by 4"):
    model.discrete(_x(res=6), darts_genotype.get_genotype("unas_cifar10"), train=True)
