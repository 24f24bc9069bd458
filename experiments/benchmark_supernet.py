r"""Speed of the DARTS supernet: compile time, forward, forward+backward, peak memory.

Times the three computations of a UNAS search step (docs/design.md section 2, REBAR
with tied noise + L_gen): a forward on a one-hot sample ``z`` (no gradient), a
forward+backward on a relaxed sample ``zeta`` w.r.t. the architecture (for
phi), and a forward+backward w.r.t. the weights ``w`` (BatchNorm in training
mode everywhere). A step does 2 forwards (train and val batch), 2 backwards
w.r.t. arch (train and val batch) and 1 w.r.t. w (train batch); the script
prints that sum and the implied images/s.

Timing on a shared machine is noisy: everything is compiled first, then timed in
interleaved rounds; medians are printed, with the process CPU time (user +
system, all threads), which other processes on the machine inflate less than
the wall time (on an idle 2-core machine wall ~ CPU / 2 when XLA keeps both
cores busy).

Example (the issue-3 workload)::

    python experiments/benchmark_supernet.py --cells 5 --channels 8 --batch 32 --resolution 32 --ops unas7
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

from flax import nnx
import jax
import jax.numpy as jnp
import optax

from unas_jax.estimators import categorical
from unas_jax.nn import darts_supernet
from unas_jax.nn import functional
from unas_jax.spaces import darts


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--cells", type=int, default=8)
  p.add_argument("--channels", type=int, default=16)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--resolution", type=int, default=32)
  p.add_argument("--ops", default="unas7", help="op set name (unas7, unas5, darts8, ...) or comma list")
  p.add_argument("--shared", action="store_true", help="one architecture per batch (S=1) instead of per example")
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--depthwise_impl", default="auto", choices=["auto", "slices", "xla"])
  return p.parse_args(argv)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
  args = parse_args(argv)
  space = darts.DartsSpace(darts.op_set(args.ops))
  model = darts_supernet.DartsSupernet(space, num_classes=args.classes, channels=args.channels,
                                       num_cells=args.cells, depthwise_impl=args.depthwise_impl,
                                       rngs=nnx.Rngs(0))
  model_def, phi, w, stats = functional.split(model)
  n_params = sum(x.size for x in jax.tree.leaves(w))
  key = jax.random.key(1)
  kx, ky, ks = jax.random.split(key, 3)
  x = jax.random.normal(kx, (args.batch, args.resolution, args.resolution, 3), jnp.float32)
  y = jax.random.randint(ky, (args.batch,), 0, args.classes)
  s = 1 if args.shared else args.batch
  sample = categorical.sample(ks, categorical.soften(phi), tau=0.4, sample_shape=(s,))
  z, zeta = sample.z, sample.zeta

  def loss(w, arch):
    logits, new_stats = functional.apply(model_def, w, stats, x, arch, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_stats

  fns = {
      "forward (z, no grad)": (lambda w, arch: loss(w, arch)[0], (w, z)),
      "fwd+bwd w.r.t. arch": (jax.grad(lambda arch, w: loss(w, arch)[0]), (zeta, w)),
      "fwd+bwd w.r.t. w": (jax.grad(loss, has_aux=True), (w, zeta)),
  }
  print(f"devices: {jax.devices()}  jax {jax.__version__}")
  print(f"supernet: {args.cells} cells, {args.channels} channels, batch {args.batch}, "
        f"{args.resolution}x{args.resolution}, ops {args.ops} ({space.num_ops}), "
        f"{'shared' if args.shared else 'per-example'} arch (S={s}), {n_params} weights")
  compiled = {}
  for name, (fn, fargs) in fns.items():
    t0 = time.perf_counter()
    c = jax.jit(fn).lower(*fargs).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(c(*fargs))
    compiled[name] = (c, fargs)
    print(f"compile {name:22s} {t1 - t0:7.2f} s  (first run {time.perf_counter() - t1:.2f} s)", flush=True)
  times = {name: [] for name in compiled}
  cpu = {name: [] for name in compiled}
  for _ in range(args.rounds):
    for name, (c, fargs) in compiled.items():
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(c(*fargs))
      times[name].append(time.perf_counter() - t0)
      cpu[name].append(time.process_time() - c0)
  med = {name: statistics.median(ts) for name, ts in times.items()}
  for name, m in med.items():
    print(f"median {name:22s} {m * 1e3:8.1f} ms  (min {min(times[name]) * 1e3:.1f}, {args.rounds} rounds; "
          f"process CPU time {statistics.median(cpu[name]) * 1e3:.0f} ms)")
  step = 2 * med["forward (z, no grad)"] + 2 * med["fwd+bwd w.r.t. arch"] + med["fwd+bwd w.r.t. w"]
  print(f"search step estimate (2 fwd + 2 arch + 1 w): {step:.2f} s -> {args.batch / step:.1f} images/s")
  print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
  sys.exit(main())
