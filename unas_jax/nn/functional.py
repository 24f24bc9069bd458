"""NNX modules used functionally: pure pytrees in, pure pytrees out.

A model is split once into a static :class:`ModelDef` and three pure dicts:
``phi`` (architecture logits, :class:`ArchParam`), ``w`` (weights, ``nnx.Param``)
and ``stats`` (BatchNorm statistics, ``nnx.BatchStat``). Jitted steps take and
return those dicts; :func:`apply` rebuilds the module inside the trace.

Modules follow one calling convention::

    logits = model(x, arch, train=..., key=...)

where ``arch`` has the structure of ``phi`` with a leading sample axis ``S``
(``S`` = batch size for per-example architectures, 1 for one shared
architecture), one-hot (discrete ``z``) or relaxed (``zeta``), and ``key`` feeds
dropout/drop-path (None when ``train=False``). Evaluation networks have no
``phi`` and ignore ``arch``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from chex import ArrayTree as PyTree
from flax import nnx
import jax
import jax.numpy as jnp



class ArchParam(nnx.Variable):
  """Architecture logits ``phi``; kept apart from the weights ``w`` by ``nnx.split``."""


@dataclasses.dataclass(frozen=True, eq=False)
class ModelDef:
  """The static part of a split model (hashable; safe to close over in ``jax.jit``)."""
  graphdef: Any
  phi_state: Any
  w_state: Any
  stats_state: Any
  rest_state: Any


def split(model: nnx.Module) -> tuple[ModelDef, PyTree, PyTree, PyTree]:
  """Splits ``model`` into ``(model_def, phi, w, stats)``, the last three pure dicts."""
  graphdef, phi_state, w_state, stats_state, rest_state = nnx.split(
      model, ArchParam, nnx.Param, nnx.BatchStat, ...)
  model_def = ModelDef(graphdef, phi_state, w_state, stats_state, rest_state)
  return model_def, phi_state.to_pure_dict(), w_state.to_pure_dict(), stats_state.to_pure_dict()


def merge(model_def: ModelDef, phi: PyTree | None, w: PyTree, stats: PyTree) -> nnx.Module:
  """Rebuilds the module from pure dicts (a copy: safe inside ``jax.grad``)."""
  def fill(template, pure):
    state = jax.tree.map(lambda x: x, template)  # fresh State object
    if pure is not None:
      nnx.replace_by_pure_dict(state, pure)
    return state
  return nnx.merge(model_def.graphdef, fill(model_def.phi_state, phi), fill(model_def.w_state, w),
                   fill(model_def.stats_state, stats), model_def.rest_state, copy=True)


def apply(model_def: ModelDef, w: PyTree, stats: PyTree, x: jax.Array, arch: PyTree | None = None, *,
          train: bool, key: jax.Array | None = None, **call_kwargs) -> tuple[Any, PyTree]:
  """Runs the model: returns ``(output, new_stats)``.

  In training mode BatchNorm uses batch statistics and ``new_stats`` holds the
  updated running averages; in eval mode ``new_stats`` equals ``stats``.
  ``call_kwargs`` go to the module's ``__call__`` (e.g. ``drop_path``).
  """
  model = merge(model_def, None, w, stats)
  out = model(x, arch, train=train, key=key, **call_kwargs)
  new_stats = nnx.state(model, nnx.BatchStat).to_pure_dict()
  return out, new_stats


def scan_modules(modules: list[nnx.Module], fn: Callable, carry: Any, xs: Any = None, *,
                 update_stats: bool = True) -> Any:
  r"""``carry = fn(modules[i], carry, xs[i])`` for ``i = 0, 1, ...`` as one ``jax.lax.scan``.

  The modules must share one graph (same classes, static attributes and variable
  shapes): a run of identical cells or layers. Their variables are stacked along a
  new leading axis and scanned, so the compiled program holds ``fn`` once instead
  of ``len(modules)`` times; gradients reach each module's own parameters through
  the stack. With ``update_stats`` the BatchNorm statistics ``fn`` wrote are put
  back into each module, as an unrolled loop would leave them.
  """
  graphdef = nnx.graphdef(modules[0])
  stack = lambda *leaves: jnp.stack(leaves)  # noqa: E731
  stats = jax.tree.map(stack, *[nnx.state(m, nnx.BatchStat) for m in modules])
  rest = jax.tree.map(stack, *[nnx.state(m, nnx.Not(nnx.BatchStat)) for m in modules])

  def body(carry, inputs):
    module_stats, module_rest, x = inputs
    module = nnx.merge(graphdef, module_stats, module_rest)
    carry = fn(module, carry, x)
    return carry, nnx.state(module, nnx.BatchStat)

  carry, new_stats = jax.lax.scan(body, carry, (stats, rest, xs))
  if update_stats:
    for k, module in enumerate(modules):
      nnx.update(module, jax.tree.map(lambda a, k=k: a[k], new_stats))
  return carry


def path_names(path: tuple[Any, ...]) -> tuple[Any, ...]:
  """A pytree key path of a pure dict as plain keys (``DictKey.key``, ``SequenceKey.idx``)."""
  return tuple(getattr(p, "key", getattr(p, "idx", p)) for p in path)


def count_params(w: PyTree, exclude: Callable[[tuple[Any, ...]], bool] | None = None) -> int:
  """Number of entries of the arrays in ``w``, without those whose :func:`path_names` ``exclude`` accepts."""
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(w):
    if exclude is None or not exclude(path_names(path)):
      total += math.prod(leaf.shape)
  return total
