r"""The jitted search and weight-training steps (docs/design.md sections 3 and 6).

One search step, per device (inside ``jax.shard_map`` over the ``data`` axis):

1. draw architectures from ``phi`` with keys derived from ``(seed, step)`` (a
   resumed run draws the same samples; :func:`step_keys` names the streams): one
   per example, one per device, or one shared by the whole batch. The draw
   (:class:`Draw`: softened logits, Gumbel noise, ``z``) is made once and handed to
   the accuracy estimator, the latency estimator and the w update;
2. estimate ``d/dphi E[L(z)]`` with the configured estimator (:func:`accuracy_estimator`: REINFORCE,
   Gumbel-softmax or REBAR) on the accuracy objective (``L_train``, ``L_val`` or
   ``L_gen`` plus the pairing penalty), and, when a latency term is configured,
   add (:func:`latency_term`) RELAX's estimate for ``c_t * relu(lat(z) - target)`` with the measured
   latencies passed in and the surrogate as control (or REINFORCE / the biased
   FBNet-style surrogate-through-Gumbel gradient, for comparison); with
   ``latency_penalty='lagrangian'`` the term is ``lambda * lat(z) / target``
   (the same estimators, at the state's multiplier ``lambda``), and ``lambda``
   takes one dual-ascent step on the measured violation
   (:func:`unas_jax.objectives.losses.dual_ascent`);
3. average the phi gradient across devices, update phi (``tx_phi``);
4. update w on the train batch with the relaxed sample of the same draw (no
   gradient to phi), average across devices, update w (``tx_w``). With
   ``w_gradient='relaxed_forward'`` (REBAR, Gumbel-softmax) the w gradient comes
   from the estimator's relaxed forward (one ``jax.vjp``, two cotangents: the phi
   surrogate's and the train batch's mean cross-entropy) instead of a forward of its own.

With one architecture per example, sample ``i`` is drawn from
``fold_in(key, i)`` (global example index), so the result does not depend on how
many devices share the batch.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
import optax

from unas_jax import estimators as est
from unas_jax.config import check_choice
from unas_jax.nn import functional
from unas_jax.objectives import losses
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.parallel.mesh import DATA_AXIS

PyTree = Any

SAMPLING = ("per_example", "per_device", "shared")
ACCURACY_ESTIMATORS = ("reinforce", "gumbel_softmax", "rebar")
LATENCY_ESTIMATORS = ("relax", "reinforce", "surrogate_gumbel")
W_GRADIENTS = ("own_forward", "relaxed_forward")
# What the lagrangian multiplier's dual step holds to ratio * target:
# * expected: E_{p_phi}[g(z)] of the control g (the latency surrogate), exact for an additive
#   g (the ProxylessNAS and table surrogates): noise-free, so the multiplier does not random-walk;
#   its error is the surrogate's;
# * measured: the mean measured latency of this step's samples, an unbiased but noisy
#   estimate of E_{p_phi}[lat] (one sample a step with a latency probe);
# * mode: g of the mode of p_phi, the architecture the search returns.
LATENCY_CONSTRAINTS = ("expected", "measured", "mode")


@struct.dataclass
class SearchState:
  """Everything a search step reads and writes (a pytree; checkpointed whole)."""
  step: jax.Array
  key: jax.Array            # raw uint32 key data of the run's base key
  phi: PyTree
  w: PyTree
  stats: PyTree
  opt_phi: PyTree
  opt_w: PyTree
  baseline: PyTree          # REINFORCE baseline state
  eta: jax.Array            # REBAR's control-variate scale
  opt_eta: PyTree
  # The latency hinge's target and coefficient c, read by the step as inputs rather than
  # baked into the program: searches that differ only in them (a sweep over targets, the
  # unconstrained c=0 control) share one compiled step through the persistent cache.
  # The run's config sets them at every (re)start (:func:`latency_hparams`).
  latency_target_ms: jax.Array
  latency_c: jax.Array
  # latency.penalty=lagrangian: the multiplier lambda >= 0 of E[lat] <= target is the search's
  # own state (moved by dual ascent every step, checkpointed and resumed as it is); its step
  # size and the fraction of the target it aims at are config inputs like target and c.
  latency_lambda: jax.Array
  latency_violation: jax.Array  # the last step's measured violation (the damping term's input)
  latency_lambda_lr: jax.Array
  latency_damping: jax.Array
  latency_ratio: jax.Array


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the search step (hashable), read from the config by ``loop.step_config``.

  No field has a default here: ``config.search`` and ``config.latency``
  (``unas_jax/search/defaults.py``) are their one home. ``latency_estimator=None``:
  no latency term (the state's latency fields are then never read).
  """
  estimator: str
  objective: str
  gen_lambda: float
  tau: float
  eps: float
  sampling: str
  pairing_weight: float
  baseline: str
  baseline_decay: float
  baseline_value: float           # the constant baseline's b
  learn_eta: bool
  eta_lr: float                   # learn_eta: Adam's learning rate on eta
  # Where the w update's gradient comes from (REBAR and Gumbel-softmax):
  # * own_forward: its own forward and backward on the train batch (default);
  # * relaxed_forward: the estimator's relaxed forward over (train, val), one jax.vjp and
  #   two cotangents: one forward fewer in the program, but the w backward then runs over
  #   the val half too (a zero cotangent): on XLA:CPU, 5 cells, 8 channels, it compiled
  #   9-18% faster and stepped 1.5-1.8x slower (README "Start-up time, step speed and memory").
  w_gradient: str
  # Latency (None: no latency term). target_ms and c are the initial values of the state's
  # fields of the same names (init_state); the step reads the state's.
  latency_estimator: str | None
  latency_target_ms: float
  latency_penalty: str
  latency_c: float
  latency_warmup_steps: int
  # penalty=lagrangian: initial multiplier, its dual-ascent step size, and the fraction of
  # the target that E[lat] is held to (the initial values of the state's fields).
  latency_lambda_init: float
  latency_lambda_lr: float
  latency_damping: float
  latency_ratio: float
  latency_constraint: str
  latency_lagrangian_term: str

  def __post_init__(self):
    # The choices; the ranges (tau, eta_lr, target_ms, the multiplier's settings, ratio) are
    # unas_jax.validation's, which loop.validate runs before loop.step_config builds this.
    check_choice("search.estimator", self.estimator, ACCURACY_ESTIMATORS)
    check_choice("search.sampling", self.sampling, SAMPLING)
    check_choice("search.objective", self.objective, losses.OBJECTIVES)
    if self.latency_estimator is not None:  # None: no latency term
      check_choice("latency.estimator", self.latency_estimator, LATENCY_ESTIMATORS)
    check_choice("latency.penalty", self.latency_penalty, losses.LATENCY_PENALTIES)
    check_choice("search.w_gradient", self.w_gradient, W_GRADIENTS)
    if self.latency_estimator is not None and self.latency_penalty == "lagrangian":
      check_choice("latency.constraint", self.latency_constraint, LATENCY_CONSTRAINTS)
      check_choice("latency.lagrangian_term", self.latency_lagrangian_term, losses.LAGRANGIAN_TERMS)


