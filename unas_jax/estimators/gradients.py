r"""Gradient estimators for ``d/dphi E_{z ~ p_phi}[L(z)]`` (docs/design.md section 2).

``phi`` is any pytree of architecture logits ``[..., K]``; the categoricals use the
softened logits ``l = log(softmax(phi) + eps)``. Every estimator draws
``sample_shape = (S,)`` architectures from ``key`` and returns the mean over them
of the per-sample estimate, as a pytree shaped like ``phi``.

Each estimate is written as ``jax.grad`` of a *surrogate* ``J(phi)`` whose gradient
is the estimator (``sg`` = ``stop_gradient``, means over the ``S`` samples):

* REINFORCE:       ``J = mean[ sg(L(z) - b) * log p(z) ]``
* Gumbel-softmax:  ``J = mean[ L(zeta) ]`` (SNAS; biased, kept as the baseline it is)
* REBAR (paper eq. 3):
  ``J = mean[ (sg L(z) - eta sg L(zeta~)) log p(z) + eta (L(zeta) - L(zeta~)) ]``
* RELAX (paper eq. 5), ``L_n`` measured, ``g`` a differentiable control:
  ``J = mean[ (L_n(z) - sg g(zeta~)) log p(z) + g(zeta) - g(zeta~) ]``
* UNAS = REBAR on ``L_d`` + RELAX on ``L_n`` with one shared sample.

With tied noise (the default) ``zeta~ == zeta`` in value, and
``L(zeta) - L(zeta~)`` is evaluated as one forward through
``zeta_eff = zeta - zeta~ + sg(zeta~)`` whose value is ``zeta~`` and whose
derivative is ``d zeta - d zeta~``: REBAR costs one discrete forward (no
gradient) and one relaxed forward and backward, and only phi receives gradients
(network weights closed over by ``loss_fn`` get none).

Losses: ``loss_fn(arch) -> L`` of shape ``[S]`` (or ``(L, aux)`` with
``has_aux=True``), where ``arch`` has the structure of ``phi`` with leaves
``[S, ..., K]`` that are one-hot (``z``) or relaxed (``zeta``). A measured loss is
passed as values ``f_z`` of shape ``[S]``, computed on
``categorical.discrete(key, soften(phi, eps), sample_shape)`` outside the
compiled step (the two-phase use).

Every estimator takes an optional ``noise``: the Gumbel noise
``g = categorical.gumbel_noise(key, soften(phi, eps), sample_shape)`` already drawn,
so that a caller that hands one draw to several estimators (the search step: the
accuracy estimator, the latency estimator, the w update) draws it once. The noise
does not depend on ``phi``, so the estimate is the same as with ``noise=None``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from chex import ArrayTree as PyTree

from unas_jax.estimators import categorical
from unas_jax.estimators.baselines import Baseline

sg = jax.lax.stop_gradient

DEFAULT_SAMPLE_SHAPE = (1,)


class Estimate(NamedTuple):
  """What an estimator returns.

  Attributes:
    grads: the gradient estimate, shaped like ``phi``.
    f_z: the loss of the discrete samples, ``[S]``.
    f_relaxed: the control variate's value at ``zeta~`` (REBAR: ``L(zeta~)``,
      RELAX: ``g(zeta~)``; Gumbel-softmax: ``L(zeta)``), ``[S]``; None for REINFORCE.
    sample: the :class:`~unas_jax.estimators.categorical.Sample` drawn (no gradient).
    aux: ``{'discrete': aux of loss_fn(z), 'relaxed': aux of the relaxed forward}``.
    baseline_state: REINFORCE's updated baseline state (else None).
    eta_grad: for REBAR/UNAS, ``d/d eta`` of the squared norm of this estimate,
      an unbiased estimate of the gradient of the estimator's variance used to
      learn ``eta`` (REBAR's remedy); None elsewhere.
    params_grads: with ``params`` (see :func:`unas`), ``d/dparams`` of the
      relaxed forward's ``aux['params_loss']``; else None.
  """
  grads: PyTree
  f_z: jax.Array
  f_relaxed: jax.Array | None = None
  sample: categorical.Sample | None = None
  aux: Any = None
  baseline_state: Any = None
  eta_grad: jax.Array | None = None
  params_grads: PyTree = None


def _call(loss_fn, arch, has_aux):
  out = loss_fn(arch)
  return out if has_aux else (out, None)


def _bind(loss_fn, params, has_aux):
  """``loss_fn`` with ``params`` bound (``loss_fn(arch, params)``), checked to need aux."""
  if params is None:
    return loss_fn
  if not has_aux:
    raise ValueError("params needs has_aux=True: loss_fn(arch, params) must return (value, aux) with "
                     "aux['params_loss'] a scalar")
  return lambda arch: loss_fn(arch, params)


def _phi_only(surrogate):
  """``p -> (J, aux)`` from ``surrogate(p, params) -> ((J, J_params), aux)`` without params."""
  def fn(p):
    (j, _), aux = surrogate(p, None)
    return j, aux
  return fn


def _grads_two_cotangents(surrogate, phi, params):
  r"""``d J/d phi`` and ``d J_params/d params`` of ``surrogate(phi, params) -> ((J, J_params), aux)``.

  One forward (``jax.vjp``) and two cotangents, ``(1, 0)`` and ``(0, 1)``: the relaxed
  forward of the network is traced once for both gradients; XLA drops the halves of
  each backward pass whose results are unused (``d J/d params``, ``d J_params/d phi``).
  """
  (j, j_params), vjp_fn, aux = jax.vjp(surrogate, phi, params, has_aux=True)
  grads, _ = vjp_fn((jnp.ones_like(j), jnp.zeros_like(j_params)))
  _, params_grads = vjp_fn((jnp.zeros_like(j), jnp.ones_like(j_params)))
  return grads, params_grads, aux


def _check_values(name: str, values: jax.Array, sample_shape) -> jax.Array:
  values = jnp.asarray(values)
  if values.shape != tuple(sample_shape):
    raise ValueError(f"{name} has shape {values.shape}; expected sample_shape {tuple(sample_shape)} "
                     "(one value per sampled architecture)")
  return values


def _mean_dot(coeff: jax.Array, logp: jax.Array) -> jax.Array:
  return jnp.mean(coeff * logp)


def _control_variate(sample: categorical.Sample, fn, has_aux):
  """Returns ``(c, d, aux)``: ``c = fn(zeta~)`` and ``d`` with ``grad d = grad fn(zeta) - grad fn(zeta~)``."""
  if sample.tied:
    zeta_eff = jax.tree.map(lambda a, c: a - c + sg(c), sample.zeta, sample.zeta_cond)
    value, aux = _call(fn, zeta_eff, has_aux)
    return value, value, aux
  value_cond, aux = _call(fn, sample.zeta_cond, has_aux)
  value, _ = _call(fn, sample.zeta, has_aux)
  return value_cond, value - value_cond, aux


def _sampler(tied: bool, uniform_clamp: float | None, noise: PyTree | None):
  return functools.partial(categorical.sample, tied=tied, uniform_clamp=uniform_clamp, noise=noise)


def reinforce(phi: PyTree, key: jax.Array, loss: jax.Array | Callable, *, eps: float = 0.0,
              sample_shape: tuple[int, ...] = DEFAULT_SAMPLE_SHAPE,
              baseline: Baseline | None = None, baseline_state: Any = None,
              has_aux: bool = False, uniform_clamp: float | None = None,
              noise: PyTree | None = None) -> Estimate:
  r"""REINFORCE: ``(L(z) - b) d/dphi log p_phi(z)``, averaged over the ``S`` samples.

  Args:
    phi: architecture logits.
    key: PRNG key of the draw.
    loss: measured values ``[S]`` on ``discrete(key, soften(phi, eps), sample_shape)``,
      or a function ``z -> [S]`` (evaluated without gradient).
    eps: softening.
    sample_shape: ``(S,)``.
    baseline: a :class:`Baseline` (default none) and its ``baseline_state``.
    noise: the draw's Gumbel noise, if already drawn (module docstring).
  """
  logits = categorical.soften(phi, eps)
  z = categorical.discrete(key, logits, sample_shape, uniform_clamp=uniform_clamp, noise=noise)
  aux = None
  if callable(loss):
    f_z, aux = _call(loss, z, has_aux)
    f_z = sg(f_z)
  else:
    f_z = _check_values("loss", loss, sample_shape)
  if baseline is None:
    b, new_state = 0.0, None
  else:
    state = baseline.init() if baseline_state is None else baseline_state
    b, new_state = baseline.value(state, f_z), baseline.update(state, f_z)
  coeff = sg(f_z - b)
  grads = jax.grad(lambda p: _mean_dot(coeff, categorical.log_prob(categorical.soften(p, eps), z)))(phi)
  sample = categorical.Sample(z=z, zeta=z, zeta_cond=z)
  return Estimate(grads=grads, f_z=f_z, sample=sample, aux={"discrete": aux}, baseline_state=new_state)


def gumbel_softmax(phi: PyTree, key: jax.Array, loss_fn: Callable, *, tau: float = 0.4,
                   eps: float = 0.0, sample_shape: tuple[int, ...] = DEFAULT_SAMPLE_SHAPE,
                   has_aux: bool = False, uniform_clamp: float | None = None,
                   params: PyTree = None, noise: PyTree | None = None) -> Estimate:
  r"""Gumbel-softmax (SNAS): ``d/dphi L(zeta)``, ``zeta = softmax((l + g)/tau)``.

  Biased: the relaxed loss is not the discrete loss. Kept as the low-variance
  baseline the paper compares against; the tests check that it *is* biased.
  ``f_z`` is the discrete loss, evaluated for logging only. ``params`` and ``noise``: as in
  :func:`unas`.
  """
  def surrogate(p, params_):
    sample = categorical.sample(key, categorical.soften(p, eps), tau=tau, sample_shape=sample_shape,
                                uniform_clamp=uniform_clamp, noise=noise)
    value, aux = _call(_bind(loss_fn, params_, has_aux), sample.zeta, has_aux)
    j_params = aux["params_loss"] if params_ is not None else None
    return (jnp.mean(value), j_params), (value, aux, sample)

  if params is None:
    grads, (f_relaxed, aux_relaxed, sample) = jax.grad(_phi_only(surrogate), has_aux=True)(phi)
    params_grads = None
  else:
    grads, params_grads, (f_relaxed, aux_relaxed, sample) = _grads_two_cotangents(surrogate, phi, params)
  f_z, aux_discrete = _call(_bind(loss_fn, params, has_aux), sample.z, has_aux)
  return Estimate(grads=grads, f_z=sg(f_z), f_relaxed=sg(f_relaxed), sample=sg(sample),
                  aux={"discrete": aux_discrete, "relaxed": aux_relaxed}, params_grads=params_grads)


def unas(phi: PyTree, key: jax.Array, loss_fn: Callable | None = None, f_n: jax.Array | None = None,
         control_fn: Callable | None = None, *, eta: float | jax.Array = 1.0, tau: float | jax.Array = 0.4,
         eps: float = 0.0, sample_shape: tuple[int, ...] = DEFAULT_SAMPLE_SHAPE, tied: bool = True,
         has_aux: bool = False, sampler: Callable | None = None,
         uniform_clamp: float | None = None, params: PyTree = None,
         noise: PyTree | None = None) -> Estimate:
  r"""UNAS: REBAR on a differentiable ``L_d`` plus RELAX on a measured ``L_n``, one sample.

  .. math::
     \hat g = (L_d(z) - \eta L_d(\tilde\zeta)) \nabla \log p(z) + \eta(\nabla L_d(\zeta) - \nabla L_d(\tilde\zeta))
            + (L_n(z) - g(\tilde\zeta)) \nabla \log p(z) + \nabla g(\zeta) - \nabla g(\tilde\zeta)

  Either part may be left out (``loss_fn=None`` or ``f_n=None``): :func:`rebar`
  and :func:`relax` are this function with one part.

  Args:
    loss_fn: differentiable ``arch -> L_d [S]`` (or ``(L_d, aux)`` with ``has_aux``).
    f_n: measured ``L_n`` on the discrete sample of ``key``, ``[S]``.
    control_fn: differentiable ``arch -> g [S]``, RELAX's control (required with ``f_n``).
    eta: REBAR's control-variate scale (UNAS: 1).
    tau: temperature (UNAS: 0.4).
    tied: tie the conditional sample's noise to ``z``'s (one relaxed forward).
    sampler: replaces :func:`categorical.sample` (tests inject wrong samplers).
    params: optional pytree the loss also depends on (the network weights ``w``).
      Then ``loss_fn(arch, params)`` must return ``(L_d, aux)`` (``has_aux=True``)
      with a scalar ``aux['params_loss']``, and ``Estimate.params_grads`` is its
      gradient w.r.t. ``params`` at the relaxed forward (value ``zeta~``, which is
      ``zeta`` with tied noise), from the same forward pass as the phi gradient:
      the search step trains ``w`` on the relaxed sample of the draw without a
      second forward. The phi estimate is unchanged.
    noise: the Gumbel noise of ``key``'s draw, if already drawn (module docstring);
      not with ``sampler``.
  """
  if loss_fn is None and f_n is None:
    raise ValueError("unas() needs a differentiable loss_fn, measured values f_n, or both")
  if f_n is not None:
    if control_fn is None:
      raise ValueError("RELAX needs a differentiable control_fn (e.g. the latency surrogate)")
    f_n = _check_values("f_n", f_n, sample_shape)
  if sampler is not None and noise is not None:
    raise ValueError("noise is for the default sampler; an injected sampler draws its own")
  sampler = sampler or _sampler(tied, uniform_clamp, noise)

  def draw(p):
    logits = categorical.soften(p, eps)
    return logits, sampler(key, logits, tau=tau, sample_shape=sample_shape)

  _, sample0 = draw(phi)
  z = sg(sample0.z)
  if params is not None and loss_fn is None:
    raise ValueError("params needs a differentiable loss_fn")
  f_d, aux_discrete = (None, None) if loss_fn is None else _call(_bind(loss_fn, params, has_aux), z, has_aux)
  f_d = None if f_d is None else sg(f_d)

  # The estimate is linear in eta: g_hat = A + eta * B, with A = mean[L_d(z) grad log p]
  # + RELAX's part and B = mean[-L_d(zeta~) grad log p + grad L_d(zeta) - grad L_d(zeta~)].
  # Computing B separately gives d||g_hat||^2/d eta = 2 <g_hat, B> for free.
  def surrogate_a(p):
    logits, sample = draw(p)
    logp = categorical.log_prob(logits, z)
    total, c_n = 0.0, None
    if f_d is not None:
      total = total + _mean_dot(f_d, logp)
    if f_n is not None:
      c_n, d_n, _ = _control_variate(sample, control_fn, False)
      total = total + _mean_dot(f_n - sg(c_n), logp) + jnp.mean(d_n)
    return total, c_n

  grads_a, c_n = jax.grad(surrogate_a, has_aux=True)(phi)
  if loss_fn is None:
    return Estimate(grads=grads_a, f_z=f_n, f_relaxed=sg(c_n), sample=sg(sample0), aux={})

  def surrogate_b(p, params_):
    logits, sample = draw(p)
    c_d, d_d, aux = _control_variate(sample, _bind(loss_fn, params_, has_aux), has_aux)
    logp = categorical.log_prob(logits, z)
    j_params = aux["params_loss"] if params_ is not None else None
    return (_mean_dot(-sg(c_d), logp) + jnp.mean(d_d), j_params), (c_d, aux)

  if params is None:
    grads_b, (c_d, aux_relaxed) = jax.grad(_phi_only(surrogate_b), has_aux=True)(phi)
    params_grads = None
  else:
    grads_b, params_grads, (c_d, aux_relaxed) = _grads_two_cotangents(surrogate_b, phi, params)
  grads = jax.tree.map(lambda a, b: a + eta * b, grads_a, grads_b)
  eta_grad = 2.0 * sum(jnp.vdot(g, b) for g, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_b)))
  f_z = f_d if f_n is None else f_d + f_n
  f_relaxed = sg(c_d) if f_n is None else sg(c_d) + sg(c_n)
  return Estimate(grads=grads, f_z=f_z, f_relaxed=f_relaxed, sample=sg(sample0),
                  aux={"discrete": aux_discrete, "relaxed": aux_relaxed}, eta_grad=eta_grad,
                  params_grads=params_grads)


def rebar(phi: PyTree, key: jax.Array, loss_fn: Callable, *, eta: float | jax.Array = 1.0,
          tau: float | jax.Array = 0.4, eps: float = 0.0,
          sample_shape: tuple[int, ...] = DEFAULT_SAMPLE_SHAPE, tied: bool = True,
          has_aux: bool = False, sampler: Callable | None = None,
          uniform_clamp: float | None = None, params: PyTree = None,
          noise: PyTree | None = None) -> Estimate:
  r"""REBAR (paper eq. 3) for a differentiable loss, control variate ``eta * L(zeta~)``:

  .. math::
     \hat g = (L(z) - \eta L(\tilde\zeta)) \nabla_\phi \log p(z)
              - \eta \nabla_\phi L(\tilde\zeta) + \eta \nabla_\phi L(\zeta)

  Unbiased for every ``eta`` and ``tau``. ``Estimate.eta_grad`` is
  ``d ||g_hat||^2 / d eta``, for learning ``eta`` by descent on the variance.
  ``params``: as in :func:`unas` (the weights' gradient from the same relaxed forward);
  ``noise``: as in :func:`unas`.
  """
  return unas(phi, key, loss_fn, None, None, eta=eta, tau=tau, eps=eps, sample_shape=sample_shape,
              tied=tied, has_aux=has_aux, sampler=sampler, uniform_clamp=uniform_clamp, params=params,
              noise=noise)


def relax(phi: PyTree, key: jax.Array, f_z: jax.Array, control_fn: Callable, *,
          tau: float | jax.Array = 0.4, eps: float = 0.0,
          sample_shape: tuple[int, ...] = DEFAULT_SAMPLE_SHAPE, tied: bool = True,
          sampler: Callable | None = None, uniform_clamp: float | None = None,
          noise: PyTree | None = None) -> Estimate:
  r"""RELAX (paper eq. 5) for a measured, non-differentiable loss ``L_n``:

  .. math::
     \hat g = (L_n(z) - g(\tilde\zeta)) \nabla_\phi \log p(z)
              - \nabla_\phi g(\tilde\zeta) + \nabla_\phi g(\zeta)

  Args:
    f_z: ``L_n`` measured on ``categorical.discrete(key, soften(phi, eps), sample_shape)``.
    control_fn: differentiable ``arch -> [S]`` (UNAS: a linear latency surrogate).
    noise: as in :func:`unas`.
  """
  return unas(phi, key, None, f_z, control_fn, tau=tau, eps=eps, sample_shape=sample_shape,
              tied=tied, sampler=sampler, uniform_clamp=uniform_clamp, noise=noise)


def rebar_variance_gradients(phi: PyTree, key: jax.Array, loss_fn: Callable, *, eta: jax.Array,
                             log_tau: jax.Array, eps: float = 0.0,
                             sample_shape: tuple[int, ...] = DEFAULT_SAMPLE_SHAPE,
                             has_aux: bool = False) -> tuple[Estimate, jax.Array, jax.Array]:
  r"""REBAR's estimate and ``d/d(eta, log tau)`` of its squared norm.

  ``E||g_hat||^2 = Var + ||true gradient||^2`` and the mean does not depend on
  ``eta`` or ``tau`` (REBAR is unbiased for all of them), so descending these
  gradients lowers the variance (Tucker et al. 2017, section 3.3). The
  temperature needs second derivatives through ``loss_fn``; use
  ``Estimate.eta_grad`` of :func:`rebar` when only ``eta`` is learned.

  Returns:
    ``(estimate, d_eta, d_log_tau)``.
  """
  def g_hat(eta_, log_tau_):
    tau = jnp.exp(log_tau_)
    logits_fixed = categorical.soften(sg(phi), eps)
    # The score coefficient's value L(zeta~) depends on tau: evaluate it with phi
    # held fixed so that it carries tau's derivative but no phi gradient.
    sample_fixed = categorical.sample(key, logits_fixed, tau=tau, sample_shape=sample_shape)
    c_d, _ = _call(loss_fn, sample_fixed.zeta_cond, has_aux)
    z = sg(sample_fixed.z)
    f_d, _ = _call(loss_fn, z, has_aux)
    f_d = sg(f_d)

    def surrogate(p):
      logits = categorical.soften(p, eps)
      sample = categorical.sample(key, logits, tau=tau, sample_shape=sample_shape)
      # As _control_variate's tied form, but the point zeta~ at which L is
      # linearised keeps its tau-dependence (phi held fixed) instead of sg.
      zeta_eff = jax.tree.map(lambda a, c, c_fixed: a - c + c_fixed, sample.zeta, sample.zeta_cond,
                              sample_fixed.zeta_cond)
      d_d, _ = _call(loss_fn, zeta_eff, has_aux)
      logp = categorical.log_prob(logits, z)
      return _mean_dot(f_d - eta_ * c_d, logp) + eta_ * jnp.mean(d_d)

    return jax.grad(surrogate)(phi), (f_d, c_d, sample_fixed)

  grads, vjp, (f_z, c_d, sample) = jax.vjp(g_hat, jnp.asarray(eta), jnp.asarray(log_tau), has_aux=True)
  d_eta, d_log_tau = vjp(jax.tree.map(lambda g: 2.0 * g, grads))
  estimate = Estimate(grads=grads, f_z=f_z, f_relaxed=sg(c_d), sample=sg(sample), aux={}, eta_grad=d_eta)
  return estimate, d_eta, d_log_tau
