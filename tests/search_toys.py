"""A tiny supernet for fast tests of the search machinery (not a product module)."""
import jax
import jax.numpy as jnp
from flax import nnx

from unas_jax.nn import functional


class ToySupernet(nnx.Module):
  """Two mixed layers, each choosing among {linear, tanh(linear), identity}, then BN and a classifier."""

  def __init__(self, features=8, num_classes=4, bn_axis_name=None, *, rngs):
    self.phi = nnx.data({"layer": functional.ArchParam(jnp.zeros((2, 3)))})
    self.linears = nnx.List([nnx.Linear(features, features, rngs=rngs) for _ in range(4)])
    self.norms = nnx.List([nnx.BatchNorm(features, use_scale=False, use_bias=False, axis_name=bn_axis_name, rngs=rngs)
                           for _ in range(2)])
    self.head = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, x, arch, *, train, key=None):
    weights = arch["layer"]  # [S, 2, 3]
    b = x.shape[0]
    for layer in range(2):
      w_l = jnp.repeat(weights[:, layer], b // weights.shape[0], axis=0)  # [B, 3]
      options = [self.linears[2 * layer](x), jnp.tanh(self.linears[2 * layer + 1](x)), x]
      x = sum(w_l[:, k:k + 1] * o for k, o in enumerate(options))
      x = self.norms[layer](x, use_running_average=not train)
    return self.head(x)


def toy_data(key, n, features=8, num_classes=4):
  k1, k2 = jax.random.split(key)
  x = jax.random.normal(k1, (n, features))
  y = jnp.argmax(x[:, :num_classes] + 0.3 * jax.random.normal(k2, (n, num_classes)), -1)
  return x, y


def step_config(**overrides):
  """The search step's settings of the default ``config.search`` (unas_jax/search/defaults.py, no latency
  term) with ``overrides``: the tests name only what they vary, and the defaults stay in one place."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from unas_jax.search import defaults, loop  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict({"search": defaults.search_block()})
  return dataclasses.replace(loop.step_config(config), **overrides)


def toy_search_step(cfg, local_batch: int = 8):
  """``(mesh, state, step)`` for the toy supernet on one device: the compiled search step of ``cfg``."""
  import optax  # pylint: disable=import-outside-toplevel
  from unas_jax.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from unas_jax.search import step as step_lib  # pylint: disable=import-outside-toplevel
  mesh = mesh_lib.make_mesh(1)
  model_def, phi, w, stats = functional.split(ToySupernet(rngs=nnx.Rngs(0)))
  tx_w, tx_phi = optax.adam(1e-2), optax.adam(1e-2)
  state = mesh_lib.put_replicated(step_lib.init_state(0, phi["phi"], w, stats, tx_w, tx_phi, cfg), mesh)
  step = step_lib.make_search_step(step_lib.SearchModel(model_def), tx_w, tx_phi, cfg, mesh, local_batch)
  return mesh, state, step
