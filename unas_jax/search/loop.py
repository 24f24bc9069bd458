"""The architecture-search loop, shared by every search space (docs/design.md section 6).

``run_search(config, workdir, space)`` trains w only for ``init_epochs`` (with
architectures sampled from phi), then alternates phi and w updates
(:mod:`unas_jax.search.step`). It resumes from the newest checkpoint in
``workdir`` (phi, w, BatchNorm statistics, both optimiser states, estimator
state, step; the data position is the step, since batches are pure functions of
``(seed, step)``), saves on SIGINT/SIGTERM or preemption, logs TensorBoard
scalars, shows a progress bar, and writes the genotype (JSON), its pictures and
a heat map of the selector probabilities over time.

Fail-fast and resume rules (README "Reliability"): the first step whose loss or
gradient norm is not finite stops the run (``NonFiniteError``, exit 3) before
any checkpoint, evaluation or genotype is made from it; a failed checkpoint
write stops it (``SaveError``); ``history.jsonl`` is cut back to the step the
run resumes from; a signal before the first step exits at once.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unas_jax import data as data_lib
from unas_jax import estimators as est
from unas_jax import validation
from unas_jax.config import check_choice
from unas_jax.data import device as device_lib
from unas_jax.errors import ConfigError
from unas_jax.latency import hooks as latency_hooks
from unas_jax.latency.hooks import SELECTIONS, LatencyHooks, check_target
from unas_jax.nn import batchnorm
from unas_jax.nn import functional
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.search import defaults
from unas_jax.search import step as step_lib
from unas_jax.utils import files
from unas_jax.utils import plots
from unas_jax.utils.interrupt import StopRequest
from unas_jax.utils.scaffold import RunScaffold

PyTree = Any


class SearchSpace(Protocol):
  """A search space as the loop sees it."""
  name: str

  def build_supernet(self, config: ml_collections.ConfigDict, info: data_lib.DatasetInfo,
                     bn_axis_name: str | None) -> Any: ...

  def phi_from_state(self, phi_state: PyTree) -> PyTree: ...

  arch_penalty_fn: Callable | None

  def genotype(self, phi: PyTree) -> Any: ...

  def write_genotype(self, genotype: Any, out_dir: str) -> list[str]: ...

  def selector_probabilities(self, phi: PyTree) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]: ...

  def latency_hooks(self, config: ml_collections.ConfigDict, workdir: str, info: data_lib.DatasetInfo) -> LatencyHooks | None: ...

  # Optional: ``eval_metrics(phi) -> dict[str, float]``, extra metrics of the mode architecture
  # logged with every evaluation (the NB201 space's benchmark accuracy).


class SpaceAdapter:
  """What the spaces' adapters (:class:`SearchSpace`) share; each gives the rest.

  ``eps``: phi is softened by ``search.eps`` before it is read (genotype, probabilities);
  ``meta``: the provenance a genotype file carries; ``latency``: the space's latency
  source, None until its ``latency_hooks`` makes one.
  """
  arch_penalty_fn: Callable | None = None

  def __init__(self, config: ml_collections.ConfigDict):
    self.eps = config.search.eps
    self.meta = {"dataset": config.data.name, "estimator": config.search.estimator,
                 "objective": config.search.objective, "seed": config.seed}
    self.latency = None

  def softened(self, phi: PyTree) -> PyTree:
    return est.soften(phi, self.eps)

  def latency_hooks(self, config: ml_collections.ConfigDict, workdir: str,
                    info: data_lib.DatasetInfo) -> LatencyHooks | None:
    del config, workdir, info
    return None

  def write_latency_report(self, genotype: Any, out_dir: str) -> list[str]:
    """``latency.json``, the latency source's report on ``genotype`` (nothing without a source)."""
    if self.latency is None:
      return []
    path = os.path.join(out_dir, "latency.json")
    files.write_json(path, self.latency.mode_report(genotype))
    return [path]


