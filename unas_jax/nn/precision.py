r"""Compute dtype and rematerialisation of the networks (``model.dtype``, ``model.remat``).

Mixed precision as big_vision and maxtext do it: the parameters ``w``, the
architecture logits ``phi``, BatchNorm statistics, optimiser states, losses and
the estimators stay float32; a network casts its input to the compute dtype at
its edge, casts each weight to the activation's dtype where it is used
(``kernel.astype(x.dtype)``), so convolutions and activations run in the compute
dtype; BatchNorm reduces its batch statistics in float32; the classifier reads
float32 features and returns float32 logits. The gradients reach the float32
parameters through the casts (the cast's transpose), so optimisers see float32.
With ``float32`` every cast is a no-op and the program is unchanged.

Rematerialisation (``jax.checkpoint``) of a cell (DARTS) or a layer
(ProxylessNAS), ``model.remat``:

* ``cell`` / ``layer``: keep only the outputs of convolutions, named
  :data:`CONV_OUT` with ``checkpoint_name``, and recompute the rest in the
  backward pass: BatchNorm, ReLU, the architecture-weighted sums of the supernets'
  mixed edges. Elementwise, cheap to recompute; the convolutions carry the FLOPs.
  In the DARTS supernet the convolution outputs are most of what the backward
  pass keeps, so this saves little there (``experiments/results/remat/``).
* ``cell_inputs`` / ``layer_inputs``: keep nothing inside the block
  (``nothing_saveable``): the backward pass keeps only each block's inputs and
  reruns the block's forward before its backward, about one more forward pass
  of the network for a peak of one block's activations instead of all blocks'.

What JAX keeps falls 50x with ``cell_inputs`` (DARTS supernet, 3 cells), but XLA:CPU's
buffer assignment allocates as much as without remat (``experiments/results/step_memory/``):
on the CPU both choices only add FLOPs. They are meant for GPUs and TPUs.
"""
from __future__ import annotations

import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

from unas_jax.config import check_choice

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
CONV_OUT = "conv_out"


def compute_dtype(name, field: str = "model.dtype") -> jnp.dtype:
  """``float32 | bfloat16 | float16`` (a name or a dtype) as a ``jnp.dtype``; else a one-line ConfigError."""
  key = jnp.dtype(name).name if not isinstance(name, str) else name
  check_choice(field, key, DTYPES)
  return jnp.dtype(DTYPES[key])


# The model.remat values each network takes.
DARTS_REMAT = ("none", "cell", "cell_inputs")
PROXYLESS_REMAT = ("none", "layer", "layer_inputs")


def check_remat(value: str, allowed: tuple[str, ...], field: str = "model.remat") -> str:
  return check_choice(field, value, allowed)


def conv_out(y: jax.Array) -> jax.Array:
  """Names a convolution output so the remat policy keeps it (a no-op outside ``jax.checkpoint``)."""
  return checkpoint_name(y, CONV_OUT)


def remat_policy(remat: str):
  """``*_inputs``: save nothing inside the block; else save the named convolution outputs."""
  if remat.endswith("_inputs"):
    return jax.checkpoint_policies.nothing_saveable
  return jax.checkpoint_policies.save_only_these_names(CONV_OUT)


def to_float32(x: jax.Array) -> jax.Array:
  return x.astype(jnp.float32)
