r"""Fast path: a per-block latency table of compiled blocks, calibrated by one scalar.

Each distinct block of the space (the stem with the first MBConv1, every (layer shape,
op) MBConv, the head) is compiled and timed on its own at its input shape; then

.. math::
   \widehat{\mathrm{lat}}(z) = s \cdot \Big(t_\mathrm{stem} + t_\mathrm{head}
       + \sum_l t_{l, z_l}\Big)

with ``zero`` = 0 and one scale ``s`` fitted by least squares on a few whole-network
measurements (:meth:`LatencyProbe.measure_many`, the ground truth). Layers with the same
shapes (e.g. layers 2-4) share their compiled blocks, so the space needs
11 x 6 + 2 = 68 compilations instead of one per architecture. docs/engineering.md section 5: 3-4%
error (rank correlation 0.93-0.97) for this kind of table after calibration. It misses
what crosses block boundaries (XLA fusing a block's output with the next block's input,
dispatch overhead), which the scale absorbs on average.
"""
from __future__ import annotations

import concurrent.futures
from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.latency.additive import AdditiveLatency
from unas_jax.latency.probe import (Compiled, ProbeConfig, TimingGate, compile_forward, default_compile_threads,
                                    summarise, time_runs, timing_device)
from unas_jax.latency.surrogate import regression_report
from unas_jax.nn import proxyless_network as pnet
from unas_jax.spaces import proxyless as space


class _Call(nnx.Module):
  """Adapts a block ``f(x, train=)`` to the ``(x, arch, *, train, key)`` convention."""

  def __init__(self, block: nnx.Module, takes_key: bool = False):
    self.block = block
    self.takes_key = takes_key

  def __call__(self, x, arch=None, *, train: bool, key=None):
    if self.takes_key:
      return self.block(x, train=train, key=key)
    return self.block(x, train=train)


def _blocks(config: ProbeConfig) -> dict[str, tuple[nnx.Module, tuple[int, ...]]]:
  """``{block id: (module, input shape)}`` for every distinct block of the space."""
  c = config
  w = c.widths
  dt = jnp.dtype(c.dtype)
  rngs = nnx.Rngs(c.seed)
  b = c.batch_size
  sizes = space.feature_sizes(c.resolution)
  out = {"stem": (_Call(pnet.ProxylessStem(w, depthwise_impl=c.depthwise_impl, dtype=dt, rngs=rngs)),
                  (b, c.resolution, c.resolution, 3)),
         "head": (_Call(pnet.ProxylessHead(w[7], w[8], c.num_classes, dtype=dt, rngs=rngs), takes_key=True),
                  (b, sizes[-1], sizes[-1], w[7]))}
  for spec, h in zip(space.layer_specs(w), sizes):
    for op in space.MBCONV_OPS:
      bid = block_id(spec, op, h)
      if bid not in out:
        out[bid] = (_Call(pnet.make_mbconv(spec, op, bn_affine=True, depthwise_impl=c.depthwise_impl, dtype=dt,
                                           rngs=rngs)), (b, h, h, spec.c_in))
  return out


def block_id(spec: space.LayerSpec, op: str, h_in: int) -> str:
  return f"{op}-h{h_in}-c{spec.c_in}-{spec.c_out}-s{spec.stride}-r{int(spec.residual)}"


def measure_block_table(config: ProbeConfig, *, rounds: int = 5, seed: int = 0,
                        device: jax.Device | None = None, gate: TimingGate | None = None,
                        compile_threads: int = 0) -> tuple[AdditiveLatency, dict]:
  """Compiles and times every distinct block; returns the (uncalibrated) table and per-block stats.

  One compile per distinct block (``compile_threads`` at once, 0: one per core); timing runs
  in ``rounds`` interleaved, shuffled rounds over all blocks (medians), after all compilation
  is done. ``device``: where to time (default: this process's first local device).
  """
  device = device or timing_device()
  gate = gate or TimingGate(True)
  blocks = _blocks(config)

  def build(item):
    bid, (module, shape) = item
    with gate.compiling():
      return bid, compile_forward(module, shape, config.dtype, device, config.seed)

  with concurrent.futures.ThreadPoolExecutor(compile_threads or default_compile_threads()) as pool:
    compiled: dict[str, Compiled] = dict(pool.map(build, blocks.items()))
  rng = np.random.default_rng(seed)
  names = sorted(compiled)
  times = {n: [] for n in names}
  per_round = -(-config.num_runs // rounds)
  with gate.timing():
    for r in range(rounds):
      for i in rng.permutation(len(names)):
        times[names[i]] += time_runs(compiled[names[i]], per_round, config.num_warmup if r == 0 else 1)
  stats = {n: dict(summarise(times[n]), compile_s=compiled[n].compile_s) for n in names}
  med = {n: stats[n]["median_ms"] for n in names}
  sizes = space.feature_sizes(config.resolution)
  table = {}
  for spec, h in zip(space.layer_specs(config.widths), sizes):
    row = [med[block_id(spec, op, h)] for op in space.MBCONV_OPS]
    if spec.allows_zero:
      row.append(0.0)
    table[spec.name] = np.asarray(row)
  return AdditiveLatency(table, med["stem"] + med["head"], source="blocks"), stats


def calibrate(table: AdditiveLatency, genotypes: Sequence[space.ProxylessGenotype],
              measured_ms: Sequence[float]) -> tuple[AdditiveLatency, float, dict]:
  """Fits one scale ``s`` (least squares through the origin) of the block sum to whole-network latencies.

  Returns ``(scaled table, s, report on the given measurements)``.
  """
  pred = table.latencies(list(genotypes))
  y = np.asarray(measured_ms, np.float64)
  s = float(pred @ y / (pred @ pred))
  scaled = AdditiveLatency({k: s * v for k, v in table.table.items()}, s * table.bias, source="blocks*calibrated")
  return scaled, s, regression_report(y, s * pred)