@dataclasses.dataclass(frozen=True, eq=False)
class SearchModel:
  """A supernet and what the step needs to know about its search space.

  Attributes:
    model_def: the split supernet (see ``unas_jax.nn.functional``).
    arch_penalty_fn: ``arch -> [S]`` extra architecture loss (the DARTS pairing
      penalty), or None.
    control_fn: ``(control_params, arch) -> [S]`` latency prediction in ms,
      differentiable in ``arch`` (RELAX's control), or None.
  """
  model_def: functional.ModelDef
  arch_penalty_fn: Callable[[PyTree], jax.Array] | None = None
  control_fn: Callable[[PyTree, PyTree], jax.Array] | None = None

  def apply(self, w, stats, x, arch, *, train, key=None):
    return functional.apply(self.model_def, w, stats, x, arch, train=train, key=key)


def samples_per_device(cfg: StepConfig, local_batch: int) -> int:
  return local_batch if cfg.sampling == "per_example" else 1


def num_global_samples(cfg: StepConfig, global_batch: int, num_devices: int) -> int:
  """How many architectures one step draws in all (one latency value each)."""
  return {"per_example": global_batch, "per_device": num_devices, "shared": 1}[cfg.sampling]


def sample_indices(cfg: StepConfig, device_index, local_batch: int) -> jax.Array:
  """Global sample indices that device ``device_index`` draws."""
  if cfg.sampling == "per_example":
    return device_index * local_batch + jnp.arange(local_batch)
  if cfg.sampling == "per_device":
    return jnp.reshape(device_index, (1,))
  return jnp.zeros((1,), jnp.int32)