def step_config(config: ml_collections.ConfigDict) -> step_lib.StepConfig:
  """The step's settings from ``config.search`` and ``config.latency`` (no fallbacks: the config
  blocks hold every default). Without an enabled latency block there is no latency term
  (``latency_estimator=None``) and the state's latency fields, which the step then never
  reads, take :func:`~unas_jax.search.defaults.latency_block`'s values."""
  s = config.search
  latency = config.get("latency")
  enabled = latency is not None and latency.enabled
  if not enabled:
    latency = defaults.latency_block()
  return step_lib.StepConfig(
      estimator=s.estimator, objective=s.objective, gen_lambda=s.gen_lambda, tau=s.tau, eps=s.eps,
      sampling=s.sampling, pairing_weight=s.pairing_weight, baseline=s.baseline,
      baseline_decay=s.baseline_decay, baseline_value=s.baseline_value, learn_eta=s.learn_eta, eta_lr=s.eta_lr,
      w_gradient=s.w_gradient,
      latency_estimator=latency.estimator if enabled else None, latency_target_ms=float(latency.target_ms),
      latency_penalty=latency.penalty, latency_c=latency.c, latency_warmup_steps=latency.warmup_steps,
      latency_lambda_init=float(latency.lambda_init), latency_lambda_lr=float(latency.lambda_lr),
      latency_damping=float(latency.damping), latency_ratio=float(latency.ratio),
      latency_constraint=latency.constraint, latency_lagrangian_term=latency.lagrangian_term)


def validate(config: ml_collections.ConfigDict) -> None:
  """A search's checks, before anything is loaded or compiled (``jobs.validate`` and :func:`build_search`).

  The ranges of every numeric key and the rules between keys are :mod:`unas_jax.validation`'s,
  run again here for callers that build a search without ``jobs.validate`` (the lowering,
  the experiments, the tests): the step (:func:`step_config`) is built from a checked config.
  """
  s = config.search
  latency = config.get("latency")
  if latency is not None and latency.enabled:
    # The sign, before anything is loaded or measured; the latency source checks the target
    # against the fastest architecture once it has priced it.
    check_target(latency.target_ms, penalty=latency.penalty)
    check_choice("latency.selection", latency.selection, SELECTIONS)
  validation.check_numbers(config)
  validation.check_cross(config)
  check_choice("search.bn", s.bn, batchnorm.MODES)
  if s.estimator == "reinforce" and s.baseline == "leave_one_out" and s.sampling != "per_example":
    # Leave-one-out averages the other architectures a device drew in the same step;
    # with one draw per device there are none (the traced step would fail deep in XLA).
    raise ConfigError(f"search.baseline='leave_one_out' needs several architectures per device, but "
                      f"search.sampling={s.sampling!r} draws one: set search.sampling='per_example' "
                      f"or search.baseline='moving_average'")
  step_config(config)  # validates the estimator settings


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


@dataclasses.dataclass
class SearchSetup:
  """Everything built before the first step (shared by the loop and the benchmarks)."""
  config: ml_collections.ConfigDict
  dataset: Any
  mesh: Any
  cfg: step_lib.StepConfig
  model: step_lib.SearchModel
  latency: LatencyHooks | None
  state: step_lib.SearchState
  search_step: Callable
  warmup_step: Callable
  eval_step: Callable
  steps_per_epoch: int
  total_steps: int
  warmup_steps: int


def reserved_devices(config: ml_collections.ConfigDict) -> list:
  """Devices kept out of the mesh: one per process for the latency probe (``latency.reserve_device``)."""
  latency = config.get("latency")
  if latency is not None and latency.enabled and latency.reserve_device:
    return mesh_lib.reserved_local_devices()
  return []


def check_mesh(config: ml_collections.ConfigDict, mesh) -> None:
  """Raises ConfigError when the global batch does not split over ``mesh`` as the search needs."""
  global_batch = config.batch_size
  mesh_lib.check_batch(global_batch, mesh)
  s = config.search
  if s.estimator == "reinforce" and s.baseline == "leave_one_out" and global_batch // mesh.size < 2:
    raise ConfigError(f"search.baseline='leave_one_out' needs at least 2 examples per device; batch_size="
                      f"{global_batch} on {mesh.size} device(s) gives {global_batch // mesh.size}")


