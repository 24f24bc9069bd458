r"""The ProxylessNAS search space (docs/design.md section 4; Cai et al., ICLR 2019; UNAS section 5).

Network layout (checked against mit-han-lab/proxylessnas ``search/models/super_nets/
super_proxyless.py`` and NVlabs/unas ``proxylessnas/model_search.py``)::

    stem        conv 3x3 stride 2, 3 -> widths[0], BN, ReLU6
    first       MBConv1 3x3 stride 1 (no expand conv, no residual), widths[0] -> widths[1]
    layers 1-4    stage 1: widths[2], stride 2 at layer 1
    layers 5-8    stage 2: widths[3], stride 2 at layer 5
    layers 9-12   stage 3: widths[4], stride 2 at layer 9
    layers 13-16  stage 4: widths[5], stride 1 (width changes at layer 13)
    layers 17-20  stage 5: widths[6], stride 2 at layer 17
    layer 21      stage 6: widths[7], stride 1 (width changes)
    feature mix conv 1x1, widths[7] -> widths[8], BN, ReLU6; global average pool; linear

Each of the 21 searchable layers is a categorical over :data:`PROXYLESS_OPS`
(``kK_eE`` = MBConv with kernel ``K`` and expansion ``E``; ``zero`` = the layer is
an identity, i.e. removed). ``zero`` is offered only where the layer keeps the
stride and the width (all layers except the first of each stage: 1, 5, 9, 13, 17, 21),
so that removing a layer never changes a shape.

``phi`` layout (also the ``arch`` layout, with a leading sample axis ``S``)::

    {"layer01": [6], "layer02": [7], ..., "layer21": [6]}

one leaf per layer; choice ``k`` of a leaf is ``PROXYLESS_OPS[k]``, so the six
MBConv choices have the same index in every layer and ``zero`` is index 6 where it
is offered. Dict keys are zero-padded so that JAX's sorted pytree order is the
layer order. Flattened (:func:`flatten_arch`), the one-hot architecture is a vector
of ``6 * 6 + 15 * 7 = 141`` entries in layer order, on which the latency surrogate
is linear (docs/design.md section 8).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from unas_jax.errors import ConfigError


MBCONV_OPS = ("k3_e3", "k5_e3", "k7_e3", "k3_e6", "k5_e6", "k7_e6")
ZERO = "zero"
PROXYLESS_OPS = MBCONV_OPS + (ZERO,)
NUM_LAYERS = 21
STAGE_LAYERS = (4, 4, 4, 4, 4, 1)
STAGE_STRIDES = (2, 2, 2, 1, 2, 1)
# UNAS's GPU widths (the ProxylessNAS-GPU network's), and ProxylessNAS's mobile widths:
# (stem, first MBConv1, six stages, feature mix).
GPU_WIDTHS = (40, 24, 32, 56, 112, 128, 256, 432, 1728)
MOBILE_WIDTHS = (32, 16, 24, 40, 80, 96, 192, 320, 1280)
WIDTH_PRESETS = {"gpu": GPU_WIDTHS, "mobile": MOBILE_WIDTHS}
GENOTYPE_FORMAT = "unas_jax.proxyless_genotype"
GENOTYPE_VERSION = 1

_OP_RE = re.compile(r"^k([357])_e([36])$")


def parse_op(op: str) -> tuple[int, int] | None:
  """``'k5_e3' -> (5, 3)``; ``'zero' -> None``."""
  if op == ZERO:
    return None
  m = _OP_RE.match(op)
  if m is None:
    raise ConfigError(f"unknown ProxylessNAS op {op!r}; choose one of {list(PROXYLESS_OPS)} "
                      "('0' is accepted for 'zero')")
  return int(m.group(1)), int(m.group(2))


def layer_name(index: int) -> str:
  """1-based layer index -> its ``phi`` key (``'layer01'`` .. ``'layer21'``)."""
  return f"layer{index:02d}"


LAYER_NAMES = tuple(layer_name(i) for i in range(1, NUM_LAYERS + 1))


def resolve_widths(widths: str | Sequence[int] | None) -> tuple[int, ...]:
  """``'gpu'``/``'mobile'``/None (gpu) or 9 positive ints -> a width tuple."""
  if widths is None:
    return GPU_WIDTHS
  if isinstance(widths, str) and "," in widths:  # "16,8,16,..." from the command line
    widths = [w.strip() for w in widths.split(",")]
  elif isinstance(widths, str):
    if widths not in WIDTH_PRESETS:
      raise ConfigError(f"unknown width preset {widths!r}; choose one of {sorted(WIDTH_PRESETS)} or "
                        "give 9 integers (stem, first MBConv1, six stages, feature mix)")
    return WIDTH_PRESETS[widths]
  try:
    widths = tuple(int(c) for c in widths)
  except ValueError:
    raise ConfigError(f"widths={widths!r} must be 9 integers, 'gpu' or 'mobile'") from None
  if len(widths) != 9 or any(c <= 0 for c in widths):
    raise ConfigError(f"widths={list(widths)} must be 9 positive integers (stem, first MBConv1, six "
                      "stages, feature mix), e.g. the gpu preset "
                      f"{list(GPU_WIDTHS)}")
  return widths


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One searchable layer.

  Attributes:
    index: 1-based layer index.
    name: its ``phi`` key.
    c_in, c_out: input and output channels.
    stride: 1 or 2.
    allows_zero: whether ``zero`` is a choice (stride 1 and ``c_in == c_out`` in the
      reference layout: every layer but the first of a stage).
    choices: op names in ``phi`` order.
  """
  index: int
  name: str
  c_in: int
  c_out: int
  stride: int
  allows_zero: bool

  @property
  def choices(self) -> tuple[str, ...]:
    return PROXYLESS_OPS if self.allows_zero else MBCONV_OPS

  @property
  def num_choices(self) -> int:
    return len(self.choices)

  @property
  def residual(self) -> bool:
    """MBConv blocks add their input when stride 1 and width unchanged."""
    return self.stride == 1 and self.c_in == self.c_out