class StepKeys(NamedTuple):
  """The named key streams of one step: ``fold_in(fold_in(key, step), tag)``.

  The tags (0, 1, 2) are part of every run's random numbers: a resumed run, and
  the host's draw of the architectures it measures, must reproduce them.

  Attributes:
    arch: the architectures (tag 0); global sample ``i`` from ``fold_in(arch, i)``,
      so the host (:func:`global_architectures`) and every device draw the same ``z``.
    dropout: the search step's forward noise (drop-path; tag 1); device ``d`` splits
      ``fold_in(dropout, d)`` into the train forward's, the val forward's and the w update's.
    warmup_dropout: the w-only warm-up's forward noise (tag 2), ``fold_in(warmup_dropout, d)``.
  """
  arch: jax.Array
  dropout: jax.Array
  warmup_dropout: jax.Array


def step_keys(state_key: jax.Array, step: jax.Array) -> StepKeys:
  """The key streams of step ``step`` of the run whose base key data is ``state_key``."""
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state_key), step)
  return StepKeys(arch=jax.random.fold_in(step_key, 0), dropout=jax.random.fold_in(step_key, 1),
                  warmup_dropout=jax.random.fold_in(step_key, 2))


class Draw(NamedTuple):
  r"""One device's architectures of a step, drawn once and handed to every consumer.

  ``logits = soften(phi, eps)``; ``noise`` the Gumbel noise ``g`` of each sample (sample
  ``i`` from ``keys[i]``); ``z = one_hot(argmax(log_softmax(logits) + g))``. The
  estimators rebuild their relaxed samples from ``noise``, differentiably in phi.
  """
  keys: jax.Array
  logits: PyTree
  noise: PyTree
  z: PyTree

  @property
  def sample_shape(self) -> tuple[int, ...]:
    return self.keys.shape

  def relaxed(self, tau) -> est.Sample:
    """``zeta = softmax((log_softmax(logits) + g) / tau)`` of the same draw (no gradient needed)."""
    return est.sample(self.keys, self.logits, tau=tau, sample_shape=self.sample_shape, noise=self.noise)


def draw_architectures(phi: PyTree, eps: float, arch_key: jax.Array, indices: jax.Array) -> Draw:
  """The samples with global indices ``indices`` of the step whose architecture key is ``arch_key``."""
  keys = est.per_sample_keys(arch_key, indices)
  logits = est.soften(phi, eps)
  noise = est.gumbel_noise(keys, logits, keys.shape)
  return Draw(keys=keys, logits=logits, noise=noise, z=est.discrete(keys, logits, keys.shape, noise=noise))


def global_architectures(cfg: StepConfig, state_key, step, phi, global_batch: int, num_devices: int) -> PyTree:
  """Phase one of the two-phase latency term: all discrete samples of a step, ``[S_global]``.

  The same ``z`` the step will draw on the devices; the host measures their
  latency and passes it in.
  """
  n = num_global_samples(cfg, global_batch, num_devices)
  return draw_architectures(phi, cfg.eps, step_keys(state_key, step).arch, jnp.arange(n)).z


def _pmean(tree):
  return jax.tree.map(lambda x: jax.lax.pmean(x, DATA_AXIS), tree)


def _accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def make_optimizers(search_config, global_batch: int, total_steps: int):
  """``tx_w``, ``tx_phi`` and their learning-rate schedules (docs/design.md section 6).

  w: clip the global norm at ``w_grad_clip`` (5), add ``w_weight_decay * w`` (3e-4) to
  the gradient (L2, as PyTorch's Adam does), Adam with cosine decay from
  ``w_lr * global_batch / 64`` to ``w_lr_min``. phi: L2 ``phi_weight_decay`` (1e-6),
  Adam cosine from ``phi_lr`` (1e-3) to ``phi_lr_min`` (3e-4).

  Returns:
    ``(tx_w, tx_phi, w_schedule, phi_schedule)``.
  """
  s = search_config
  total = max(1, int(total_steps))
  w_lr = s.w_lr * (global_batch / 64 if s.scale_w_lr_by_batch else 1.0)
  w_schedule = optax.cosine_decay_schedule(w_lr, total, alpha=min(1.0, s.w_lr_min / w_lr))
  phi_schedule = optax.cosine_decay_schedule(s.phi_lr, total, alpha=min(1.0, s.phi_lr_min / s.phi_lr))
  tx_w = optax.chain(optax.clip_by_global_norm(s.w_grad_clip), optax.add_decayed_weights(s.w_weight_decay),
                     optax.adam(w_schedule))
  tx_phi = optax.chain(optax.add_decayed_weights(s.phi_weight_decay),
                       optax.adam(phi_schedule, b1=s.phi_beta1, b2=s.phi_beta2))
  return tx_w, tx_phi, w_schedule, phi_schedule