def setup_search(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace) -> SearchSetup:
  """Validates the config, loads the data, builds the supernet, optimisers, state and jitted steps.

  The data and the mesh are this function's; the rest is :func:`build_search`, which
  also builds abstract state for lowering (:mod:`unas_jax.utils.lowering`).
  """
  validate(config)
  dataset = data_lib.load(config.data)
  mesh = mesh_lib.make_mesh(config.mesh.num_devices, exclude=reserved_devices(config))
  global_batch = config.batch_size
  data_lib.check_sharding(global_batch, jax.process_index(), jax.process_count())
  steps_per_epoch = data_lib.steps_per_epoch(dataset, "search_train", global_batch, jax.process_count())
  return build_search(config, dataset.info, mesh, space, lambda info: space.latency_hooks(config, workdir, info),
                      steps_per_epoch, dataset=dataset)


def build_search(config: ml_collections.ConfigDict, info: data_lib.DatasetInfo, mesh, space: SearchSpace,
                 latency_fn: Callable[[data_lib.DatasetInfo], LatencyHooks | None], steps_per_epoch: int, *,
                 dataset: Any = None, abstract: bool = False) -> SearchSetup:
  """The part of :func:`setup_search` after the data: supernet, optimisers, state and jitted steps.

  ``abstract=True`` builds the state with ``jax.eval_shape`` (``jax.ShapeDtypeStruct``
  leaves with the mesh's replicated sharding: no memory, no compute), for lowering and
  ahead-of-time compilation of the job's own steps (``experiments/lower_for.py``,
  ``experiments/aot_compile.py``).
  """
  validate(config)
  check_mesh(config, mesh)
  global_batch = config.batch_size
  cfg = step_config(config)
  s = config.search

  model = space.build_supernet(config, info, mesh_lib.DATA_AXIS if s.bn == "sync" else None)
  model_def, phi_state, w, stats = functional.split(model)
  phi = space.phi_from_state(phi_state)
  latency = latency_fn(info)
  if cfg.latency_estimator is not None and latency is None:
    raise ConfigError(f"latency.enabled is set but the {space.name} space has no latency source")
  search_model = step_lib.SearchModel(model_def, arch_penalty_fn=space.arch_penalty_fn,
                                      control_fn=latency.control_fn if latency else None)

  total_steps = int(s.epochs * steps_per_epoch) if not s.max_steps else int(s.max_steps)
  warmup_steps = min(total_steps, int(s.init_epochs * steps_per_epoch))
  tx_w, tx_phi, w_schedule, phi_schedule = step_lib.make_optimizers(s, global_batch, total_steps)
  state = mesh_lib.replicated_state(
      mesh, lambda: step_lib.init_state(config.seed, phi, w, stats, tx_w, tx_phi, cfg, eta=s.eta), abstract=abstract)
  return SearchSetup(
      config=config, dataset=dataset, mesh=mesh, cfg=cfg, model=search_model, latency=latency, state=state,
      search_step=step_lib.make_search_step(search_model, tx_w, tx_phi, cfg, mesh, global_batch, w_schedule,
                                            phi_schedule),
      warmup_step=step_lib.make_warmup_step(search_model, tx_w, cfg, mesh, global_batch, w_schedule),
      eval_step=step_lib.make_eval_step(search_model, mesh),
      steps_per_epoch=steps_per_epoch, total_steps=total_steps, warmup_steps=warmup_steps)


