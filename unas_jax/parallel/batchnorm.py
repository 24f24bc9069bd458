"""Local or synchronised BatchNorm statistics under data parallelism.

``local`` (the default): each device normalises with the mean and variance of
its own slice of the batch, ``mu_d = mean(x[d])``, as the reference
implementations do (PyTorch ``DataParallel`` / ``DistributedDataParallel``
without ``SyncBatchNorm``: UNAS searched with 32 images per GPU on 4 GPUs).
Keeping it reproduces the reference's regularisation and costs no collective
per BatchNorm layer. The running averages kept in ``stats`` are the mean over
devices of each device's update (``pmean`` in the steps), so replicas stay
identical.

``sync``: ``mu = pmean_d(mean(x[d]))`` and ``E[x^2]`` likewise over the ``data``
axis (:func:`unas_jax.nn.ops.batch_norm` with ``axis_name``): the statistics of
the whole global batch, so results do not depend on the number of devices (to
float rounding). Costs two all-reduces of ``C`` floats per BatchNorm and step.
"""
from __future__ import annotations

from flax import nnx

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError

MODES = ("local", "sync")


def _synchronisable(node) -> bool:
  # unas_jax.nn.ops.BatchNorm (and its subclasses) and flax's nnx.BatchNorm read ``axis_name``.
  from unas_jax.nn import ops  # pylint: disable=import-outside-toplevel
  return isinstance(node, (ops.BatchNorm, nnx.BatchNorm))


def set_axis_name(module: nnx.Module, axis_name: str | None) -> int:
  """Sets ``axis_name`` on every BatchNorm of ``module`` (None: local statistics); returns how many.

  Raises ConfigError when ``module`` holds a BatchNorm that cannot synchronise
  (any other module with ``nnx.BatchStat`` variables), so ``sync`` never
  silently stays local.
  """
  count = 0
  for _, node in nnx.iter_graph(module):
    if not isinstance(node, nnx.Module):
      continue
    if _synchronisable(node):
      node.axis_name = axis_name
      count += 1
    elif axis_name is not None and any(isinstance(v, nnx.BatchStat) for v in vars(node).values()):
      raise ConfigError(f"{type(node).__name__} has no synchronised BatchNorm; use bn='local'")
  return count


def apply_mode(module: nnx.Module, mode: str, axis_name: str, name: str = "bn") -> nnx.Module:
  """``module`` with local (``mode='local'``) or ``axis_name``-synchronised BatchNorm statistics."""
  check_choice(name, mode, MODES)
  set_axis_name(module, axis_name if mode == "sync" else None)
  return module
