"""The architecture-search loop, shared by every search space (DESIGN.md section 6).

``run_search(config, workdir, space)`` trains w only for ``init_epochs`` (with
architectures sampled from phi), then alternates phi and w updates
(:mod:`unas_jax.search.step`). It resumes from the newest checkpoint in
``workdir`` (phi, w, BatchNorm statistics, both optimiser states, estimator
state, step; the data position is the step, since batches are pure functions of
``(seed, step)``), saves on SIGINT/SIGTERM or preemption, logs TensorBoard
scalars, shows a progress bar, and writes the genotype (JSON), its pictures and
a heat map of the selector probabilities over time.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unas_jax import data as data_lib
from unas_jax import estimators as est
from unas_jax.config import check_range
from unas_jax.data import device as device_lib
from unas_jax.errors import ConfigError
from unas_jax.nn import functional
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.search import step as step_lib
from unas_jax.utils import checkpoint as checkpoint_lib
from unas_jax.utils import metrics as metrics_lib
from unas_jax.utils import plots
from unas_jax.utils.interrupt import StopRequest
from unas_jax.utils.progress import Progress

PyTree = Any


class LatencyHooks(Protocol):
  """What a latency-aware search space provides (see ``unas_jax.search.proxyless``)."""

  def measure(self, z: PyTree) -> np.ndarray:
    """Measured latency in ms of each architecture of ``z`` (leaves ``[S, ..., K]``, numpy)."""

  def control_params(self) -> PyTree:
    """The surrogate's parameters (passed to the step each call)."""

  def control_fn(self, params: PyTree, arch: PyTree) -> jax.Array:
    """Differentiable predicted latency ``[S]`` in ms."""

  def state_dict(self) -> dict:
    """JSON-able state saved with checkpoints."""

  def load_state_dict(self, state: dict) -> None:
    ...

  def after_step(self, step: int, phi: PyTree) -> dict[str, float]:
    """Bookkeeping at logging steps (e.g. refitting the surrogate); returns metrics to log."""

  def speculate(self, z: PyTree) -> None:
    """Starts preparing (compiling) the architectures of a coming step, in the background."""


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


def step_config(config: ml_collections.ConfigDict) -> step_lib.StepConfig:
  s = config.search
  latency = config.get("latency")
  kwargs = {}
  if latency is not None and latency.get("enabled", False):
    kwargs = dict(latency_estimator=latency.estimator, latency_target_ms=float(latency.target_ms),
                  latency_penalty=latency.penalty, latency_c=latency.c,
                  latency_warmup_steps=latency.warmup_steps)
  return step_lib.StepConfig(
      estimator=s.estimator, objective=s.objective, gen_lambda=s.gen_lambda, tau=s.tau, eps=s.eps,
      sampling=s.sampling, pairing_weight=s.get("pairing_weight", 0.0), baseline=s.baseline,
      baseline_decay=s.baseline_decay, baseline_value=s.get("baseline_value", 0.0), learn_eta=s.learn_eta, **kwargs)


def validate(config: ml_collections.ConfigDict) -> None:
  s = config.search
  check_range("search.epochs", s.epochs, 0, float("inf"))
  if s.init_epochs < 0 or s.init_epochs > s.epochs:
    raise ConfigError(f"search.init_epochs={s.init_epochs} must lie in [0, search.epochs={s.epochs}]")
  if config.batch_size < 1:
    raise ConfigError(f"batch_size={config.batch_size} must be positive")
  if s.bn not in ("local", "sync"):
    raise ConfigError(f"search.bn={s.bn!r} is not one of ['local', 'sync']")
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
  if latency is not None and latency.get("enabled", False) and latency.get("reserve_device", False):
    return mesh_lib.reserved_local_devices()
  return []


