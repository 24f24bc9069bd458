"""What ``model.remat`` asks JAX to keep, and what XLA:CPU then allocates (issue 11).

    PYTHONPATH=. python experiments/results/step_memory/remat_memory.py --part=toy
    PYTHONPATH=. UNAS_JAX_COMPILATION_CACHE=off python experiments/results/step_memory/remat_memory.py \
        --part=supernet --remat=none,cell,cell_inputs --res=16 --cells=3 --batch=32 --kernels=xla

``toy``: ten blocks ``tanh(tanh(x @ w) @ w)`` on a 1024x512 input, each block under
``jax.checkpoint(policy=nothing_saveable)`` or not; the gradient's temporaries from
``compiled.memory_analysis()``. ``supernet``: the DARTS supernet's training loss and its
gradient w.r.t. (w, arch) at a relaxed sample, per remat choice: the residuals JAX saves for
the backward pass (``jax.vjp``'s, traced only), then the compiled gradient's temporaries, FLOPs
and compile time. One JSON line per row.
"""
import json
import time

from absl import app, flags
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.estimators import categorical
from unas_jax.nn import darts_supernet, functional
from unas_jax.spaces import darts

_PART = flags.DEFINE_enum("part", "toy", ["toy", "supernet"], "which measurement")
_REMAT = flags.DEFINE_list("remat", ["none", "cell", "cell_inputs"], "supernet: model.remat values")
_RES = flags.DEFINE_integer("res", 16, "supernet: image size")
_CELLS = flags.DEFINE_integer("cells", 3, "supernet: cells")
_BATCH = flags.DEFINE_integer("batch", 32, "supernet: images (one architecture each)")
_KERNELS = flags.DEFINE_string("kernels", "auto", "supernet: model.kernels")


def _mib(n):
  return round(n / 2**20, 1)


def toy():
  def block(w, x):
    return jnp.tanh(jnp.tanh(x @ w) @ w)

  for remat in (False, True):
    def loss(w, x):
      for _ in range(10):
        x = jax.checkpoint(block, policy=jax.checkpoint_policies.nothing_saveable)(w, x) if remat else block(w, x)
      return jnp.sum(x)
    w, x = jnp.ones((512, 512)), jnp.ones((1024, 512))
    residuals = jax.eval_shape(lambda w, x: jax.tree.leaves(jax.vjp(loss, w, x)[1]), w, x)
    compiled = jax.jit(jax.grad(loss)).lower(w, x).compile()
    print(json.dumps({"part": "toy", "remat": remat, "residuals_mib": _mib(sum(a.size * 4 for a in residuals)),
                      "temp_mib": _mib(compiled.memory_analysis().temp_size_in_bytes)}))


def supernet():
  for remat in _REMAT.value:
    model = darts_supernet.DartsSupernet(darts.DartsSpace("unas7"), num_classes=10, channels=8, num_cells=_CELLS.value,
                                         remat=remat, kernels=_KERNELS.value, rngs=nnx.Rngs(0))
    model_def, _, w, stats = functional.split(model)
    arch = categorical.sample(jax.random.key(3), categorical.soften(model.phi), tau=0.4,
                              sample_shape=(_BATCH.value,)).zeta
    x = jax.random.normal(jax.random.key(1), (_BATCH.value, _RES.value, _RES.value, 3))

    def loss(w, arch):
      logits, _ = functional.apply(model_def, w, stats, x, arch, train=True, key=jax.random.key(0))
      return jnp.mean(logits ** 2)

    residuals = jax.eval_shape(lambda w, a: jax.tree.leaves(jax.vjp(loss, w, a)[1]), w, arch)
    t = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(w, arch).compile()
    compile_s = time.perf_counter() - t
    print(json.dumps({
        "part": "supernet", "remat": remat, "kernels": _KERNELS.value, "cells": _CELLS.value, "res": _RES.value,
        "batch": _BATCH.value,
        "residuals_mib": _mib(sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in residuals)),
        "temp_mib": _mib(compiled.memory_analysis().temp_size_in_bytes),
        "gflop": round(compiled.cost_analysis().get("flops", 0.0) / 1e9, 2), "compile_s": round(compile_s, 1)}))


def main(argv):
  del argv
  toy() if _PART.value == "toy" else supernet()


if __name__ == "__main__":
  app.run(main)