def eta_optimizer(cfg: StepConfig) -> optax.GradientTransformation:
  """Adam on REBAR's eta (``search.learn_eta``) at ``search.eta_lr``; its state does not depend on the rate."""
  return optax.adam(cfg.eta_lr)


def make_baseline(cfg: StepConfig) -> est.Baseline:
  """The REINFORCE baseline the config names, with its parameter."""
  kwargs = {"moving_average": {"decay": cfg.baseline_decay}, "constant": {"b": cfg.baseline_value}}
  return est.make_baseline(cfg.baseline, **kwargs.get(cfg.baseline, {}))


def init_state(seed: int, phi, w, stats, tx_w, tx_phi, cfg: StepConfig, eta: float = 1.0) -> SearchState:
  baseline = make_baseline(cfg)
  eta = jnp.asarray(eta, jnp.float32)
  return SearchState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(jax.random.key(seed)),
                     phi=phi, w=w, stats=stats, opt_phi=tx_phi.init(phi), opt_w=tx_w.init(w),
                     baseline=baseline.init(), eta=eta, opt_eta=eta_optimizer(cfg).init(eta),
                     latency_lambda=jnp.asarray(cfg.latency_lambda_init, jnp.float32),
                     latency_violation=jnp.zeros((), jnp.float32), **latency_hparams(cfg))


def latency_hparams(cfg: StepConfig) -> dict[str, np.ndarray]:
  """The state's latency settings from ``cfg`` (host float32 scalars), set at every (re)start.

  ``latency_target_ms``, ``latency_c``, ``latency_lambda_lr``, ``latency_damping``,
  ``latency_ratio``; not the multiplier ``latency_lambda`` nor the last violation, which
  are the search's state and resume as saved.
  """
  return {"latency_target_ms": np.float32(cfg.latency_target_ms), "latency_c": np.float32(cfg.latency_c),
          "latency_lambda_lr": np.float32(cfg.latency_lambda_lr),
          "latency_damping": np.float32(cfg.latency_damping), "latency_ratio": np.float32(cfg.latency_ratio)}


def _with_w(loss_fn, w, arch):
  return loss_fn(arch, w)


def _apply_w_grads(tx_w, state: SearchState, grads, new_stats, loss, acc):
  """Averages the w gradient and BatchNorm statistics over devices and steps ``tx_w``."""
  grads = _pmean(grads)
  new_stats = _pmean(new_stats)  # running averages: the mean of the devices' (identical when BN is synchronised)
  updates, opt_w = tx_w.update(grads, state.opt_w, state.w)
  w = optax.apply_updates(state.w, updates)
  return w, opt_w, new_stats, {"w_loss": jax.lax.pmean(loss, DATA_AXIS), "w_acc": jax.lax.pmean(acc, DATA_AXIS),
                               "w_grad_norm": optax.global_norm(grads)}


def _w_update(model: SearchModel, tx_w, state: SearchState, arch, x, y, key):
  """Gradient step on w with architecture ``arch`` held fixed (no gradient to phi)."""
  arch = jax.lax.stop_gradient(arch)

  def loss_w(w):
    logits, new_stats = model.apply(w, state.stats, x, arch, train=True, key=key)
    ce = losses.cross_entropy(logits, y)
    return jnp.mean(ce), (new_stats, _accuracy(logits, y))

  (loss, (new_stats, acc)), grads = jax.value_and_grad(loss_w, has_aux=True)(state.w)
  return _apply_w_grads(tx_w, state, grads, new_stats, loss, acc)


