r"""Latency from a per-block lookup table in ProxylessNAS's published YAML format.

A network's latency is the sum of its blocks' mean latencies (Cai et al. 2019; their
``LatencyEstimator`` and ``RunManager.net_latency('mobile')``)::

    Conv-input:224x224x3-output:112x112x32                        stem
    expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0   first MBConv1
    expanded_conv-input:HxHxC-output:H'xH'xC'-expand:E-kernel:K-stride:S-idskip:R   each non-zero layer
    Conv_1-input:7x7x320-output:7x7x1280                          feature mix
    Logits-input:7x7x1280-output:1000                             pool + classifier

with ``R = 1`` where the block has a residual connection; ``zero`` layers contribute 0.
Each YAML entry holds ``mean``, ``var`` and ``count`` in ms. The lookup is deterministic,
which makes it the latency oracle of the tests, and lets users search for a device they
measured once (``builtin:proxylessnas_mobile_trim``, shipped in ``unas_jax/latency/data``:
a Pixel 1 phone, the mobile widths at 224x224).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from etils import epath
import numpy as np
import yaml

from unas_jax.errors import ConfigError
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.spaces import proxyless as space


def _shape(h: int, c: int) -> str:
  return f"{h}x{h}x{c}"


def block_key(h_in: int, c_in: int, h_out: int, c_out: int, expand: int, kernel: int, stride: int,
              idskip: bool) -> str:
  """The key of one MBConv block (``expanded_conv-...``)."""
  return (f"expanded_conv-input:{_shape(h_in, c_in)}-output:{_shape(h_out, c_out)}-expand:{expand}-"
          f"kernel:{kernel}-stride:{stride}-idskip:{int(idskip)}")


class LatencyLUT:
  """A per-block latency table (ms)."""

  def __init__(self, entries: Mapping[str, Mapping[str, float]], name: str = "lut"):
    self.entries = dict(entries)
    self.name = name
    bad = [k for k, v in self.entries.items() if not isinstance(v, Mapping) or "mean" not in v]
    if bad:
      raise ConfigError(f"latency table {name}: entries {bad[:3]} have no 'mean' (expected "
                        "key: {mean: ms, var: ..., count: ...})")

  @classmethod
  def from_yaml(cls, path: str) -> "LatencyLUT":
    if not epath.Path(path).is_file():
      raise ConfigError(f"latency table {path!r} does not exist (a ProxylessNAS-format YAML of per-block "
                        "latencies, e.g. proxylessnas_mobile_trim.yaml)")
    try:
      entries = yaml.safe_load(epath.Path(path).read_text())
    except yaml.YAMLError as e:
      raise ConfigError(f"latency table {path!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(entries, Mapping):
      raise ConfigError(f"latency table {path!r} must map block keys to {{mean, var, count}}")
    return cls(entries, name=epath.Path(path).name)

  def lookup(self, key: str, widths: Sequence[int], resolution: int) -> float:
    """Mean latency of ``key``; a missing key raises :class:`ConfigError` naming it."""
    entry = self.entries.get(key)
    if entry is None:
      raise ConfigError(f"latency table {self.name} has no entry {key!r} (widths {list(widths)}, "
                        f"resolution {resolution}); measure that block or use the widths/resolution the "
                        "table was made for")
    return float(entry["mean"])

  def stem_keys(self, widths: Sequence[int], resolution: int, num_classes: int) -> list[str]:
    """Keys of the fixed part: stem conv, first MBConv1, feature mix, classifier."""
    sizes = space.feature_sizes(resolution)
    h0, h_last = sizes[0], sizes[-1]
    return [
        f"Conv-input:{_shape(resolution, 3)}-output:{_shape(h0, widths[0])}",
        block_key(h0, widths[0], h0, widths[1], 1, 3, 1, False),
        f"Conv_1-input:{_shape(h_last, widths[7])}-output:{_shape(h_last, widths[8])}",
        f"Logits-input:{_shape(h_last, widths[8])}-output:{num_classes}",
    ]

  def layer_key(self, spec: space.LayerSpec, op: str, h_in: int) -> str | None:
    """Key of layer ``spec`` running ``op`` at input size ``h_in`` (None for ``zero``)."""
    parsed = space.parse_op(op)
    if parsed is None:
      return None
    k, e = parsed
    return block_key(h_in, spec.c_in, -(-h_in // spec.stride), spec.c_out, e, k, spec.stride, spec.residual)

  def breakdown(self, genotype: space.ProxylessGenotype | str, widths: str | Sequence[int] | None = "mobile",
                resolution: int = 224, num_classes: int = 1000) -> list[tuple[str, float]]:
    """``[(key, ms)]`` of every block of the network (zero layers left out)."""
    genotype = space.get_genotype(genotype)
    widths = space.resolve_widths(widths)
    keys = self.stem_keys(widths, resolution, num_classes)
    sizes = space.feature_sizes(resolution)
    for spec, op, h in zip(space.layer_specs(widths), genotype.ops, sizes):
      key = self.layer_key(spec, op, h)
      if key is not None:
        keys.append(key)
    return [(k, self.lookup(k, widths, resolution)) for k in keys]

  def latency(self, genotype: space.ProxylessGenotype | str, widths: str | Sequence[int] | None = "mobile",
              resolution: int = 224, num_classes: int = 1000) -> float:
    """Sum of the network's block latencies (ms)."""
    return float(sum(ms for _, ms in self.breakdown(genotype, widths, resolution, num_classes)))

  def additive(self, widths: str | Sequence[int] | None = "mobile", resolution: int = 224,
               num_classes: int = 1000) -> AdditiveLatency:
    """The table as an :class:`AdditiveLatency` over the whole space (all keys must exist)."""
    widths = space.resolve_widths(widths)
    bias = sum(self.lookup(k, widths, resolution) for k in self.stem_keys(widths, resolution, num_classes))
    sizes = space.feature_sizes(resolution)
    table = {}
    for spec, h in zip(space.layer_specs(widths), sizes):
      row = []
      for op in spec.choices:
        key = self.layer_key(spec, op, h)
        row.append(0.0 if key is None else self.lookup(key, widths, resolution))
      table[spec.name] = np.asarray(row)
    return AdditiveLatency(table, bias, source=f"lut:{self.name}")