def setup_search(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace) -> SearchSetup:
  """Validates the config, loads the data, builds the supernet, optimisers, state and jitted steps."""
  validate(config)
  dataset = data_lib.load(config.data)
  info = dataset.info
  mesh = mesh_lib.make_mesh(config.mesh.num_devices, exclude=reserved_devices(config))
  global_batch = config.batch_size
  mesh_lib.check_batch(global_batch, mesh)
  data_lib.check_sharding(global_batch, jax.process_index(), jax.process_count())
  cfg = step_config(config)
  s = config.search

  model = space.build_supernet(config, info, mesh_lib.DATA_AXIS if s.bn == "sync" else None)
  model_def, phi_state, w, stats = functional.split(model)
  phi = space.phi_from_state(phi_state)
  latency = space.latency_hooks(config, workdir, info)
  if cfg.latency_estimator is not None and latency is None:
    raise ConfigError(f"latency.enabled is set but the {space.name} space has no latency source")
  search_model = step_lib.SearchModel(model_def, arch_penalty_fn=space.arch_penalty_fn,
                                      control_fn=latency.control_fn if latency else None)

  steps_per_epoch = data_lib.steps_per_epoch(dataset, "search_train", global_batch, jax.process_count())
  total_steps = int(s.epochs * steps_per_epoch) if not s.max_steps else int(s.max_steps)
  warmup_steps = min(total_steps, int(s.init_epochs * steps_per_epoch))
  tx_w, tx_phi, w_schedule, phi_schedule = step_lib.make_optimizers(s, global_batch, total_steps)
  state = step_lib.init_state(config.seed, phi, w, stats, tx_w, tx_phi, cfg, eta=s.eta)
  state = mesh_lib.put_replicated(state, mesh)
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


def run_search(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace) -> dict:
  """Runs (or resumes) a search; returns a summary dict (also written to ``summary.json``)."""
  is_main = jax.process_index() == 0
  setup = setup_search(config, workdir, space)
  dataset, mesh, cfg, latency, state = setup.dataset, setup.mesh, setup.cfg, setup.latency, setup.state
  s = config.search
  global_batch = config.batch_size
  steps_per_epoch, total_steps, warmup_steps = setup.steps_per_epoch, setup.total_steps, setup.warmup_steps

  checkpointer = checkpoint_lib.Checkpointer(workdir, max_to_keep=2)
  history = metrics_lib.JsonlHistory(os.path.join(workdir, "history.jsonl"))
  restored = checkpointer.restore(state)
  if restored is not None:
    state, meta, _ = restored
    if latency is not None and "latency" in meta:
      latency.load_state_dict(meta["latency"])
    history.truncate_after(int(state.step))
    if is_main:
      print(f"Resuming from step {int(state.step)} (checkpoint in {checkpointer.directory})", flush=True)
    # The config of this run decides the latency target and c, also on resume.
    state = state.replace(**mesh_lib.put_replicated(step_lib.latency_hparams(cfg), mesh))
  start_step = int(state.step)

  search_step, warmup_step, eval_step = setup.search_step, setup.warmup_step, setup.eval_step
  # uint8 batches prepared in a host thread, normalised on the devices one step ahead.
  batches = device_lib.search_pairs(data_lib.prefetch(data_lib.search_batches(
      dataset, global_batch, config.seed, start_step, process_index=jax.process_index(),
      process_count=jax.process_count(), raw=True)), dataset.info, mesh)
  writer = metrics_lib.create_writer(workdir)
  outputs = plots.ensure_dir(os.path.join(workdir, "genotype"))
  control = latency.control_params() if latency else jnp.zeros(())

  stop = StopRequest().install()
  progress = Progress(total_steps, start_step, f"search {space.name}")
  if is_main:
    print(f"search: {total_steps} steps ({s.epochs} epochs x {steps_per_epoch}, first {warmup_steps} w-only), "
          f"global batch {global_batch} on {mesh.devices.size} device(s), estimator {cfg.estimator}, "
          f"objective L_{cfg.objective}, {cfg.sampling} architectures", flush=True)
  last_eval: dict[str, float] = {}
  step = start_step
  compile_seconds = {}
  try:
    while step < total_steps:
      batch_train, batch_val = next(batches)
      t0 = time.perf_counter()
      if step < warmup_steps:
        state, metrics = warmup_step(state, batch_train)
        kind = "warmup"
      else:
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
      log_now = step % config.log_every == 0 or step == total_steps
      epoch_end = step % steps_per_epoch == 0 or step == total_steps
      if log_now:
        # Blocking here every few steps also keeps XLA:CPU collectives from piling up.
        metrics = {k: float(v) for k, v in _host(metrics).items()}
        if latency is not None:
          metrics.update(latency.after_step(step, _host(state.phi)))
          control = latency.control_params()
        probs, _ = space.selector_probabilities(_host(state.phi))
        record = {"step": step, "epoch": step / steps_per_epoch, "phase": kind, **metrics}
        history.append({**record, "probs": {k: np.round(v, 4).tolist() for k, v in probs.items()}})
        writer.write_scalars(step, metrics)
        progress.update(step, config.log_every * global_batch,
                        **{k: metrics[k] for k in ("objective", "acc_val", "entropy", "w_loss") if k in metrics})
      else:
        progress.update(step, global_batch)
      eval_due = epoch_end or (config.get("eval_every", 0) and step % config.eval_every == 0)
      if eval_due and step > warmup_steps:
        last_eval = _evaluate(eval_step, state, space, dataset, mesh, global_batch, cfg)
        writer.write_scalars(step, {f"eval/{k}": v for k, v in last_eval.items()})
        history.append({"step": step, "epoch": step / steps_per_epoch, "phase": "eval", **last_eval})
        _write_outputs(space, state, history, outputs, workdir)
        progress.write(f"epoch {step / steps_per_epoch:.1f}: mode architecture search-val accuracy "
                       f"{last_eval['val_acc']:.4f}, phi entropy {last_eval['entropy']:.3f}")
      checkpoint_due = step % config.checkpoint_every == 0 or step == total_steps
      preempted = checkpointer.reached_preemption(step)
      if checkpoint_due or stop.requested or preempted or step == s.get("stop_at_step", -1):
        meta = {"step": step, "seed": config.seed, "config": config.to_json_best_effort()}
        if latency is not None:
          meta["latency"] = latency.state_dict()
        checkpointer.save(step, state, meta, force=True)
      if stop.requested or preempted or step == s.get("stop_at_step", -1):
        checkpointer.wait()
        reason = stop.signal_name or ("preemption" if preempted else "search.stop_at_step")
        progress.write(f"Stopped by {reason} at step {step}; checkpoint saved. Rerun the same command to resume.")
        return {"stopped_at": step}
  finally:
    progress.close()
    stop.restore()
    writer.flush()
    checkpointer.wait()

  genotype = _write_outputs(space, state, history, outputs, workdir)
  summary = {"steps": total_steps, "final_eval": last_eval, "genotype": os.path.join(outputs, "genotype.json"),
             "compile_seconds": compile_seconds, "pictures": sorted(
                 os.path.join(outputs, f) for f in os.listdir(outputs) if f.endswith(".png"))}
  if is_main:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
    print(f"Genotype: {summary['genotype']}\n{genotype}\nPictures: {', '.join(summary['pictures'])}\n"
          f"TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}", flush=True)
  checkpointer.close()
  return summary