def accuracy_estimator(cfg: StepConfig) -> Callable[[SearchState, Draw, Callable], est.Estimate]:
  r"""``(state, draw, loss_fn) -> Estimate`` of ``d/dphi E_{p_phi}[L(z)]`` for ``search.estimator``.

  ``loss_fn(arch, w) -> (L [S], aux)`` is the accuracy objective; the choice is made
  here, once, when the step is built:

  * reinforce: ``(L(z) - b) grad log p(z)``, ``b`` the configured baseline (``state.baseline``);
  * gumbel_softmax: ``grad L(zeta)`` (SNAS; biased);
  * rebar (paper eq. 3): ``(L(z) - eta L(zeta~)) grad log p(z) - eta grad L(zeta~) + eta grad L(zeta)``
    at ``eta = state.eta``.

  Every estimate's ``sample.zeta`` is the relaxed sample of ``draw`` at ``tau``, on which
  the w update trains. With ``w_gradient='relaxed_forward'`` (rebar, gumbel_softmax), ``w``
  is the estimator's ``params`` and ``Estimate.params_grads`` its gradient from the same
  relaxed forward; otherwise ``w`` is closed over (no gradient).
  """
  baseline = make_baseline(cfg)
  shared_w = cfg.w_gradient == "relaxed_forward"

  def relaxed_args(state, draw, loss_fn):
    kwargs = dict(tau=cfg.tau, eps=cfg.eps, sample_shape=draw.sample_shape, noise=draw.noise, has_aux=True)
    if shared_w:
      return loss_fn, dict(kwargs, params=state.w)
    return functools.partial(_with_w, loss_fn, state.w), kwargs

  def rebar(state, draw, loss_fn):
    loss_fn, kwargs = relaxed_args(state, draw, loss_fn)
    return est.rebar(state.phi, draw.keys, loss_fn, eta=state.eta, **kwargs)

  def gumbel_softmax(state, draw, loss_fn):
    loss_fn, kwargs = relaxed_args(state, draw, loss_fn)
    return est.gumbel_softmax(state.phi, draw.keys, loss_fn, **kwargs)

  def reinforce(state, draw, loss_fn):
    f_z, aux = loss_fn(draw.z, state.w)
    # Leave-one-out uses this device's other samples (needs >= 2 per device).
    estimate = est.reinforce(state.phi, draw.keys, f_z, baseline=baseline, baseline_state=state.baseline,
                             eps=cfg.eps, sample_shape=draw.sample_shape, noise=draw.noise)
    # REINFORCE relaxes nothing; w trains on the relaxed sample of its draw, as with the others.
    return estimate._replace(aux={"discrete": aux}, sample=draw.relaxed(cfg.tau))

  return {"reinforce": reinforce, "gumbel_softmax": gumbel_softmax, "rebar": rebar}[cfg.estimator]


class LatencyTerm(NamedTuple):
  """The latency term's part of a step: its phi gradient, the multiplier's next state, metrics."""
  grads: PyTree
  latency_lambda: jax.Array
  latency_violation: jax.Array
  metrics: dict[str, jax.Array]


