"""The network a training run evaluates, built from ``config.model`` (docs/design.md section 7).

:func:`from_config` returns an adapter that the trainer
(:func:`unas_jax.evaluation.trainer.run_training`) uses::

    network.name                  # for logs and the summary
    network.build(info)           # the nnx.Module, for a dataset's DatasetInfo
    network.abstract(info)        # the same with shape-only variables (cheap)
    network.is_aux(path)          # whether a ``w`` path belongs to the auxiliary head
    network.macs(info)            # multiply-adds of one image through the inference network

``config.model`` keys:

  space          'darts' (cell networks, :mod:`unas_jax.nn.darts_network`) or
                 'proxyless' (the 21-layer MBConv network,
                 ``unas_jax.nn.proxyless_network``).
  genotype       a built-in name (darts: ``unas_cifar10``, ``unas_cifar100``,
                 ``unas_imagenet``, ``darts_v2``; proxyless: ``unas_proxyless``,
                 ``proxylessnas_gpu``) or the path of a genotype JSON file written
                 by a search (``<search workdir>/genotype/genotype.json``).
  network        darts: 'cifar' (NetworkCIFAR) or 'imagenet' (NetworkImageNet).
  channels       darts: initial channels C (0: the network's published size,
                 :data:`unas_jax.evaluation.defaults.DARTS_SIZES`).
  num_cells      darts: cells (0: as ``channels``).
  num_nodes      darts: intermediate nodes the genotype must have (0: any).
  auxiliary      darts: auxiliary head after the second reduction cell.
  aux_head_bn    darts imagenet: BatchNorm after the auxiliary head's 2x2 conv,
                 'true' | 'false' | 'auto' (as the genotype's reference: DARTS's
                 head for ``darts_v2`` has none, UNAS's has one).
  widths         proxyless: 'gpu', 'mobile' or 9 comma-separated ints.
  dropout        proxyless: dropout before the classifier in training.
  depthwise_impl 'auto' | 'slices' | 'xla' (:mod:`unas_jax.nn.depthwise`).
  kernels        'auto' | 'cpu' | 'xla' (:mod:`unas_jax.nn.kernels`).
  dtype          compute dtype 'float32' | 'bfloat16' | 'float16' (:mod:`unas_jax.nn.precision`).
  remat          'none' | 'cell' | 'cell_inputs' (darts) | 'layer' | 'layer_inputs' (proxyless):
                 ``jax.checkpoint`` keeping conv outputs, or only the block's inputs.
  scan_cells     darts: run each run of identical cells (CIFAR: 2-5, 8-12, 15-19) as one
                 ``lax.scan``, one cell in the compiled program (default False: unrolled).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from flax import nnx
import jax
import ml_collections

from unas_jax.config import check_choice, check_number
from unas_jax.errors import ConfigError
from unas_jax.evaluation import defaults
from unas_jax.nn import darts_network
from unas_jax.nn import depthwise
from unas_jax.nn import kernels as kernels_lib
from unas_jax.nn import precision
from unas_jax.nn import proxyless_network
from unas_jax.spaces import darts_genotype
from unas_jax.spaces import proxyless as proxyless_space

SPACES = ("darts", "proxyless")
DARTS_NETWORKS = ("cifar", "imagenet")


@dataclasses.dataclass(frozen=True)
class DartsEvalNetwork:
  """A DARTS-space evaluation network (NetworkCIFAR / NetworkImageNet) of one genotype."""
  genotype: darts_genotype.Genotype
  network: str
  channels: int
  num_cells: int
  auxiliary: bool
  aux_head_bn: bool
  depthwise_impl: str
  seed: int
  genotype_name: str
  kernels: str
  dtype: str
  remat: str
  scan_cells: bool

  @property
  def name(self) -> str:
    what = self.genotype_name or "genotype"
    kind = "CIFAR" if self.network == "cifar" else "ImageNet"
    return f"{what} Network{kind}({self.num_cells} cells, C={self.channels})"

  def _kwargs(self, info) -> dict[str, Any]:
    return dict(network=self.network, num_classes=int(info.num_classes), channels=self.channels,
                num_cells=self.num_cells, auxiliary=self.auxiliary, in_channels=int(info.image_shape[-1]),
                aux_head_bn=self.aux_head_bn, depthwise_impl=self.depthwise_impl, kernels=self.kernels,
                dtype=self.dtype, remat=self.remat, scan_cells=self.scan_cells)

  def build(self, info) -> nnx.Module:
    return darts_network.build(self.genotype, rngs=nnx.Rngs(self.seed), **self._kwargs(info))

  def abstract(self, info) -> nnx.Module:
    return darts_network.abstract(self.genotype, **self._kwargs(info))

  def is_aux(self, path: Sequence[Any]) -> bool:
    return darts_network.is_aux(path)

  def macs(self, info) -> int:
    kwargs = self._kwargs(info)
    kwargs.pop("in_channels")
    kwargs.pop("remat")
    kwargs.pop("scan_cells")
    return darts_network.network_macs(self.genotype, tuple(info.image_shape), **kwargs)


class _ProxylessCall(nnx.Module):
  """Gives ``ProxylessNetwork`` the evaluation call convention (``drop_path`` accepted, no aux logits).

  The ProxylessNAS network has no drop-path and no auxiliary head (the recipe
  does not use them); ``drop_path`` must be 0.
  """

  def __init__(self, net: nnx.Module):
    self.net = net

  def __call__(self, x: jax.Array, arch: Any = None, *, train: bool, key: jax.Array | None = None,
               drop_path: float | jax.Array = 0.0) -> tuple[jax.Array, None]:
    del drop_path
    return self.net(x, arch, train=train, key=key), None


@dataclasses.dataclass(frozen=True)
class ProxylessEvalNetwork:
  """The ProxylessNAS-space network of one genotype (``zero`` layers removed)."""
  genotype: str
  widths: Any
  dropout: float
  depthwise_impl: str
  seed: int
  kernels: str
  dtype: str
  remat: str

  @property
  def name(self) -> str:
    widths = self.widths if isinstance(self.widths, str) else "x".join(map(str, self.widths))
    return f"{self.genotype} ProxylessNetwork({widths} widths)"

  def _check(self, info) -> None:
    h, w, c = info.image_shape
    if c != 3:
      raise ConfigError(f"the ProxylessNAS network reads 3-channel images, the data has {c}; "
                        "set --config.data.channels=3")
    if h != w:
      raise ConfigError(f"the ProxylessNAS network needs square images, the data is {h}x{w}")

  def build(self, info) -> nnx.Module:
    self._check(info)
    net = proxyless_network.ProxylessNetwork(self.genotype, self.widths, int(info.num_classes), rngs=nnx.Rngs(self.seed),
                                   dropout=self.dropout, depthwise_impl=self.depthwise_impl, kernels=self.kernels,
                                   dtype=self.dtype, remat=self.remat)
    return _ProxylessCall(net)

  def abstract(self, info) -> nnx.Module:
    return nnx.eval_shape(lambda: self.build(info))

  def is_aux(self, path: Sequence[Any]) -> bool:
    del path
    return False

  def macs(self, info) -> int:
    self._check(info)
    return int(proxyless_network.count_macs(self.genotype, self.widths, int(info.image_shape[0]), int(info.num_classes)))


def _genotype_label(spec: str) -> str:
  if spec in darts_genotype.BUILTIN_GENOTYPES:
    return spec
  return f"genotype {spec}"


def from_config(model: ml_collections.ConfigDict, seed: int = 0) -> DartsEvalNetwork | ProxylessEvalNetwork:
  """The adapter for ``config.model`` (see the module docstring; every key is in
  :func:`unas_jax.evaluation.defaults.model_block`, which holds the defaults).

  Raises:
    ConfigError: an unknown space or network, a bad size, a genotype that is
      neither a built-in name nor a readable, valid genotype JSON file.
  """
  space = model.space
  check_choice("config.model.space", space, SPACES)
  spec = model.genotype
  if not isinstance(spec, str) or not spec:
    raise ConfigError("config.model.genotype must name a built-in genotype or a genotype JSON file")
  impl = model.depthwise_impl
  check_choice("config.model.depthwise_impl", impl, depthwise.IMPLEMENTATIONS)
  compute = dict(kernels=kernels_lib.check(model.kernels, "config.model.kernels"),
                 dtype=precision.compute_dtype(model.dtype, "config.model.dtype").name)
  remat = model.remat
  if space == "proxyless":
    if model.auxiliary:
      raise ConfigError("the ProxylessNAS network has no auxiliary head; set --config.model.auxiliary=False")
    dropout = float(model.dropout)
    if not 0.0 <= dropout < 1.0:
      raise ConfigError(f"config.model.dropout={dropout} must lie in [0, 1)")
    proxyless_space.get_genotype(spec)  # validates (ConfigError with the reason)
    widths = model.widths
    if isinstance(widths, str) and "," in widths:
      try:
        widths = tuple(int(w) for w in widths.split(","))
      except ValueError:
        raise ConfigError(f"config.model.widths={widths!r}: use 'gpu', 'mobile' or 9 comma-separated "
                          "integers") from None
    elif not isinstance(widths, str):
      widths = tuple(int(w) for w in widths)
    proxyless_space.resolve_widths(widths)
    remat = precision.check_remat(remat, precision.PROXYLESS_REMAT, "config.model.remat")
    return ProxylessEvalNetwork(genotype=spec, widths=widths, dropout=dropout, depthwise_impl=impl, seed=seed,
                                remat=remat, **compute)

  network = model.network
  check_choice("config.model.network", network, DARTS_NETWORKS)
  default_channels, default_cells = defaults.DARTS_SIZES[network]
  # 0: the network's default.
  channels = check_number("config.model.channels", model.channels, 0, integer=True) or default_channels
  num_cells = check_number("config.model.num_cells", model.num_cells, 0, integer=True) or default_cells
  if num_cells < 3:
    raise ConfigError(f"config.model.num_cells={num_cells} must be >= 3 (two of the cells are reduction cells)")
  num_nodes = check_number("config.model.num_nodes", model.num_nodes, 0, integer=True) or None
  genotype = darts_genotype.get_genotype(spec, num_nodes=num_nodes)
  aux_head_bn = str(model.aux_head_bn).lower()
  check_choice("config.model.aux_head_bn", aux_head_bn, ("auto", "true", "false"))
  # 'auto': DARTS's ImageNet head has no BN after its 2x2 conv; UNAS's has.
  aux_head_bn = spec != "darts_v2" if aux_head_bn == "auto" else aux_head_bn == "true"
  remat = precision.check_remat(remat, precision.DARTS_REMAT, "config.model.remat")
  scan_cells = model.scan_cells
  if not isinstance(scan_cells, bool):
    raise ConfigError(f"config.model.scan_cells={scan_cells!r} must be True or False")
  return DartsEvalNetwork(genotype=genotype, network=network, channels=channels, num_cells=num_cells,
                          auxiliary=bool(model.auxiliary), aux_head_bn=bool(aux_head_bn),
                          depthwise_impl=impl, seed=seed, genotype_name=_genotype_label(spec), remat=remat,
                          scan_cells=scan_cells, **compute)
