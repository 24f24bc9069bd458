"""model.dtype (mixed precision) and model.remat for the supernets and the evaluation networks.

Remat changes what is stored, not what is computed: loss and gradients equal
those without it. In bfloat16 the parameters, BatchNorm statistics, logits and
gradients stay float32 and the logits stay close to float32's; an unknown dtype
or remat is a one-line ConfigError.
"""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.estimators import categorical
from unas_jax.nn import darts_network
from unas_jax.nn import darts_supernet
from unas_jax.nn import functional
from unas_jax.nn import proxyless_network as pn
from unas_jax.nn import proxyless_supernet as ps
from unas_jax.spaces import darts
from tree_checks import assert_trees_close

N, RES, CLASSES = 4, 8, 5
SMALL = (8, 8, 8, 16, 16, 24, 24, 32, 64)


def _darts(**kw):
  return darts_supernet.DartsSupernet(darts.DartsSpace("unas7"), num_classes=CLASSES, channels=4, num_cells=3,
                                      rngs=nnx.Rngs(0), **kw)


def _proxyless(**kw):
  return ps.ProxylessSupernet(SMALL, CLASSES, rngs=nnx.Rngs(0), zero_dropout=0.0, depthwise_impl="xla", **kw)


def _arch(phi, s):
  return categorical.sample(jax.random.key(3), categorical.soften(phi), tau=0.4, sample_shape=(s,)).zeta


def _training_loss(model, x):
  """``(loss, w, arch)``: ``loss(w, arch) -> (value, (logits, new_stats))`` in training mode at a relaxed sample."""
  model_def, phi, w, stats = functional.split(model)
  if isinstance(model, darts_supernet.DartsSupernet):
    phi = model.phi  # plain {'normal': {...}, 'reduce': {...}} dicts, as the supernet checks
  arch = _arch(phi, x.shape[0])

  def loss(w, arch):
    logits, new_stats = functional.apply(model_def, w, stats, x, arch, train=True, key=jax.random.key(0))
    return jnp.mean(jax.nn.log_softmax(logits)[:, 0]) * -1.0, (logits, new_stats)
  return loss, w, arch


def _loss_and_grads(model, x):
  """Training-mode loss, new BatchNorm statistics, and gradients w.r.t. (w, arch)."""
  loss, w, arch = _training_loss(model, x)
  (value, (logits, new_stats)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(w, arch)
  return value, logits, new_stats, grads, w


# Slow (CI's slow pass): each compiles a supernet's forward and backward twice, 2-3 minutes on 2 cores.
@pytest.mark.slow
@pytest.mark.parametrize("build,remat", [(_darts, "cell"), (_proxyless, "layer"), (_darts, "cell_inputs"),
                                         (_proxyless, "layer_inputs")])
def test_remat_computes_the_same_loss_and_gradients(build, remat):
  x = jax.random.normal(jax.random.key(1), (N, 32 if build is _proxyless else RES, 32 if build is _proxyless else RES, 3))
  plain = _loss_and_grads(build(), x)
  rematted = _loss_and_grads(build(remat=remat), x)
  assert_trees_close(rematted[0], plain[0], 1e-6)
  assert_trees_close(rematted[2], plain[2], 1e-6)   # BatchNorm statistics
  assert_trees_close(rematted[3], plain[3], 1e-5)   # gradients w.r.t. w and arch


def _residual_bytes(model, x):
  """Bytes the backward pass of the training loss keeps from the forward (``jax.vjp``'s residuals), traced only."""
  loss, w, arch = _training_loss(model, x)
  residuals = lambda w, arch: jax.tree.leaves(jax.vjp(loss, w, arch, has_aux=True)[1])  # noqa: E731
  return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.eval_shape(residuals, w, arch))


@pytest.mark.parametrize("build,remats", [(_darts, ("none", "cell", "cell_inputs")),
                                          (_proxyless, ("none", "layer", "layer_inputs"))])