def latency_inputs(setup: SearchSetup, state, control):
  """Phase one of the latency term: measures this step's architectures on the host.

  Returns ``(latency_ms, control)`` ready for the step (zeros without a latency term).
  """
  cfg, mesh, latency = setup.cfg, setup.mesh, setup.latency
  n = step_lib.num_global_samples(cfg, setup.config.batch_size, mesh.devices.size)
  if latency is None or cfg.latency_estimator is None:
    values = np.zeros(n, np.float32)
  else:
    z = _host(step_lib.global_architectures(cfg, state.key, state.step, state.phi, setup.config.batch_size,
                                            mesh.devices.size))
    values = np.asarray(latency.measure(z), np.float32)
    control = latency.control_params()
  # Every process holds all n values: each device takes its own rows (put_batch would take
  # process-local rows and, with several processes, build an array n * process_count long).
  placed = jnp.asarray(values) if cfg.sampling == "shared" else mesh_lib.put_global(values, mesh)
  return placed, control


# The step metrics whose non-finite value stops a search (warm-up steps have only the w ones).
FINITE_METRICS = ("objective", "w_loss", "phi_grad_norm", "w_grad_norm")


def run_search(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace) -> dict:
  """Runs (or resumes) a search; returns a summary dict (also written to ``summary.json``).

  Returns ``{"stopped_at": step}`` when stopped by a signal, preemption or
  ``search.stop_at_step`` (rerun to resume).
  """
  # Before setup: a signal during data loading or the first compile exits at once.
  with StopRequest() as stop:
    return _run_search(config, workdir, space, stop)


