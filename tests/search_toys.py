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