def test_remat_keeps_fewer_residuals(build, remats):
  """What each remat choice asks JAX to keep: keeping conv outputs keeps less than everything, and keeping
  only each block's inputs keeps less than a fifth of it (measured: 1.9% for the DARTS supernet at 3 cells,
  16x16, 32 images). What XLA then allocates is its buffer assignment's (README, issue 11)."""
  res = 32 if build is _proxyless else RES
  x = jax.random.normal(jax.random.key(1), (N, res, res, 3))
  none, convs, inputs = (_residual_bytes(build(remat=r), x) for r in remats)
  assert inputs < convs < none, (none, convs, inputs)
  assert inputs < 0.2 * none, (none, convs, inputs)


# The ProxylessNAS supernet downsamples 32x: at 32x32 its last stages are 1x1 maps, and their
# training-mode BatchNorm normalises 4 values per channel. There the float32 network itself is
# chaotic: rounding only its input to bfloat16 moved the logits by 0.83 at a scale of 0.90
# (measured 2026-11-30), so no precision test can pass or mean anything. At 128x128 (4x4 maps)
# the same input rounding moves them by 0.023, and the comparison below is meaningful.
PROXYLESS_BF16_RES = 128


@pytest.mark.slow
@pytest.mark.parametrize("build", [_darts, _proxyless])
def test_bfloat16_keeps_parameters_statistics_logits_and_gradients_float32(build):
  res = PROXYLESS_BF16_RES if build is _proxyless else RES
  x = jax.random.normal(jax.random.key(1), (N, res, res, 3))
  f32 = _loss_and_grads(build(), x)
  bf16 = _loss_and_grads(build(dtype="bfloat16"), x)
  _, logits, new_stats, grads, w = bf16
  assert logits.dtype == jnp.float32
  for tree in (w, new_stats, grads):
    assert {a.dtype for a in jax.tree.leaves(tree)} == {jnp.dtype(jnp.float32)}
  # The same function, in 8 bits of mantissa: logits within a few percent of their scale.
  scale = float(jnp.max(jnp.abs(f32[1])))
  assert float(jnp.max(jnp.abs(logits - f32[1]))) < 0.05 * scale + 0.05
  assert not np.allclose(np.asarray(logits), np.asarray(f32[1]), rtol=0, atol=1e-7)  # it did run in bf16


def test_evaluation_networks_take_dtype_and_remat():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  outs = {}
  for dtype, remat in [("float32", "none"), ("float32", "cell"), ("float32", "cell_inputs"), ("bfloat16", "none")]:
    net = darts_network.build("unas_cifar10", num_classes=CLASSES, channels=4, num_cells=3, auxiliary=True,
                              dtype=dtype, remat=remat, rngs=nnx.Rngs(0))
    model_def, _, w, stats = functional.split(net)
    (logits, aux), _ = jax.jit(lambda w, x: functional.apply(model_def, w, stats, x, train=True,
                                                             key=jax.random.key(0), drop_path=0.2))(w, x)
    assert logits.dtype == aux.dtype == jnp.float32
    outs[dtype, remat] = logits
  assert_trees_close(outs["float32", "cell"], outs["float32", "none"], 1e-6)
  assert_trees_close(outs["float32", "cell_inputs"], outs["float32", "none"], 1e-6)
  assert float(jnp.max(jnp.abs(outs["bfloat16", "none"] - outs["float32", "none"]))) < 0.1
  net = pn.ProxylessNetwork("proxylessnas_gpu", SMALL, CLASSES, rngs=nnx.Rngs(0), depthwise_impl="xla",
                            dtype="bfloat16", remat="layer")
  model_def, _, w, stats = functional.split(net)
  logits, _ = jax.jit(lambda w, x: functional.apply(model_def, w, stats, x, train=False))(w, x)
  assert logits.dtype == jnp.float32


def test_bad_dtype_kernels_or_remat_is_a_config_error():
  with pytest.raises(ConfigError, match="model.dtype='float64'"):
    _darts(dtype="float64")
  with pytest.raises(ConfigError, match="model.remat='layer'"):
    _darts(remat="layer")
  with pytest.raises(ConfigError, match="model.remat='cell_inputs'"):
    _proxyless(remat="cell_inputs")
  with pytest.raises(ConfigError, match="model.kernels='gpu'"):
    _proxyless(kernels="gpu")
