r"""Search objectives (docs/design.md section 3).

Per example ``i`` (architecture sample ``i`` paired with train example ``i`` and
validation example ``i``):

* ``L_train_i = l_train_i``, ``L_val_i = l_val_i`` (the paper's Table 2 ablation),
* ``L_gen_i = l_train_i + lambda * |l_val_i - l_train_i|`` (``lambda = 0.5``),

where ``l`` is the cross-entropy of the supernet under architecture ``i``.
Latency: ``L_lat(z) = c_t * relu(lat(z) - target)`` (hinge) or ``c_t * lat(z)``
(linear), with ``c_t`` warmed up linearly from 0 to ``c`` over the first steps;
or ``lambda * lat(z) / target`` (lagrangian), the constraint
``E_{p_phi}[lat] <= target`` with a multiplier ``lambda >= 0`` that the search
adjusts by dual ascent (:func:`dual_ascent`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from unas_jax.config import check_choice

OBJECTIVES = ("train", "val", "gen")
LATENCY_PENALTIES = ("hinge", "linear", "lagrangian")
# What the lagrangian multiplier multiplies, per sample: lat / target (linear) or
# relu(lat - target) / target (hinge: no push on a sample that meets the target).
LAGRANGIAN_TERMS = ("linear", "hinge")


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example cross-entropy ``[B]`` (optionally label-smoothed)."""
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def search_objective(l_train: jax.Array, l_val: jax.Array, objective: str, gen_lambda: float = 0.5) -> jax.Array:
  r"""Per-example architecture loss ``[B]``: ``L_train``, ``L_val`` or ``L_gen``.

  ``L_gen_i = l_train_i + lambda |l_val_i - l_train_i|``.
  """
  check_choice("search.objective", objective, OBJECTIVES)
  if objective == "train":
    return l_train
  if objective == "val":
    return l_val
  return l_train + gen_lambda * jnp.abs(l_val - l_train)


def per_sample(per_example: jax.Array, num_samples: int) -> jax.Array:
  """Groups per-example losses ``[B]`` by architecture sample: ``[S]`` means.

  ``S == B`` (one architecture per example) returns the losses as they are;
  ``S == 1`` (one shared architecture) their mean.
  """
  b = per_example.shape[0]
  if b % num_samples:
    raise ValueError(f"batch {b} is not a multiple of the {num_samples} architecture samples")
  return jnp.mean(per_example.reshape(num_samples, b // num_samples), axis=1)


def latency_coefficient(step: jax.Array, c: float, warmup_steps: int) -> jax.Array:
  """``c_t = c * min(1, step / warmup_steps)`` (linear warm-up from 0)."""
  if warmup_steps <= 0:
    return jnp.asarray(c, jnp.float32)
  return c * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def latency_penalty(latency_ms: jax.Array, coefficient: jax.Array, target_ms: float, kind: str = "hinge",
                    lagrangian_term: str = "linear") -> jax.Array:
  r"""``c_t * relu(lat - target)`` (hinge), ``c_t * lat`` (linear) or the lagrangian's term.

  For ``lagrangian`` the coefficient is the multiplier ``lambda`` and the term is
  ``lambda * lat / target`` (``lagrangian_term='linear'``: the phi-dependent part of the
  Lagrangian ``lambda * (E[lat] / target - 1)``; at a fixed ``lambda`` the linear penalty
  with ``c = lambda / target``) or ``lambda * relu(lat - target) / target``
  (``'hinge'``: the hinge with ``c = lambda / target``, which leaves a sample that meets
  the target to the accuracy term). Both are scale-free (no unit), so one multiplier step
  size serves any device and target.
  """
  check_choice("latency.penalty", kind, LATENCY_PENALTIES)
  if kind == "hinge":
    return coefficient * jax.nn.relu(latency_ms - target_ms)
  if kind == "linear":
    return coefficient * latency_ms
  check_choice("latency.lagrangian_term", lagrangian_term, LAGRANGIAN_TERMS)
  if lagrangian_term == "hinge":
    return coefficient * jax.nn.relu(latency_ms - target_ms) / target_ms
  return coefficient * latency_ms / target_ms


def dual_ascent(multiplier: jax.Array, latency_ms: jax.Array, target_ms: jax.Array, lr: jax.Array,
                ratio: jax.Array = 1.0) -> jax.Array:
  r"""One projected dual-ascent step on the latency constraint's multiplier.

  ``lambda <- max(0, lambda + lr * (mean(lat) / (ratio * target) - 1))``

  ``mean(lat)`` is the step's estimate of ``E_{p_phi}[lat]``: the latency surrogate's
  expectation under ``p_phi`` (noise-free), or the mean measured latency of the
  architectures drawn this step (unbiased; the small ``lr`` averages its noise over steps).
  ``ratio <= 1`` aims the constraint a little below the target, a margin for the
  difference between ``E[lat]`` and the latency of the final mode architecture.
  The violation is normalised by the target: scale-free, as the penalty.
  """
  return jnp.maximum(0.0, multiplier + lr * violation(latency_ms, target_ms, ratio))


def violation(latency_ms: jax.Array, target_ms: jax.Array, ratio: jax.Array = 1.0) -> jax.Array:
  """The normalised constraint violation ``mean(lat) / (ratio * target) - 1`` (> 0: violated)."""
  return jnp.mean(latency_ms) / (ratio * target_ms) - 1.0


def damped_multiplier(multiplier: jax.Array, last_violation: jax.Array, damping: jax.Array) -> jax.Array:
  r"""The coefficient the penalty uses: ``max(0, lambda + damping * v_prev)``.

  A proportional term on top of the integral ``lambda`` (PI control of the multiplier,
  as in Stooke et al. 2020 and Sohrabi et al. 2024): it pushes as soon as the violation
  appears and lets go as soon as it vanishes, which damps the oscillation of plain dual
  ascent. ``damping = 0`` is plain dual ascent.
  """
  return jnp.maximum(0.0, multiplier + damping * last_violation)