def layer_specs(widths: str | Sequence[int] | None = None) -> tuple[LayerSpec, ...]:
  """The 21 searchable layers for ``widths`` (see the module docstring)."""
  widths = resolve_widths(widths)
  specs = []
  c_in = widths[1]
  index = 1
  for stage, (n, s) in enumerate(zip(STAGE_LAYERS, STAGE_STRIDES)):
    c_out = widths[2 + stage]
    for i in range(n):
      first = i == 0
      # Zero is offered by position (as in the reference code), not by the widths: a
      # stage's first layer never allows it, even if a custom width list keeps the width.
      specs.append(LayerSpec(index, layer_name(index), c_in, c_out, s if first else 1, not first))
      c_in = c_out
      index += 1
  return tuple(specs)


def num_choices() -> dict[str, int]:
  """``{layer name: K}`` (6 without zero, 7 with)."""
  return {s.name: s.num_choices for s in layer_specs()}


def feature_sizes(resolution: int) -> list[int]:
  """Spatial size at the input of layer 1..21 and after layer 21 (length 22).

  Convs use symmetric padding ``k // 2``, so stride 2 maps ``h`` to ``ceil(h / 2)``;
  the stem halves the input.
  """
  if resolution < 1:
    raise ConfigError(f"resolution={resolution} must be a positive integer")
  h = -(-resolution // 2)
  sizes = []
  for spec in layer_specs():
    sizes.append(h)
    if spec.stride == 2:
      h = -(-h // 2)
  sizes.append(h)
  return sizes


def init_phi(key: jax.Array | None = None, scale: float = 0.0, dtype=jnp.float32) -> dict[str, jax.Array]:
  """``phi`` with the layout of the module docstring: zeros (uniform p) or ``scale * N(0, 1)``."""
  out = {}
  for spec in layer_specs():
    if key is None or scale == 0.0:
      out[spec.name] = jnp.zeros((spec.num_choices,), dtype)
    else:
      key, sub = jax.random.split(key)
      out[spec.name] = scale * jax.random.normal(sub, (spec.num_choices,), dtype)
  return out


# --------------------------------------------------------------------------- genotypes


def _canonical_op(op: Any) -> str:
  op = str(op).strip()
  if op in ("0", "none"):
    return ZERO
  return op


@dataclasses.dataclass(frozen=True)
class ProxylessGenotype:
  """A discrete architecture: one op name per searchable layer (21).

  ``ops[i]`` is the op of layer ``i + 1``: ``'kK_eE'`` or ``'zero'`` (layer removed).
  Construction validates (unknown op, zero where the space does not offer it,
  wrong length) and raises :class:`ConfigError` with a one-line message.
  """
  ops: tuple[str, ...]

  def __post_init__(self):
    ops = tuple(_canonical_op(op) for op in self.ops)
    object.__setattr__(self, "ops", ops)
    if len(ops) != NUM_LAYERS:
      raise ConfigError(f"a ProxylessNAS genotype has {NUM_LAYERS} layer ops, got {len(ops)}: {list(ops)}")
    for spec, op in zip(layer_specs(), ops):
      parse_op(op)
      if op == ZERO and not spec.allows_zero:
        raise ConfigError(
            f"layer {spec.index} cannot be 'zero' (it changes stride or width; zero is not offered at "
            f"layers {[s.index for s in layer_specs() if not s.allows_zero]})")

  @classmethod
  def from_string(cls, text: str) -> "ProxylessGenotype":
    """``'k5_e3 k3_e3 0 ...'`` (whitespace or comma separated; ``0`` = zero)."""
    return cls(tuple(t for t in re.split(r"[\s,]+", text.strip()) if t))

  def __str__(self) -> str:
    return " ".join("0" if op == ZERO else op for op in self.ops)

  @property
  def indices(self) -> tuple[int, ...]:
    """Choice index per layer (``PROXYLESS_OPS`` order)."""
    return tuple(PROXYLESS_OPS.index(op) for op in self.ops)

  @classmethod
  def from_indices(cls, indices: Iterable[int]) -> "ProxylessGenotype":
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < len(PROXYLESS_OPS)]
    if bad:
      raise ConfigError(f"choice indices {bad} out of range [0, {len(PROXYLESS_OPS)})")
    return cls(tuple(PROXYLESS_OPS[i] for i in indices))

  @property
  def num_zero(self) -> int:
    return sum(op == ZERO for op in self.ops)

  def to_dict(self) -> dict:
    return {"format": GENOTYPE_FORMAT, "version": GENOTYPE_VERSION, "space": "proxyless",
            "ops": list(self.ops)}

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2)

  @classmethod
  def from_dict(cls, data: Mapping) -> "ProxylessGenotype":
    if not isinstance(data, Mapping) or data.get("format") != GENOTYPE_FORMAT:
      raise ConfigError(f"not a ProxylessNAS genotype (expected format {GENOTYPE_FORMAT!r}); "
                        "save one with ProxylessGenotype.save")
    version = data.get("version")
    if version != GENOTYPE_VERSION:
      raise ConfigError(f"ProxylessNAS genotype version {version!r} is not supported (this code reads "
                        f"version {GENOTYPE_VERSION})")
    ops = data.get("ops")
    if not isinstance(ops, list):
      raise ConfigError("ProxylessNAS genotype JSON needs an 'ops' list of 21 op names")
    return cls(tuple(ops))

  @classmethod
  def from_json(cls, text: str) -> "ProxylessGenotype":
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise ConfigError(f"genotype file is not valid JSON: {e}") from None
    return cls.from_dict(data)

  def save(self, path: str) -> None:
    """Writes :meth:`to_json` to ``path`` (a local path or a URI, atomically where the storage allows)."""
    from unas_jax.utils import files  # pylint: disable=import-outside-toplevel
    files.write_text(path, self.to_json() + "\n")

  @classmethod
  def load(cls, path: str) -> "ProxylessGenotype":
    if not os.path.isfile(path):
      raise ConfigError(f"genotype file {path!r} does not exist")
    try:
      with open(path) as f:
        text = f.read()
    except UnicodeDecodeError:
      raise ConfigError(f"{path} is not a genotype JSON file (not UTF-8 text)") from None
    return cls.from_json(text)