def _run_search(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace, stop: StopRequest) -> dict:
  is_main = jax.process_index() == 0
  setup = setup_search(config, workdir, space)
  dataset, mesh, cfg, latency, state = setup.dataset, setup.mesh, setup.cfg, setup.latency, setup.state
  s = config.search
  global_batch = config.batch_size
  steps_per_epoch, total_steps, warmup_steps = setup.steps_per_epoch, setup.total_steps, setup.warmup_steps

  run = RunScaffold(workdir, stop, description=f"search {space.name}", total_steps=total_steps,
                    steps_per_epoch=steps_per_epoch, checkpoint_every=config.checkpoint_every,
                    finite_metrics=FINITE_METRICS, stop_at_step=s.stop_at_step,
                    stop_at_name="search.stop_at_step")
  state, meta = run.start(state)
  if meta is not None:
    if latency is not None and "latency" in meta:
      latency.load_state_dict(meta["latency"])
    # The config of this run decides the latency target and c, also on resume.
    state = state.replace(**mesh_lib.put_replicated(step_lib.latency_hparams(cfg), mesh))
  start_step = run.start_step
  entropy_start = float(est.entropy(est.soften(state.phi, cfg.eps)))

  search_step, warmup_step, eval_step = setup.search_step, setup.warmup_step, setup.eval_step
  # uint8 batches prepared in a host thread, normalised on the devices one step ahead.
  batches = device_lib.search_pairs(data_lib.prefetch(data_lib.search_batches(
      dataset, global_batch, config.seed, start_step, process_index=jax.process_index(),
      process_count=jax.process_count(), raw=True)), dataset.info, mesh)
  outputs = plots.ensure_dir(os.path.join(workdir, "genotype"))
  control = latency.control_params() if latency else jnp.zeros(())

  def checkpoint_meta() -> dict:
    meta = {"seed": config.seed, "config": config.to_json_best_effort()}
    if latency is not None:
      meta["latency"] = latency.state_dict()
    return meta

  if is_main:
    print(f"search: {total_steps} steps ({s.epochs} epochs x {steps_per_epoch}, first {warmup_steps} w-only), "
          f"global batch {global_batch} on {mesh.devices.size} device(s), estimator {cfg.estimator}, "
          f"objective L_{cfg.objective}, {cfg.sampling} architectures", flush=True)
  last_eval: dict[str, float] = {}
  step = start_step
  compile_seconds = {}
  with run:
    while step < total_steps:
      run.before_step()
      batch_train, batch_val = next(batches)
      t0 = time.perf_counter()
      if step < warmup_steps:
        state, metrics = warmup_step(state, batch_train)
        kind = "warmup"
      else:
        if "search" not in compile_seconds and step > start_step:
          # The search step compiles now (minutes on a CPU): the warm-up is saved first, so a stop
          # during the compile exits at once and loses nothing.
          run.save_before_compile(step, state, checkpoint_meta)
        latency_ms, control = latency_inputs(setup, state, control)
        speculative = None
        if latency is not None and cfg.latency_estimator is not None:
          # The next step's architectures under the current phi and the next step's noise:
          # phi moves slowly, so they are mostly the ones that will be drawn.
          speculative = _host(step_lib.global_architectures(cfg, state.key, state.step + 1, state.phi,
                                                            global_batch, mesh.devices.size))
        state, metrics = search_step(state, batch_train, batch_val, latency_ms, control)
        if speculative is not None:
          latency.speculate(speculative)
        kind = "search"
      if kind not in compile_seconds:
        jax.block_until_ready(state)
        compile_seconds[kind] = time.perf_counter() - t0
      step += 1
      run.after_step(step, metrics)
      log_now = step % config.log_every == 0 or step == total_steps
      epoch_end = step % steps_per_epoch == 0 or step == total_steps
      if log_now:
        # Blocking here every few steps also keeps XLA:CPU collectives from piling up.
        run.check_finite()
        metrics = {k: float(v) for k, v in _host(metrics).items()}
        if latency is not None:
          metrics.update(latency.after_step(step, _host(state.phi)))
          control = latency.control_params()
        probs, _ = space.selector_probabilities(_host(state.phi))
        run.log(step, metrics, phase=kind, probs={k: np.round(v, 4).tolist() for k, v in probs.items()})
        run.progress.update(step, config.log_every * global_batch,
                            **{k: metrics[k] for k in ("objective", "acc_val", "entropy", "w_loss") if k in metrics})
      else:
        run.progress.update(step, global_batch)
      eval_due = epoch_end or (config.eval_every and step % config.eval_every == 0)
      if eval_due and step > warmup_steps:
        run.check_finite()  # no evaluation or genotype from a diverged state
        last_eval = _evaluate(eval_step, state, space, dataset, mesh, global_batch, cfg)
        # Optional hook: a space may add metrics of the mode architecture (e.g. a benchmark look-up).
        if getattr(space, "eval_metrics", None) is not None:
          last_eval.update(space.eval_metrics(_host(state.phi)))
        run.log(step, last_eval, phase="eval", tag="eval")
        _write_outputs(space, _host(state.phi), run.history, outputs, workdir)  # the running mode
        run.progress.write(f"epoch {step / steps_per_epoch:.1f}: mode architecture search-val accuracy "
                           f"{last_eval['val_acc']:.4f}, phi entropy {last_eval['entropy']:.3f}")
      if run.save_or_stop(step, state, checkpoint_meta):
        return {"stopped_at": step}

  run.check_finite()
  num_random = int(s.random_archs)
  if num_random > 0 and last_eval:
    # The search learned when its mode architecture beats random ones under the same weights.
    last_eval = {**last_eval, **_random_baseline(eval_step, state, dataset, mesh, global_batch, num_random,
                                                 config.seed + 1)}
    last_eval["chance_acc"] = 1.0 / dataset.info.num_classes
    last_eval["entropy_start"] = entropy_start
    if is_main:
      print(f"Search-val accuracy after {total_steps} steps: mode architecture {last_eval['val_acc']:.4f}; "
            f"{num_random} random architectures, same weights: mean {last_eval['random_archs_val_acc_mean']:.4f} "
            f"(sd {last_eval['random_archs_val_acc_std']:.4f}, best "
            f"{max(last_eval['random_archs_val_acc']):.4f}); chance {last_eval['chance_acc']:.4f}. "
            f"phi entropy {entropy_start:.3f} at step {start_step} -> {last_eval['entropy']:.3f} nats.", flush=True)
  found_phi, mode_genotype, selection_trail = _found_phi(space, latency, config, _host(state.phi))
  genotype = _write_outputs(space, found_phi, run.history, outputs, workdir)
  summary = {"steps": total_steps, "final_eval": last_eval, "genotype": os.path.join(outputs, "genotype.json"),
             "compile_seconds": compile_seconds, "pictures": sorted(
                 os.path.join(outputs, f) for f in files.listdir(outputs) if f.endswith(".png"))}
  if latency is not None and hasattr(latency, "mode_report") and genotype is not None:
    # The found architecture is the mode of p_phi: does it meet the target, and by how much
    # does it undershoot it (latency / target)?
    summary["latency"] = {**latency.mode_report(genotype), "multiplier": float(_host(state.latency_lambda)),
                          "selection": config.latency.selection if mode_genotype is not None else "mode",
                          "selection_trail": selection_trail}
    if mode_genotype is not None:  # the mode missed the band: report it beside the selected one
      summary["latency"]["mode"] = latency.mode_report(mode_genotype)
    if is_main:
      r = summary["latency"]
      band = f"[{config.latency.min_ratio:g}, 1] x target"
      if selection_trail:
        print("Selection (the surrogate's answer, measured; the next round shifts the surrogate by the error): " +
              "; ".join(f"{t['predicted_ms']:.3f} ms predicted, {t['measured_ms']:.3f} measured"
                        for t in selection_trail), flush=True)
      if "mode" in r:
        m = r["mode"]
        print(f"The mode of p_phi ({m['measured_ms']:.3f} ms measured, {m['predicted_ms']:.3f} ms by the surrogate, "
              f"ratio {m['ratio']:.3f}) is not the found architecture: that is the selection's most probable "
              f"architecture within {band}, judged {'by measurement' if selection_trail else 'by the surrogate'} "
              f"(latency.selection=constrained_mode)", flush=True)
      print(f"Latency of the found architecture: {r['measured_ms']:.3f} ms, target {r['target_ms']:.3f} ms, "
            f"ratio {r['ratio']:.3f} ({'meets' if r['meets_target'] else 'MISSES'} the target)", flush=True)
  if is_main:
    files.write_json(os.path.join(workdir, "summary.json"), summary)
    print(f"Genotype: {summary['genotype']}\n{genotype}\nPictures: {', '.join(summary['pictures'])}\n"
          f"TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}", flush=True)
  run.close()
  return summary


