"""Run in a subprocess with 8 simulated CPU devices: training steps on 1 vs 8 devices.

A 3-cell DARTS ``NetworkCIFAR`` (4 channels, 8x8 inputs, no auxiliary head, no
drop-path: drop-path masks are drawn per device, so they legitimately depend on
the device count) trained with the evaluation recipe's SGD for a few steps on
the same global batch. Prints one JSON line:

* ``sync``: largest |w| and |stats| differences, 1 vs 8 devices, synchronised BN;
* ``local``: the same with per-device BN (must differ);
* ``local_vs_sync_1``: 1 device, local vs sync (must agree: one device holds the whole batch);
* ``stem_var_local`` / ``stem_var_sync``: the stem BatchNorm's running variance after one
  step on 8 devices minus the value predicted from per-device (local) or whole-batch (sync)
  statistics, computed here in numpy.
"""
import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from unas_jax.evaluation import defaults, trainer  # noqa: E402
from unas_jax.nn import batchnorm, darts_network, functional  # noqa: E402
from unas_jax.parallel import mesh as mesh_lib  # noqa: E402

BATCH, STEPS, SIZE, CLASSES = 16, 3, 8, 10


def build(bn: str):
  module = darts_network.NetworkCIFAR("unas_cifar10", num_classes=CLASSES, channels=4, num_cells=3,
                                      auxiliary=False, rngs=nnx.Rngs(0))
  batchnorm.apply_mode(module, bn, mesh_lib.DATA_AXIS)
  return module


def batches():
  rng = np.random.default_rng(0)
  for _ in range(STEPS):
    # Per-device slices drawn from different distributions, so local statistics differ clearly.
    shift = np.repeat(np.arange(8, dtype=np.float32), BATCH // 8)[:, None, None, None]
    x = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32) * (1 + 0.2 * shift) + 0.5 * shift
    yield x, rng.integers(0, CLASSES, BATCH).astype(np.int32)


def run(num_devices: int, bn: str):
  mesh = mesh_lib.make_mesh(num_devices)
  module = build(bn)
  model_def, _, w, stats = functional.split(module)
  t = defaults.train_block()
  t.warmup_epochs, t.lr, t.lr_reference_batch, t.max_steps = 0.0, 0.1, 0, STEPS
  tx, schedule, total = trainer.make_optimizer(t, BATCH, STEPS)
  cfg = trainer.TrainConfig(label_smoothing=0.0, aux_weight=0.0, drop_path=0.0, total_steps=total,
                            ema_decay=0.0)
  state = mesh_lib.put_replicated(trainer.init_state(0, w, stats, tx), mesh)
  step = trainer.make_train_step(model_def, tx, cfg, mesh, schedule)
  first_stats = None
  for x, y in batches():
    state, metrics = step(state, mesh_lib.put_batch((x, y), mesh))
    if first_stats is None:
      first_stats = jax.device_get(state.stats)
  return jax.device_get((state.w, state.stats)), first_stats, float(metrics["loss"])


def max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(jax.tree.leaves(a),
                                                                                 jax.tree.leaves(b)))


def predicted_stem_var(per_device: int):
  """The stem BN's running variance after one step, ``m * 1 + (1 - m) * mean_d var_d * n_d / (n_d - 1)``.

  ``var_d``: the biased variance over the ``per_device`` examples of device ``d``
  (``m = batchnorm.MOMENTUM``, Flax's convention; the initial running variance is 1).
  """
  module = build("local")
  x, _ = next(batches())
  h = np.asarray(module.stem_conv(jnp.asarray(x)))
  groups = h.reshape(BATCH // per_device, per_device, *h.shape[1:])
  n = per_device * SIZE * SIZE
  var = groups.var(axis=(1, 2, 3)) * n / (n - 1)
  return batchnorm.MOMENTUM * 1.0 + (1 - batchnorm.MOMENTUM) * var.mean(0)


def main():
  assert jax.device_count() == 8, jax.devices()
  out = {}
  results = {(n, bn): run(n, bn) for n in (1, 8) for bn in ("sync", "local")}
  for bn in ("sync", "local"):
    (w1, s1), _, loss1 = results[(1, bn)]
    (w8, s8), _, loss8 = results[(8, bn)]
    out[bn] = {"w": max_diff(w1, w8), "stats": max_diff(s1, s8), "loss_1": loss1, "loss_8": loss8}
  out["local_vs_sync_1"] = {"w": max_diff(results[(1, "local")][0][0], results[(1, "sync")][0][0])}
  init_w = functional.split(build("local"))[2]
  out["w_moved"] = max_diff(init_w, results[(1, "sync")][0][0])
  for bn, per_device in (("local", BATCH // 8), ("sync", BATCH)):
    got = np.asarray(results[(8, bn)][1]["stem_bn"]["var"])
    out[f"stem_var_{bn}"] = float(np.max(np.abs(got - predicted_stem_var(per_device))))
  out["stem_var_local_vs_sync"] = float(np.max(np.abs(predicted_stem_var(BATCH // 8) - predicted_stem_var(BATCH))))
  print(json.dumps(out))


if __name__ == "__main__":
  main()