def latency_term(cfg: StepConfig, control_fn) -> Callable[..., LatencyTerm] | None:
  r"""``(state, draw, latency_ms, control) -> LatencyTerm`` for ``cfg``'s latency block (None: no term).

  The penalty ``L_lat = P(lat(z); c_t)`` (:func:`losses.latency_penalty`: hinge
  ``c_t relu(lat - target)``, linear ``c_t lat`` or lagrangian ``c_t lat / target``, or
  ``c_t relu(lat - target) / target`` with ``latency.lagrangian_term=hinge``) of the
  measured latencies ``latency_ms`` of ``draw.z``, with ``g = P(control_fn(control, .); c_t)``
  as the differentiable surrogate. Its phi gradient, chosen once:

  * relax (paper eq. 5): ``(L_lat(z) - g(zeta~)) grad log p(z) - grad g(zeta~) + grad g(zeta)``;
  * reinforce: ``L_lat(z) grad log p(z)``;
  * surrogate_gumbel: ``grad g(zeta)`` (FBNet-style; biased).

  The coefficient ``c_t``: hinge and linear warm ``c`` up linearly over ``warmup_steps``;
  lagrangian uses the multiplier damped by the previous step's violation,
  ``max(0, lambda + damping * v_prev)``, and moves ``lambda`` one dual-ascent step
  on this step's estimate of ``E[lat]`` (``latency.constraint``).
  """
  if cfg.latency_estimator is None:
    return None

  def relax(state, draw, f_lat, control_penalty):
    return est.relax(state.phi, draw.keys, f_lat, control_penalty, tau=cfg.tau, eps=cfg.eps,
                     sample_shape=draw.sample_shape, noise=draw.noise).grads

  def reinforce(state, draw, f_lat, control_penalty):
    del control_penalty
    return est.reinforce(state.phi, draw.keys, f_lat, eps=cfg.eps, sample_shape=draw.sample_shape,
                         noise=draw.noise).grads

  def surrogate_gumbel(state, draw, f_lat, control_penalty):
    del f_lat  # FBNet-style: the surrogate through the relaxed sample, not the measurement
    return est.gumbel_softmax(state.phi, draw.keys, control_penalty, tau=cfg.tau, eps=cfg.eps,
                              sample_shape=draw.sample_shape, noise=draw.noise).grads

  estimate_fn = {"relax": relax, "reinforce": reinforce, "surrogate_gumbel": surrogate_gumbel}[cfg.latency_estimator]

  def expected_ms(state, draw, latency_ms, control):
    del state, latency_ms
    return control_fn(control, jax.tree.map(lambda a: a[None], est.probabilities(draw.logits)))[0]

  def mode_ms(state, draw, latency_ms, control):
    del state, latency_ms
    return control_fn(control, jax.tree.map(lambda a: a[None], est.mode(draw.logits)))[0]

  def measured_ms(state, draw, latency_ms, control):
    del state, draw, control
    return jax.lax.pmean(jnp.mean(latency_ms), DATA_AXIS)

  def warmed_up(state, draw, latency_ms, control):
    del draw, latency_ms, control
    c_t = losses.latency_coefficient(state.step, state.latency_c, cfg.latency_warmup_steps)
    return c_t, state.latency_lambda, state.latency_violation, {}

  def lagrangian(state, draw, latency_ms, control):
    # The multiplier replaces the hand-set, warmed-up c: it starts at lambda_init and
    # grows only while the constraint is violated. The coefficient adds a damping term
    # on the *previous* step's violation (a PI controller: the integral lambda reacts
    # late, as phi's optimiser has momentum); the previous step's, so that the
    # coefficient does not depend on this step's samples and the estimate stays unbiased.
    c_t = losses.damped_multiplier(state.latency_lambda, state.latency_violation, state.latency_damping)
    mean_ms = constraint_ms(state, draw, latency_ms, control)
    latency_lambda = losses.dual_ascent(state.latency_lambda, mean_ms, state.latency_target_ms,
                                        state.latency_lambda_lr, state.latency_ratio)
    latency_violation = losses.violation(mean_ms, state.latency_target_ms, state.latency_ratio)
    metrics = dict(latency_lambda=state.latency_lambda, latency_coefficient=c_t,
                   latency_violation=jnp.mean(latency_ms) / state.latency_target_ms - 1.0)
    return c_t, latency_lambda, latency_violation, metrics

  coefficient_fn = warmed_up
  if cfg.latency_penalty == "lagrangian":
    constraint_ms = {"expected": expected_ms, "mode": mode_ms, "measured": measured_ms}[cfg.latency_constraint]
    coefficient_fn = lagrangian

  def term(state, draw, latency_ms, control):
    c_t, latency_lambda, latency_violation, metrics = coefficient_fn(state, draw, latency_ms, control)
    penalty = functools.partial(losses.latency_penalty, coefficient=c_t, target_ms=state.latency_target_ms,
                                kind=cfg.latency_penalty, lagrangian_term=cfg.latency_lagrangian_term)
    f_lat = penalty(latency_ms)
    grads = estimate_fn(state, draw, f_lat, lambda arch: penalty(control_fn(control, arch)))
    metrics.update(latency_ms=jnp.mean(latency_ms), latency_predicted_ms=jnp.mean(control_fn(control, draw.z)),
                   latency_penalty=jnp.mean(f_lat), latency_c=c_t)
    return LatencyTerm(grads, latency_lambda, latency_violation, metrics)

  return term


