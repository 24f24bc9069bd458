"""Run in a subprocess with 8 simulated CPU devices: synchronised BatchNorm vs one device.

The same global batch through ``jax.shard_map`` over an 8-device ``data`` mesh and
through one device without a mesh; per-device slices are drawn from different
distributions, so per-device (local) statistics differ clearly from the whole batch's.
Prints one JSON line of largest differences, 8 devices minus one device, relative to
``max(1, max |one device|)``:

* argument ``bn``: ``bn_<form>_<mode>``, one BatchNorm (``folded`` for the MBConv form,
  ``centred`` for the DARTS form), ``y`` and the updated running ``mean`` / ``var``;
* argument ``proxyless``: ``proxyless_<mode>``, a training forward of a small ProxylessNAS
  supernet (relaxed architecture, no zero-op dropout), the logits and every running
  statistic;

``<mode>`` is ``sync`` (must agree to float rounding) or ``local`` (must not).
"""
import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flax import nnx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
import numpy as np  # noqa: E402

from unas_jax.nn import batchnorm, functional  # noqa: E402
from unas_jax.nn import proxyless_supernet as ps  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402
from unas_jax.spaces import proxyless as sp  # noqa: E402

DEVICES, PER_DEVICE = 8, 2
SMALL = (8, 8, 8, 16, 16, 24, 24, 32, 64)


def batch(size: int, channels: int, seed: int) -> np.ndarray:
  """``[8 * 2, size, size, channels]``: device d's slice has mean 0.5 d and std 1 + 0.2 d."""
  rng = np.random.default_rng(seed)
  shift = np.repeat(np.arange(DEVICES, dtype=np.float32), PER_DEVICE)[:, None, None, None]
  x = rng.normal(size=(DEVICES * PER_DEVICE, size, size, channels)).astype(np.float32)
  return x * (1 + 0.2 * shift) + 0.5 * shift


def compare(module: nnx.Module, x: np.ndarray, call) -> tuple[dict, dict]:
  """Largest |8 devices - 1 device| of ``call``'s output and the new statistics, for sync and local."""
  mesh = mesh_lib.make_mesh(DEVICES)
  model_def, _, w, stats = functional.split(module)

  def run(w, stats, x):
    y, new_stats = call(model_def, w, stats, x)
    return y, jax.tree.map(lambda s: s[None], new_stats)  # one row per device

  one = None
  out = {}
  for mode in ("sync", "local"):
    batchnorm.apply_mode(module, mode, mesh_lib.DATA_AXIS)
    model_def = functional.split(module)[0]
    sharded = jax.jit(jax.shard_map(run, mesh=mesh, in_specs=(P(), P(), P(mesh_lib.DATA_AXIS)),
                                    out_specs=P(mesh_lib.DATA_AXIS)))
    y8, stats8 = sharded(mesh_lib.put_replicated(w, mesh), mesh_lib.put_replicated(stats, mesh),
                         mesh_lib.put_batch(x, mesh))
    if one is None:
      batchnorm.apply_mode(module, "local", mesh_lib.DATA_AXIS)  # one device: its batch is the global batch
      model_def = functional.split(module)[0]
      one = jax.jit(run)(w, stats, x)
    y1, stats1 = one
    out[mode] = {"y": _diff(y8, y1), "stats": max(_diff(a, b) for a, b in zip(jax.tree.leaves(stats8),
                                                                             jax.tree.leaves(stats1)))}
  return out["sync"], out["local"]


def _diff(a: jax.Array, b: jax.Array) -> float:
  """``max |a - b|`` relative to ``max(1, max |b|)`` (deep layers' running variances reach ~100)."""
  return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(1.0, jnp.max(jnp.abs(b))))


def bn_call(model_def, w, stats, x):
  return functional.apply(model_def, w, stats, x, train=True)


class _BN(nnx.Module):
  """A BatchNorm as ``functional.apply`` calls a network: ``(x, arch, *, train, key)``."""

  def __init__(self, bn: batchnorm.BatchNorm):
    self.bn = bn

  def __call__(self, x, arch=None, *, train, key=None):
    del arch, key
    return self.bn(x, train=train)


def main(which: str):
  assert jax.device_count() == DEVICES, jax.devices()
  out = {}
  if which == "bn":
    x = batch(4, 6, 0)
    for form, folded in (("folded", True), ("centred", False)):
      out[f"bn_{form}_sync"], out[f"bn_{form}_local"] = compare(
          _BN(batchnorm.BatchNorm(6, folded=folded)), x, bn_call)
    print(json.dumps(out))
    return
  supernet = ps.ProxylessSupernet(SMALL, 5, rngs=nnx.Rngs(0), zero_dropout=0.0, depthwise_impl="xla")
  rng = np.random.default_rng(1)
  arch = {s.name: jax.nn.softmax(jnp.asarray(rng.normal(size=(1, s.num_choices)), jnp.float32))
          for s in sp.layer_specs(SMALL)}

  def supernet_call(model_def, w, stats, x):
    return functional.apply(model_def, w, stats, x, arch, train=True)
  out["proxyless_sync"], out["proxyless_local"] = compare(supernet, batch(16, 3, 2), supernet_call)
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1])