# Facts from the UNAS publication / NVlabs/unas proxylessnas/genotypes.py (UNAS) and from
# the ProxylessNAS-GPU network (transcribed there as PROXYLESS_GPU); layers 1..21.
BUILTIN_GENOTYPES = {
    "unas_proxyless": ProxylessGenotype.from_string(
        "k5_e3 k3_e3 0 0 k7_e3 0 0 0 k7_e3 k3_e3 k3_e3 k3_e3 k5_e3 k3_e3 k3_e3 k3_e3 "
        "k7_e6 k7_e3 k7_e3 k7_e3 k7_e6"),
    "proxylessnas_gpu": ProxylessGenotype.from_string(
        "k5_e3 0 0 0 k7_e3 0 0 k3_e3 k7_e6 0 0 k5_e3 k5_e6 0 k3_e3 k5_e3 k7_e6 "
        "k7_e6 k7_e6 k5_e6 k7_e6"),
}


def get_genotype(name_or_path: str | ProxylessGenotype) -> ProxylessGenotype:
  """A built-in name, a JSON file, a genotype string, or a genotype (returned as is)."""
  if isinstance(name_or_path, ProxylessGenotype):
    return name_or_path
  if name_or_path in BUILTIN_GENOTYPES:
    return BUILTIN_GENOTYPES[name_or_path]
  if os.path.isfile(name_or_path):
    return ProxylessGenotype.load(name_or_path)
  if len(re.split(r"[\s,]+", name_or_path.strip())) == NUM_LAYERS:
    return ProxylessGenotype.from_string(name_or_path)
  raise ConfigError(f"unknown ProxylessNAS genotype {name_or_path!r}: give a built-in name "
                    f"{sorted(BUILTIN_GENOTYPES)}, a genotype JSON file or 21 op names")


def uniform_genotype(op: str) -> ProxylessGenotype:
  """``op`` at every layer (e.g. the all-``k7_e6`` network)."""
  return ProxylessGenotype((op,) * NUM_LAYERS)