def make_search_step(model: SearchModel, tx_w, tx_phi, cfg: StepConfig, mesh, global_batch: int,
                     w_schedule=None, phi_schedule=None):
  """Returns ``step(state, batch_train, batch_val, latency_ms, control) -> (state, metrics)``.

  ``batch_*`` are ``(x, y)`` sharded along ``data``; ``latency_ms`` holds the measured
  latency of each global sample (:func:`global_architectures`), ``[S_global]``
  (zeros when there is no latency term); ``control`` the surrogate's parameters.
  """
  num_devices = mesh.devices.size
  local_batch = global_batch // num_devices
  s_local = samples_per_device(cfg, local_batch)
  latency_spec = P() if cfg.sampling == "shared" else P(DATA_AXIS)
  accuracy_fn = accuracy_estimator(cfg)
  latency_fn = latency_term(cfg, model.control_fn)
  tx_eta = eta_optimizer(cfg)
  needs_val = cfg.objective in ("val", "gen")

  def per_device(state: SearchState, batch_train, batch_val, latency_ms, control):
    device = jax.lax.axis_index(DATA_AXIS)
    keys = step_keys(state.key, state.step)
    draw = draw_architectures(state.phi, cfg.eps, keys.arch, sample_indices(cfg, device, local_batch))
    key_t, key_v, key_w = jax.random.split(jax.random.fold_in(keys.dropout, device), 3)
    (x_t, y_t), (x_v, y_v) = batch_train, batch_val

    def loss_fn(arch, w):
      """Per-sample accuracy objective ``[S]`` (+ pairing penalty) for one-hot or relaxed arch.

      ``aux['params_loss']`` is the w update's loss, the train batch's mean cross-entropy
      (read by the estimators with ``params=w``: ``w_gradient='relaxed_forward'``).
      """
      if needs_val:
        # One vmapped forward over the stacked (train, val) batches instead of two calls:
        # the same math (BatchNorm statistics stay per batch) with half the graph to
        # compile, which dominates start-up on CPU.
        logits_tv, stats_tv = jax.vmap(lambda x, k: model.apply(w, state.stats, x, arch, train=True, key=k))(
            jnp.stack([x_t, x_v]), jnp.stack([key_t, key_v]))
        logits_t, logits_v = logits_tv[0], logits_tv[1]
        new_stats = jax.tree.map(lambda a: a[0], stats_tv)  # the train batch's, as a forward on it alone
      else:
        logits_t, new_stats = model.apply(w, state.stats, x_t, arch, train=True, key=key_t)
      l_t = losses.cross_entropy(logits_t, y_t)
      acc_t = _accuracy(logits_t, y_t)
      aux = {"l_train": jnp.mean(l_t), "acc_train": acc_t}
      l_v = l_t
      if needs_val:
        l_v = losses.cross_entropy(logits_v, y_v)
        aux.update(l_val=jnp.mean(l_v), acc_val=_accuracy(logits_v, y_v))
      value = losses.per_sample(losses.search_objective(l_t, l_v, cfg.objective, cfg.gen_lambda), s_local)
      if model.arch_penalty_fn is not None and cfg.pairing_weight:
        value = value + cfg.pairing_weight * model.arch_penalty_fn(arch)
      aux["params_loss"] = jnp.mean(l_t)
      aux["w"] = {"stats": new_stats, "acc": acc_t}
      return value, aux

    # phi: the accuracy estimate plus, with a latency block, the latency term's.
    estimate = accuracy_fn(state, draw, loss_fn)
    phi_grads = estimate.grads
    metrics = {k: v for k, v in (estimate.aux.get("discrete") or {}).items() if k not in ("w", "params_loss")}
    metrics["objective"] = jnp.mean(estimate.f_z)
    if estimate.f_relaxed is not None:
      metrics["objective_relaxed"] = jnp.mean(estimate.f_relaxed)
    latency_lambda, latency_violation = state.latency_lambda, state.latency_violation
    if latency_fn is not None:
      latency = latency_fn(state, draw, latency_ms, control)
      phi_grads = jax.tree.map(jnp.add, phi_grads, latency.grads)
      latency_lambda, latency_violation = latency.latency_lambda, latency.latency_violation
      metrics.update(latency.metrics)
    phi_grads = _pmean(phi_grads)
    updates, opt_phi = tx_phi.update(phi_grads, state.opt_phi, state.phi)
    phi = optax.apply_updates(state.phi, updates)

    # eta: REBAR's remedy, descend d||g_hat||^2/d eta (the estimator's variance).
    eta, opt_eta = state.eta, state.opt_eta
    if cfg.learn_eta and estimate.eta_grad is not None:
      eta_updates, opt_eta = tx_eta.update(jax.lax.pmean(estimate.eta_grad, DATA_AXIS), state.opt_eta)
      eta = optax.apply_updates(state.eta, eta_updates)

    new_baseline = state.baseline
    if estimate.baseline_state is not None:  # REINFORCE's
      # Moving averages are linear: mean of local = global. pmean turns the int32 count into
      # float32; cast back, or the next call sees a new state type and recompiles the step.
      new_baseline = jax.tree.map(lambda new, old: new.astype(old.dtype), _pmean(estimate.baseline_state),
                                  state.baseline)

    # w: a step on the train batch with the relaxed sample of this draw; with
    # w_gradient=relaxed_forward its gradient came from the estimator's relaxed forward.
    if estimate.params_grads is not None:
      relaxed = estimate.aux["relaxed"]
      w, opt_w, stats, w_metrics = _apply_w_grads(tx_w, state, estimate.params_grads, relaxed["w"]["stats"],
                                                  relaxed["params_loss"], relaxed["w"]["acc"])
    else:
      w, opt_w, stats, w_metrics = _w_update(model, tx_w, state, estimate.sample.zeta, x_t, y_t, key_w)
    metrics.update(w_metrics)
    metrics = _pmean(metrics)
    metrics.update(phi_grad_norm=optax.global_norm(phi_grads), entropy=est.entropy(draw.logits), eta=state.eta)
    if w_schedule is not None:
      metrics.update(lr_w=w_schedule(state.step), lr_phi=phi_schedule(state.step))
    new_state = state.replace(step=state.step + 1, phi=phi, w=w, stats=stats, opt_phi=opt_phi, opt_w=opt_w,
                              baseline=new_baseline, eta=eta, opt_eta=opt_eta, latency_lambda=latency_lambda,
                              latency_violation=latency_violation)
    return new_state, metrics

  sharded = jax.shard_map(
      per_device, mesh=mesh,
      in_specs=(P(), P(DATA_AXIS), P(DATA_AXIS), latency_spec, P()),
      out_specs=(P(), P()), check_vma=False)
  return mesh_lib.jit_state_step(sharded, mesh)