def _eval_arch(eval_step, state, arch, dataset, mesh, global_batch) -> np.ndarray:
  """``(sum correct, sum loss, count)`` of one architecture (leaves ``[1, ...]``) on search-val."""
  totals = np.zeros(3)
  for x, y, mask in device_lib.batches(data_lib.eval_batches(
      dataset, global_batch, split="search_val", process_index=jax.process_index(),
      process_count=jax.process_count(), raw=True), dataset.info, mesh):
    totals += np.asarray(eval_step(state.w, state.stats, arch, x, y, mask))
  return totals


def _evaluate(eval_step, state, space, dataset, mesh, global_batch, cfg) -> dict[str, float]:
  """Search-val accuracy of the most probable architecture, and phi's entropy."""
  arch = jax.tree.map(lambda a: a[None], est.mode(est.soften(state.phi, cfg.eps)))
  totals = _eval_arch(eval_step, state, arch, dataset, mesh, global_batch)
  return {"val_acc": float(totals[0] / totals[2]), "val_loss": float(totals[1] / totals[2]),
          "entropy": float(est.entropy(est.soften(state.phi, cfg.eps)))}


def random_architectures(phi: PyTree, num: int, seed: int) -> list[PyTree]:
  """``num`` architectures drawn uniformly from the space (one-hot, leaves ``[1, ...]``), fixed by ``seed``."""
  uniform = est.soften(jax.tree.map(jnp.zeros_like, phi))
  keys = jax.random.split(jax.random.key(seed), num)
  return [est.discrete(k, uniform, (1,)) for k in keys]