def _evaluate(eval_step, state, space, dataset, mesh, global_batch, cfg) -> dict[str, float]:
  """Search-val accuracy of the most probable architecture, and phi's entropy."""
  arch = jax.tree.map(lambda a: a[None], est.mode(est.soften(state.phi, cfg.eps)))
  totals = np.zeros(3)
  for x, y, mask in device_lib.batches(data_lib.eval_batches(
      dataset, global_batch, split="search_val", process_index=jax.process_index(),
      process_count=jax.process_count(), raw=True), dataset.info, mesh):
    totals += np.asarray(eval_step(state.w, state.stats, arch, x, y, mask))
  return {"val_acc": float(totals[0] / totals[2]), "val_loss": float(totals[1] / totals[2]),
          "entropy": float(est.entropy(est.soften(state.phi, cfg.eps)))}


def _write_outputs(space, state, history, outputs, workdir):
  if jax.process_index() != 0:
    return None
  phi = _host(state.phi)
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
                "latency_predicted_ms", "eta"], os.path.join(workdir, "search_curves.png"), "search")
  evals = [r for r in records if r.get("phase") == "eval"]
  if evals:
    plots.curves(evals, ["val_acc", "val_loss", "entropy"], os.path.join(workdir, "search_eval.png"),
                 "most probable architecture on search-val")
  return genotype
