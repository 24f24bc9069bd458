r"""Products of independent categoricals and the Gumbel samples the estimators share.

An architecture distribution is a pytree of logit arrays; each array has shape
``[..., K]`` and holds independent categoricals over its last axis (``K``
choices). Samples carry a leading *sample axis* ``S`` (one architecture per
example, or ``S = 1`` for one architecture shared by a minibatch or device), so
a sample leaf has shape ``[S, ..., K]``.

Notation (docs/design.md section 2), per categorical with normalised log-probabilities
``lq = log_softmax(l)``:

* Gumbel noise ``g = -log(-log u)``, ``u ~ U(0, 1)``; ``s = lq + g``.
* discrete sample ``z = one_hot(argmax s)``, so ``P(z = k) = softmax(l)_k``;
* relaxed sample ``zeta = softmax(s / tau)``;
* conditional sample given ``z = k`` (REBAR's ``zeta~ ~ r(zeta | z)``), from noise ``v``:

  .. math::
     \tilde s_k = -\log(-\log v_k), \qquad
     \tilde s_i = -\log\Big(\frac{-\log v_i}{q_i} - \log v_k\Big)
                = -\operatorname{logaddexp}(-(lq_i + g'_i),\, -\tilde s_k),

  with ``g' = -log(-log v)``; ``\tilde s_k`` is the maximum, Gumbel(0) distributed
  and independent of ``k``, and each ``\tilde s_i`` is a Gumbel(``lq_i``) truncated
  below it. ``zeta~ = softmax(s~ / tau)``.

*Tied noise* (REBAR's and UNAS's choice): ``v`` is the noise that reproduces the
``s`` that produced ``z``, so ``s~ == s`` in value while ``s~`` depends on the
logits only through the ``i != k`` entries with ``v`` held fixed. The estimators
then need one relaxed forward through ``zeta - zeta~ + stop_gradient(zeta~)``.

Everything is computed in log space (``logaddexp``, ``log1p``/``expm1``), never as
``v ** (1 / q)``, so float32 stays finite for probabilities down to 1e-6 and below.
"""
from __future__ import annotations


from chex import ArrayTree as PyTree
from flax import struct
import jax
import jax.numpy as jnp



@struct.dataclass
class Sample:
  """One draw of architectures; every field has the structure of the logits.

  Attributes:
    z: one-hot discrete samples, leaves ``[S, ..., K]``.
    zeta: relaxed samples ``softmax(s / tau)``; differentiable in the logits
      through ``s = lq + g`` with the Gumbel noise ``g`` held fixed.
    zeta_cond: conditional relaxed samples ``zeta~ ~ r(zeta | z)``,
      reparameterised by their own noise ``v``; equal to ``zeta`` in value when
      the noise is tied.
    tied: True when ``zeta_cond`` equals ``zeta`` in value (tied noise), which
      lets the estimators merge two relaxed forwards into one.
  """
  z: PyTree
  zeta: PyTree
  zeta_cond: PyTree
  tied: bool = struct.field(pytree_node=False, default=True)


def soften(phi: PyTree, eps: float = 0.0) -> PyTree:
  r"""Softened logits ``l = log(softmax(phi) + eps)`` (docs/design.md section 4).

  ``eps > 0`` keeps every choice reachable (UNAS uses 0.08 on ImageNet). With
  ``eps = 0`` this is ``log_softmax(phi)``, computed stably.
  """
  if eps == 0.0:
    return jax.tree.map(lambda p: jax.nn.log_softmax(p, axis=-1), phi)
  return jax.tree.map(lambda p: jnp.log(jax.nn.softmax(p, axis=-1) + eps), phi)


def probabilities(logits: PyTree) -> PyTree:
  """``softmax(l)`` per categorical."""
  return jax.tree.map(lambda l: jax.nn.softmax(l, axis=-1), logits)


def log_prob(logits: PyTree, z: PyTree) -> jax.Array:
  r"""``log p(z) = sum_j log softmax(l_j)[z_j]`` over every categorical.

  Args:
    logits: leaves ``[..., K]``.
    z: one-hot samples, leaves ``[*sample_shape, ..., K]``.

  Returns:
    An array of shape ``sample_shape``.
  """
  def leaf(l, zl):
    sample_ndim = zl.ndim - l.ndim
    per_entry = jnp.sum(zl * jax.nn.log_softmax(l, axis=-1), axis=-1)
    return jnp.sum(per_entry, axis=tuple(range(sample_ndim, per_entry.ndim)))
  return sum(jax.tree.leaves(jax.tree.map(leaf, logits, z)))