def _random_baseline(eval_step, state, dataset, mesh, global_batch, num: int, seed: int) -> dict[str, Any]:
  """Search-val accuracy of ``num`` uniformly random architectures under the same supernet (w, stats).

  What the mode architecture's accuracy is compared with: the search learned something
  when the architecture it found beats architectures picked without it. The same
  compiled eval step as the mode's (same shapes), so it costs ``num`` forward passes
  over search-val and no compile.
  """
  accs = []
  for arch in random_architectures(state.phi, num, seed):
    totals = _eval_arch(eval_step, state, mesh_lib.put_replicated(arch, mesh), dataset, mesh, global_batch)
    accs.append(float(totals[0] / totals[2]))
  return {"random_archs_val_acc_mean": float(np.mean(accs)), "random_archs_val_acc_std": float(np.std(accs)),
          "random_archs_val_acc": accs}


def _found_phi(space, latency, config, phi):
  """``(phi whose mode is the found architecture, the mode's genotype if it was replaced, trail)``.

  With a target (hinge or lagrangian) and ``latency.selection=constrained_mode``, a mode of
  ``p_phi`` whose latency misses the target, or lies under ``min_ratio`` of it, is replaced by
  the most probable architecture within ``[min_ratio * target, target]``
  (:func:`unas_jax.latency.hooks.constrained_mode`), judged by the surrogate and, with
  ``latency.verify_rounds > 0``, checked by measuring the answer and re-solved with the
  surrogate shifted by its error there (:func:`unas_jax.latency.hooks.measured_selection`;
  ``trail``: those measurements). Otherwise the found architecture is the mode (``None``
  second).
  """
  lc = config.get("latency")
  if (latency is None or lc is None or not lc.enabled or lc.penalty not in latency_hooks.TARGET_PENALTIES
      or lc.selection == "mode"):
    return phi, None, []
  logits = space.softened(phi)  # what space.genotype reads
  costs, bias = latency_hooks.choice_costs(latency.control_fn, latency.control_params(), logits)
  target, min_ratio = float(lc.target_ms), float(lc.min_ratio)
  if int(lc.verify_rounds) > 0:
    # latency.measure is a collective on several processes: every process runs this loop on
    # the same phi and surrogate, and receives process 0's measurements.
    measure = lambda choice: float(latency.measure(latency_hooks.one_hot_arch(choice, logits))[0])  # noqa: E731
    found = latency_hooks.measured_selection(logits, costs, bias, target, min_ratio, measure,
                                             int(lc.verify_rounds))
  else:
    found = latency_hooks.constrained_mode(logits, costs, bias, target, min_ratio)
    found = None if found is None else (found[0], [])
  if found is None:  # the target is below every architecture the surrogate prices (checked at start-up)
    return phi, None, []
  choice, trail = found
  mode = {n: np.argmax(np.asarray(logits[n]), -1) for n in choice}
  if all(np.array_equal(mode[n], choice[n]) for n in choice):
    return phi, None, trail
  return latency_hooks.one_hot_logits(choice, logits), space.genotype(phi), trail


def _write_outputs(space, phi, history, outputs, workdir):
  """Writes the genotype read from ``phi`` (its mode), the pictures and curves; returns the genotype."""
  if jax.process_index() != 0:
    return None
  genotype = space.genotype(phi)
  space.write_genotype(genotype, outputs)
  records = history.read()
  with_probs = [r for r in records if "probs" in r]
  if with_probs:
    _, names = space.selector_probabilities(phi)
    plots.probability_heatmaps([r["step"] for r in with_probs],
                               [{k: np.asarray(v) for k, v in r["probs"].items()} for r in with_probs],
                               names, os.path.join(workdir, "selector_probabilities.png"),
                               title=f"{space.name}: selector probabilities over the search")
  plots.curves([r for r in records if r.get("phase") != "eval"],
               ["objective", "l_train", "l_val", "acc_train", "acc_val", "entropy", "w_loss", "latency_ms",
                "latency_predicted_ms", "latency_expected_ms", "latency_lambda", "eta"],
               os.path.join(workdir, "search_curves.png"), "search")
  evals = [r for r in records if r.get("phase") == "eval"]
  if evals:
    plots.curves(evals, ["val_acc", "val_loss", "entropy"], os.path.join(workdir, "search_eval.png"),
                 "most probable architecture on search-val")
  return genotype