def make_warmup_step(model: SearchModel, tx_w, cfg: StepConfig, mesh, global_batch: int, w_schedule=None):
  """w-only steps with architectures sampled from phi (the ``init_epochs`` warm-up)."""
  num_devices = mesh.devices.size
  local_batch = global_batch // num_devices

  def per_device(state: SearchState, batch_train):
    device = jax.lax.axis_index(DATA_AXIS)
    keys = step_keys(state.key, state.step)
    draw = draw_architectures(state.phi, cfg.eps, keys.arch, sample_indices(cfg, device, local_batch))
    key_w = jax.random.fold_in(keys.warmup_dropout, device)
    w, opt_w, stats, metrics = _w_update(model, tx_w, state, draw.relaxed(cfg.tau).zeta, *batch_train, key_w)
    metrics = _pmean(metrics)
    if w_schedule is not None:
      metrics["lr_w"] = w_schedule(state.step)
    return state.replace(step=state.step + 1, w=w, opt_w=opt_w, stats=stats), metrics

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()),
                          check_vma=False)
  return mesh_lib.jit_state_step(sharded, mesh)


def make_eval_step(model: SearchModel, mesh):
  """``(w, stats, arch[1], x, y, mask) -> (sum correct, sum loss, count)`` with running BN statistics."""
  def per_device(w, stats, arch, x, y, mask):
    logits, _ = model.apply(w, stats, x, arch, train=False)
    ce = losses.cross_entropy(logits, y)
    correct = (jnp.argmax(logits, -1) == y) * mask
    out = jnp.stack([jnp.sum(correct), jnp.sum(ce * mask), jnp.sum(mask)])
    return jax.lax.psum(out, DATA_AXIS)

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(), P(DATA_AXIS), P(DATA_AXIS), P(DATA_AXIS)),
                          out_specs=P(), check_vma=False)
  return jax.jit(sharded)