def all_zero_genotype(fill: str = "k3_e3") -> ProxylessGenotype:
  """The shallowest network: ``zero`` wherever offered, ``fill`` at layers 1, 5, 9, 13, 17, 21."""
  return ProxylessGenotype(tuple(ZERO if s.allows_zero else fill for s in layer_specs()))


def random_genotypes(rng: np.random.Generator | int, n: int) -> list[ProxylessGenotype]:
  """``n`` architectures, each layer's op uniform over its choices (a uniform ``phi``)."""
  rng = np.random.default_rng(rng)
  specs = layer_specs()
  return [ProxylessGenotype(tuple(s.choices[rng.integers(s.num_choices)] for s in specs))
          for _ in range(n)]


# --------------------------------------------------------------------------- arch <-> genotype


def genotype_from_phi(phi: Mapping[str, Any]) -> ProxylessGenotype:
  """The genotype is the argmax of every layer's logits (docs/design.md section 4: no pruning)."""
  _check_layout(phi, sample_axis=False)
  return ProxylessGenotype(tuple(PROXYLESS_OPS[int(np.argmax(np.asarray(phi[n])))] for n in LAYER_NAMES))


def genotype_to_arch(genotypes: ProxylessGenotype | Sequence[ProxylessGenotype],
                     dtype=jnp.float32) -> dict[str, jax.Array]:
  """One-hot ``arch`` ``{layer: [S, K]}`` for one genotype (``S = 1``) or a list (``S = len``)."""
  if isinstance(genotypes, ProxylessGenotype):
    genotypes = [genotypes]
  specs = layer_specs()
  idx = np.array([g.indices for g in genotypes], dtype=np.int32).reshape(len(genotypes), NUM_LAYERS)
  return {s.name: jax.nn.one_hot(idx[:, i], s.num_choices, dtype=dtype) for i, s in enumerate(specs)}


def genotypes_from_arch(arch: Mapping[str, Any]) -> list[ProxylessGenotype]:
  """Argmax per sample of an ``arch`` with leaves ``[S, K]`` -> ``S`` genotypes."""
  _check_layout(arch, sample_axis=True)
  idx = np.stack([np.argmax(np.asarray(arch[n]), axis=-1) for n in LAYER_NAMES], axis=-1)
  return [ProxylessGenotype.from_indices(row) for row in idx.reshape(-1, NUM_LAYERS)]


FLAT_DIM = sum(s.num_choices for s in layer_specs())
_FLAT_OFFSETS = tuple(int(o) for o in np.cumsum([0] + [s.num_choices for s in layer_specs()])[:-1])


def flat_index(layer: int, choice: int) -> int:
  """Position of (1-based ``layer``, ``choice``) in the flattened architecture."""
  return _FLAT_OFFSETS[layer - 1] + choice


def flatten_arch(arch: Mapping[str, Any]) -> jax.Array:
  """``{layer: [..., K_l]}`` -> ``[..., 141]`` (layers in order); differentiable."""
  return jnp.concatenate([jnp.asarray(arch[n]) for n in LAYER_NAMES], axis=-1)


def unflatten_arch(flat: Any) -> dict[str, jax.Array]:
  """Inverse of :func:`flatten_arch`."""
  flat = jnp.asarray(flat)
  if flat.shape[-1] != FLAT_DIM:
    raise ConfigError(f"a flattened ProxylessNAS architecture has {FLAT_DIM} entries, got {flat.shape[-1]}")
  return {s.name: flat[..., o:o + s.num_choices] for s, o in zip(layer_specs(), _FLAT_OFFSETS)}


def genotypes_to_flat(genotypes: Sequence[ProxylessGenotype]) -> np.ndarray:
  """``[N, 141]`` float64 one-hot matrix (the surrogate's design matrix)."""
  out = np.zeros((len(genotypes), FLAT_DIM))
  for r, g in enumerate(genotypes):
    for layer, k in enumerate(g.indices, start=1):
      out[r, flat_index(layer, k)] = 1.0
  return out


def _check_layout(tree: Mapping[str, Any], sample_axis: bool) -> None:
  if not isinstance(tree, Mapping) or set(tree) != set(LAYER_NAMES):
    keys = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
    raise ConfigError(f"expected ProxylessNAS phi/arch keys layer01..layer21, got {keys}")
  for spec in layer_specs():
    shape = np.shape(tree[spec.name])
    if not shape or shape[-1] != spec.num_choices or (sample_axis and len(shape) < 2):
      want = "[S, K]" if sample_axis else "[K]"
      raise ConfigError(f"{spec.name} has shape {shape}; expected {want} with K = {spec.num_choices}")