def entropy(logits: PyTree) -> jax.Array:
  r"""``H(p) = -sum_j sum_k p_jk log p_jk``: entropy of the whole product."""
  def leaf(l):
    lq = jax.nn.log_softmax(l, axis=-1)
    return -jnp.sum(jnp.exp(lq) * lq)
  return sum(jax.tree.leaves(jax.tree.map(leaf, logits)))


def mode(logits: PyTree) -> PyTree:
  """The most probable architecture, one-hot (the genotype is its argmax)."""
  return jax.tree.map(lambda l: jax.nn.one_hot(jnp.argmax(l, -1), l.shape[-1], dtype=l.dtype), logits)


def _split_like(key: jax.Array, tree: PyTree) -> PyTree:
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def _uniform(key, shape, dtype, clamp):
  # minval = tiny keeps -log(u) finite; maxval 1 is exclusive in jax.random.
  u = jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)
  if clamp is not None:
    # The reference implementation clamps u to [1e-3, 1 - 1e-3]; that truncates the
    # Gumbel noise, so z is no longer distributed as softmax(l): off by default.
    u = jnp.clip(u, clamp, 1.0 - clamp)
  return u


def per_sample_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  """One key per sample, ``fold_in(key, index)``: sample ``i`` is the same whichever
  slice of samples a device draws (data parallelism without changing results)."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))


def _is_key_batch(key: jax.Array) -> bool:
  return jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 1


def gumbel_noise(key: jax.Array, logits: PyTree, sample_shape: tuple[int, ...] = (1,), *,
                 uniform_clamp: float | None = None) -> PyTree:
  """Gumbel noise ``g = -log(-log u)`` with leaves ``[*sample_shape, ..., K]``.

  ``key`` is a typed PRNG key (``jax.random.key``) for the whole block, or a
  batch of keys of shape ``sample_shape`` (one per sample, see :func:`per_sample_keys`).
  """
  if _is_key_batch(key):
    if key.shape != tuple(sample_shape):
      raise ValueError(f"{key.shape[0]} per-sample keys for sample_shape {tuple(sample_shape)}")
    return jax.vmap(lambda k: gumbel_noise(k, logits, (), uniform_clamp=uniform_clamp))(key)

  def leaf(k, l):
    u = _uniform(k, tuple(sample_shape) + l.shape, l.dtype, uniform_clamp)
    return -jnp.log(-jnp.log(u))
  return jax.tree.map(leaf, _split_like(key, logits), logits)


def _one_hot_argmax(s):
  return jax.nn.one_hot(jnp.argmax(s, axis=-1), s.shape[-1], dtype=s.dtype)


def discrete(key: jax.Array, logits: PyTree, sample_shape: tuple[int, ...] = (1,), *,
             uniform_clamp: float | None = None, noise: PyTree | None = None) -> PyTree:
  """The one-hot ``z = one_hot(argmax(log_softmax(l) + g))`` that :func:`sample` draws from the same key.

  This is phase one of the two-phase use: draw ``z`` here, measure a
  non-differentiable loss on it (latency) outside the compiled step, then hand
  the values and the same ``key`` to :func:`unas_jax.estimators.relax`.
  ``noise``: ``g`` already drawn by :func:`gumbel_noise` from ``key`` (then ``key``
  and ``uniform_clamp`` are not read); None draws it here.
  """
  g = gumbel_noise(key, logits, sample_shape, uniform_clamp=uniform_clamp) if noise is None else noise
  return jax.tree.map(lambda l, gl: _one_hot_argmax(jax.nn.log_softmax(l, -1) + gl), logits, g)


def truncated_gumbel_given_max(lq: jax.Array, g_cond: jax.Array, s_max: jax.Array) -> jax.Array:
  r"""``-logaddexp(-(lq + g'), -s_max)``: Gumbel(``lq``) conditioned to lie below ``s_max``."""
  return -jnp.logaddexp(-(lq + g_cond), -s_max)


def conditional_scores(lq: jax.Array, z: jax.Array, g_cond: jax.Array, g_max: jax.Array) -> jax.Array:
  r"""Gumbel scores ``s~`` conditioned on the argmax being ``z`` (one-hot).

  Args:
    lq: normalised log-probabilities, ``[..., K]`` (broadcast against ``z``).
    z: one-hot condition, ``[S, ..., K]``.
    g_cond: Gumbel noise ``g' = -log(-log v_i)`` for the non-argmax entries.
    g_max: Gumbel noise ``-log(-log v_k)`` of the maximum, ``[S, ..., 1]``.

  Returns:
    ``s~`` with ``s~_k = g_max`` and ``s~_i = -logaddexp(-(lq_i + g'_i), -g_max)``.
  """
  truncated = truncated_gumbel_given_max(lq, g_cond, g_max)
  return jnp.where(z > 0, g_max, truncated)


def _tied_noise(lq, s, z):
  """The noise ``(g', g_max)`` for which :func:`conditional_scores` returns ``s`` itself.

  ``g_max = max s`` (the max of Gumbels with normalised locations is Gumbel(0)),
  and for ``i != k``: ``exp(-(lq_i + g'_i)) = exp(-s_i) - exp(-s_k)``, i.e.
  ``g'_i = s_i - lq_i - log(-expm1(s_i - s_k))``. Both are held fixed
  (stop_gradient): the conditional sample's dependence on the logits comes only
  from ``lq`` in :func:`conditional_scores`.
  """
  s = jax.lax.stop_gradient(s)
  lq = jax.lax.stop_gradient(lq)
  s_max = jnp.max(s, axis=-1, keepdims=True)
  gap = jnp.minimum(s - s_max, -jnp.finfo(s.dtype).tiny)  # < 0 for i != k; the argmax entry is unused
  g_cond = s - lq - jnp.log(-jnp.expm1(gap))
  g_cond = jnp.where(z > 0, 0.0, g_cond)
  return g_cond, s_max


def sample(key: jax.Array, logits: PyTree, *, tau: float | jax.Array,
           sample_shape: tuple[int, ...] = (1,), tied: bool = True,
           uniform_clamp: float | None = None, noise: PyTree | None = None) -> Sample:
  r"""Draws ``z``, ``zeta`` and ``zeta~ ~ r(zeta | z)`` for every categorical.

  Args:
    key: typed PRNG key, or one key per sample (shape ``sample_shape``); the
      same key gives the same ``z`` as :func:`discrete`.
    logits: pytree of logits ``[..., K]`` (e.g. ``soften(phi, eps)``).
    tau: relaxation temperature (UNAS: 0.4).
    sample_shape: leading sample axes, ``(S,)``: ``S`` = batch size for
      per-example architectures, 1 for one shared architecture.
    tied: if True, ``zeta~`` reuses the noise of ``z`` (``zeta~ == zeta`` in
      value); otherwise ``zeta~`` uses fresh noise drawn from ``fold_in(key, 1)``.
    uniform_clamp: clamp ``u`` to ``[c, 1 - c]`` like the reference code (biased).
    noise: the Gumbel noise ``g`` already drawn by :func:`gumbel_noise` from ``key``
      (a caller that hands one draw to several estimators draws it once); None
      draws it here. Untied ``zeta~`` still draws its own noise from ``key``.

  Returns:
    A :class:`Sample`.
  """
  g = gumbel_noise(key, logits, sample_shape, uniform_clamp=uniform_clamp) if noise is None else noise
  if not tied:
    cond_key = (jax.vmap(lambda k: jax.random.fold_in(k, 1))(key) if _is_key_batch(key)
                else jax.random.fold_in(key, 1))
    g_fresh = gumbel_noise(cond_key, logits, sample_shape, uniform_clamp=uniform_clamp)

  def leaf(l, gl, gf):
    lq = jax.nn.log_softmax(l, axis=-1)
    s = lq + gl
    z = jax.lax.stop_gradient(_one_hot_argmax(s))
    zeta = jax.nn.softmax(s / tau, axis=-1)
    if tied:
      g_cond, g_max = _tied_noise(lq, s, z)
    else:
      # Fresh v: the maximum's Gumbel(0) noise is read off the argmax position.
      g_cond = gf
      g_max = jnp.sum(z * gf, axis=-1, keepdims=True)
    s_cond = conditional_scores(lq, z, g_cond, g_max)
    zeta_cond = jax.nn.softmax(s_cond / tau, axis=-1)
    return z, zeta, zeta_cond

  logit_leaves, treedef = jax.tree.flatten(logits)
  g_leaves = treedef.flatten_up_to(g)
  fresh_leaves = treedef.flatten_up_to(g_fresh) if not tied else g_leaves
  z, zeta, zeta_cond = zip(*(leaf(*args) for args in zip(logit_leaves, g_leaves, fresh_leaves)))
  return Sample(z=treedef.unflatten(z), zeta=treedef.unflatten(zeta),
                zeta_cond=treedef.unflatten(zeta_cond), tied=tied)
