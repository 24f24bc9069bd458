r"""The one place that decides which kernels a step uses: the CPU kernels or plain XLA ops.

Two families compute the same functions (``tests/test_ops.py`` checks they agree):

* ``cpu``: the kernels tuned for XLA:CPU in :mod:`unas_jax.nn.fast_grad` and
  :mod:`unas_jax.nn.depthwise`: depthwise convolutions as shifted slices,
  hand-written backward passes of pools, depthwise and block-diagonal
  pointwise convolutions, pointwise blocks in chunks of ``PW_CHUNK_WIDTH``
  channels, and :func:`unas_jax.nn.fast_grad.isolated` fusion barriers (a
  ``lax.cond`` each).
* ``xla``: the library ops (``conv_general_dilated`` with
  ``feature_group_count``, ``reduce_window`` pools, one batched ``einsum`` for
  the pointwise blocks) differentiated by JAX. On XLA:GPU a conditional copies
  its predicate to the host and blocks, and breaks CUDA-graph capture; the
  hand-written backward passes only pay off on XLA:CPU.

The choice is ``auto | cpu | xla`` (``model.kernels`` in the configs); ``auto``
resolves to ``cpu`` on the CPU backend and ``xla`` elsewhere. It is read at
*trace* time, and when lowering for another platform on a CPU host
(``jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))``) the backend is
still ``cpu``: so the lowering sets it explicitly with :func:`use` (or the config
says ``xla``). Networks hold their configured choice and enter :func:`use`
around their forward pass; an ``auto`` there defers to an enclosing :func:`use`.

A jitted function traced once keeps the kernels of that trace: enter
:func:`use` before the first trace of a step (a fresh ``jax.jit`` object
per choice).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax

from unas_jax.config import check_choice

CHOICES = ("auto", "cpu", "xla")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("unas_jax_kernels", default=None)


def check(kernels: str, name: str = "model.kernels") -> str:
  """Returns ``kernels`` if it is one of :data:`CHOICES`; else a one-line :class:`ConfigError`."""
  return check_choice(name, kernels, CHOICES)


def for_platform(platform: str) -> str:
  """``cpu`` for the CPU platform, ``xla`` for every other (``cuda``, ``rocm``, ``gpu``, ``tpu``)."""
  return "cpu" if platform == "cpu" else "xla"


def current() -> str:
  """The kernels of the trace being built: the innermost non-``auto`` :func:`use`, else by backend."""
  chosen = _current.get()
  if chosen is not None:
    return chosen
  return for_platform(jax.default_backend())


@contextlib.contextmanager
def use(kernels: str) -> Iterator[str]:
  """Within the block, :func:`current` is ``kernels`` (``auto``: unchanged, i.e. the enclosing choice)."""
  check(kernels)
  if kernels == "auto":
    yield current()
    return
  token = _current.set(kernels)
  try:
    yield kernels
  finally:
    _current.reset(token)
