r"""UNAS's pairing penalty on a sample of the factorised DARTS cell (docs/design.md section 3).

Node ``j`` of the cell (``unas_jax/spaces/darts.py``) has two edges, each an
input selector and an op selector; the penalty is the overlap of the two edges'
(input, op) choices, ``sum_{cells, j} <in_a (x) op_a, in_b (x) op_b>``.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from unas_jax.spaces import darts


def pairing_penalty(arch: Mapping[str, Mapping[str, jax.Array]]) -> jax.Array:
  r"""UNAS's pairing penalty per sample, ``[S]``.

  ``sum_{cell type} sum_j <in_a (x) op_a, in_b (x) op_b>
  = sum sum_j (in_a . in_b)(op_a . op_b)``: 1 per node whose two edges pick the
  same input *and* the same op (one-hot samples), 0 otherwise; the UNAS
  implementation adds it with weight 0.2 (``alpha_loss``) so that a node's two
  edges are discouraged from duplicating each other.
  """
  total = 0.0
  for cell_type in darts.CELL_TYPES:
    cell = arch[cell_type]
    num_nodes = darts.cell_num_nodes(cell)
    ops = cell["ops"]
    for j in range(num_nodes):
      inputs = cell[f"inputs_{j}"]
      same_input = jnp.sum(inputs[:, 0] * inputs[:, 1], axis=-1)
      same_op = jnp.sum(ops[:, j, 0] * ops[:, j, 1], axis=-1)
      total = total + same_input * same_op
  return total
