r"""Training a found architecture from scratch (docs/design.md section 7).

SGD with momentum, L2 weight decay added to the gradient (as PyTorch's SGD),
gradient clipping, linear warm-up then cosine decay, label smoothing,
auxiliary-head loss ``L = CE(logits) + aux_weight * CE(aux_logits)``, drop-path
ramped linearly ``p_t = drop_path * t / T`` (DARTS), and optionally an
exponential moving average of the weights used for evaluation.

The step is data parallel like the search step: ``jax.jit`` over a
``jax.shard_map`` body with per-device dropout keys and gradients averaged over
the ``data`` axis.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from flax import struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax
from chex import ArrayTree as PyTree

from unas_jax import data as data_lib
from unas_jax.data import device as device_lib
from unas_jax.nn import batchnorm
from unas_jax.nn import functional
from unas_jax.objectives import losses
from unas_jax.parallel import mesh as mesh_lib
from unas_jax.parallel.mesh import DATA_AXIS
from unas_jax.utils import files
from unas_jax.utils import plots
from unas_jax.utils.interrupt import StopRequest
from unas_jax.utils.scaffold import RunScaffold


@struct.dataclass
class TrainState:
  step: jax.Array
  key: jax.Array      # raw key data
  w: PyTree
  stats: PyTree
  opt: PyTree
  ema_w: PyTree       # equals w when the EMA is off


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Static settings of the training step."""
  label_smoothing: float
  aux_weight: float
  drop_path: float
  total_steps: int
  ema_decay: float


def make_optimizer(train_config: ml_collections.ConfigDict, global_batch: int, steps_per_epoch: int,
                   decay_mask: PyTree | None = None):
  """SGD(momentum) with clip, L2 decay, warm-up + cosine; returns ``(tx, schedule, total_steps)``.

  ``decay_mask``: a pytree of bools over ``w`` (True: decayed); None decays
  every weight, as PyTorch's ``SGD(weight_decay=...)`` on ``model.parameters()``.
  """
  t = train_config
  total_steps = int(t.max_steps) if t.max_steps else int(t.epochs * steps_per_epoch)
  warmup = min(int(t.warmup_epochs * steps_per_epoch), max(0, total_steps - 1))
  lr = t.lr * (global_batch / t.lr_reference_batch if t.lr_reference_batch else 1.0)
  schedule = optax.warmup_cosine_decay_schedule(0.0 if warmup else lr, lr, warmup, max(total_steps, warmup + 1),
                                                end_value=0.0)
  tx = optax.chain(optax.clip_by_global_norm(t.grad_clip) if t.grad_clip else optax.identity(),
                   optax.add_decayed_weights(t.weight_decay, mask=decay_mask),
                   optax.sgd(schedule, momentum=t.momentum, nesterov=t.nesterov))
  return tx, schedule, total_steps


def weight_decay_mask(module, w: PyTree) -> PyTree:
  """True for every weight except the parameters of normalisation layers (no decay on BN, ProxylessNAS).

  A normalisation layer is a module that holds ``nnx.BatchStat`` variables; its
  ``nnx.Param`` entries (scale, bias) are excluded.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel
  bn_modules = set()
  for path, node in nnx.iter_graph(module):
    if isinstance(node, nnx.Module) and any(isinstance(v, nnx.BatchStat) for v in vars(node).values()):
      bn_modules.add(tuple(path))

  def decayed(path, _):
    return functional.path_names(path)[:-1] not in bn_modules
  return jax.tree_util.tree_map_with_path(decayed, w)


def init_state(seed: int, w, stats, tx) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(jax.random.key(seed)), w=w,
                    stats=stats, opt=tx.init(w), ema_w=jax.tree.map(jnp.copy, w))


def _split_output(out):
  if isinstance(out, tuple):
    return out[0], out[1]
  return out, None


def make_train_step(model_def: functional.ModelDef, tx, cfg: TrainConfig, mesh, schedule=None):
  """``step(state, (x, y)) -> (state, metrics)``, data parallel over ``mesh``."""
  def per_device(state: TrainState, batch):
    x, y = batch
    device = jax.lax.axis_index(DATA_AXIS)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step), device)
    # A Python 0 when drop-path is off, so that networks skip drawing masks.
    drop_path = (cfg.drop_path * state.step.astype(jnp.float32) / cfg.total_steps) if cfg.drop_path else 0.0

    def loss_fn(w):
      out, new_stats = functional.apply(model_def, w, state.stats, x, None, train=True, key=key,
                                        drop_path=drop_path)
      logits, aux_logits = _split_output(out)
      loss = jnp.mean(losses.cross_entropy(logits, y, cfg.label_smoothing))
      if aux_logits is not None and cfg.aux_weight:
        loss = loss + cfg.aux_weight * jnp.mean(losses.cross_entropy(aux_logits, y, cfg.label_smoothing))
      return loss, (new_stats, jnp.mean(jnp.argmax(logits, -1) == y))

    (loss, (new_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.w)
    grads = jax.lax.pmean(grads, DATA_AXIS)
    new_stats = jax.lax.pmean(new_stats, DATA_AXIS)
    updates, opt = tx.update(grads, state.opt, state.w)
    w = optax.apply_updates(state.w, updates)
    ema_w = w if not cfg.ema_decay else jax.tree.map(
        lambda e, v: cfg.ema_decay * e + (1.0 - cfg.ema_decay) * v, state.ema_w, w)
    metrics = jax.lax.pmean({"loss": loss, "acc": acc}, DATA_AXIS)
    metrics.update(grad_norm=optax.global_norm(grads), drop_path=jnp.asarray(drop_path, jnp.float32))
    if schedule is not None:
      metrics["lr"] = schedule(state.step)
    return state.replace(step=state.step + 1, w=w, stats=new_stats, opt=opt, ema_w=ema_w), metrics

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()),
                          check_vma=False)
  return mesh_lib.jit_state_step(sharded, mesh)


def make_eval_step(model_def: functional.ModelDef, mesh):
  """``(w, stats, x, y, mask) -> [correct@1, correct@5, loss sum, count]`` summed over devices."""
  def per_device(w, stats, x, y, mask):
    out, _ = functional.apply(model_def, w, stats, x, None, train=False)
    logits, _ = _split_output(out)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    correct1 = (top5[:, 0] == y) * mask
    correct5 = jnp.any(top5 == y[:, None], axis=-1) * mask
    ce = losses.cross_entropy(logits, y) * mask
    return jax.lax.psum(jnp.stack([correct1.sum(), correct5.sum(), ce.sum(), mask.sum()]), DATA_AXIS)

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(DATA_AXIS), P(DATA_AXIS), P(DATA_AXIS)),
                          out_specs=P(), check_vma=False)
  return jax.jit(sharded)


def evaluate(eval_step, w, stats, dataset, global_batch: int, mesh, split: str = "test") -> dict[str, float]:
  totals = np.zeros(4)
  for x, y, mask in device_lib.batches(data_lib.eval_batches(
      dataset, global_batch, split=split, process_index=jax.process_index(), process_count=jax.process_count(),
      raw=True), dataset.info, mesh):
    totals += np.asarray(eval_step(w, stats, x, y, mask))
  return {"top1": float(totals[0] / totals[3]), "top5": float(totals[1] / totals[3]),
          "loss": float(totals[2] / totals[3]), "examples": int(totals[3])}


@dataclasses.dataclass
class NetworkSummary:
  """What the start-of-training summary prints."""
  name: str
  params: int
  params_without_aux: int
  macs: int
  input_shape: tuple[int, ...]

  def format(self) -> str:
    return (f"{self.name}: {self.params_without_aux / 1e6:.3f}M parameters "
            f"({self.params / 1e6:.3f}M with the auxiliary head), {self.macs / 1e6:.1f}M multiply-adds "
            f"at {'x'.join(map(str, self.input_shape))}")


def summarize(network, info: data_lib.DatasetInfo, w: PyTree | None = None) -> NetworkSummary:
  """Parameters (with and without the auxiliary head) and multiply-adds of ``network`` on ``info``'s images.

  Counted on the weights ``w`` of a build of it, or of a shape-only build when None.
  """
  if w is None:
    _, _, w, _ = functional.split(network.abstract(info))
  return NetworkSummary(network.name, functional.count_params(w), functional.count_params(w, network.is_aux),
                        network.macs(info), tuple(info.image_shape))


def report_summary(summary: NetworkSummary, workdir: str) -> None:
  """Prints the summary and writes it to ``<workdir>/network_summary.json`` (process 0)."""
  if jax.process_index() == 0:
    print(summary.format(), flush=True)
    files.write_json(os.path.join(workdir, "network_summary.json"), dataclasses.asdict(summary))


@dataclasses.dataclass
class TrainSetup:
  """Everything the trainer builds for a network before the first step (shared with the lowering of its steps)."""
  summary: NetworkSummary
  cfg: TrainConfig
  total_steps: int
  state: TrainState
  train_step: Any
  eval_step: Any


def build_training(config: ml_collections.ConfigDict, network, info: data_lib.DatasetInfo, mesh,
                   steps_per_epoch: int, *, abstract: bool = False) -> TrainSetup:
  """The network, optimiser, state and jitted steps of a training run of ``network`` on ``mesh``.

  ``abstract=True`` builds the network shape-only (``network.abstract``) and the
  state with ``jax.eval_shape`` (``jax.ShapeDtypeStruct`` leaves with the mesh's
  replicated sharding: no memory, no compute), for lowering and ahead-of-time
  compilation of the job's own steps (:mod:`unas_jax.utils.lowering`).
  """
  t = config.train
  global_batch = config.batch_size
  mesh_lib.check_batch(global_batch, mesh)
  module = network.abstract(info) if abstract else network.build(info)
  batchnorm.apply_mode(module, t.bn, DATA_AXIS, "config.train.bn")
  model_def, _, w, stats = functional.split(module)
  decay_mask = weight_decay_mask(module, w) if t.no_decay_bn else None
  tx, schedule, total_steps = make_optimizer(t, global_batch, steps_per_epoch, decay_mask)
  cfg = TrainConfig(label_smoothing=t.label_smoothing,
                    aux_weight=t.aux_weight if config.model.auxiliary else 0.0,
                    drop_path=t.drop_path, total_steps=total_steps, ema_decay=t.ema_decay)
  state = mesh_lib.replicated_state(mesh, lambda w, stats: init_state(config.seed, w, stats, tx), w, stats,
                                    abstract=abstract)
  return TrainSetup(summary=summarize(network, info, w), cfg=cfg, total_steps=total_steps, state=state,
                    train_step=make_train_step(model_def, tx, cfg, mesh, schedule),
                    eval_step=make_eval_step(model_def, mesh))


# The step metrics whose non-finite value stops training.
FINITE_METRICS = ("loss", "grad_norm")


def run_training(config: ml_collections.ConfigDict, workdir: str, network) -> dict:
  """Trains ``network`` (see ``unas_jax.evaluation.networks``) and writes ``results.json``.

  ``network`` provides ``build(info) -> nnx.Module``, ``is_aux(path) -> bool``,
  ``macs(info) -> int`` and ``name``. The first step whose loss or gradient norm
  is not finite stops training (``NonFiniteError``) before any checkpoint or
  evaluation is made from it; ``history.jsonl`` is cut back to the step resumed
  from; a signal before the first step exits at once. (``summary_only`` is the
  job's, :func:`unas_jax.evaluation.run.run`: it needs no data.) ``config`` is the one
  :func:`unas_jax.evaluation.run.check_config` passed (the job checks it first).
  """
  # Before setup: a signal during data loading or the first compile exits at once.
  with StopRequest() as stop:
    return _run_training(config, workdir, network, stop)


def _run_training(config: ml_collections.ConfigDict, workdir: str, network, stop: StopRequest) -> dict:
  t = config.train
  is_main = jax.process_index() == 0
  dataset = data_lib.load(config.data)
  info = dataset.info
  mesh = mesh_lib.make_mesh(config.mesh.num_devices)
  global_batch = config.batch_size
  steps_per_epoch = data_lib.steps_per_epoch(dataset, "train", global_batch, jax.process_count())
  setup = build_training(config, network, info, mesh, steps_per_epoch)
  cfg, total_steps, train_step, eval_step = setup.cfg, setup.total_steps, setup.train_step, setup.eval_step
  report_summary(setup.summary, workdir)

  run = RunScaffold(workdir, stop, description=f"train {network.name}", total_steps=total_steps,
                    steps_per_epoch=steps_per_epoch, checkpoint_every=config.checkpoint_every,
                    finite_metrics=FINITE_METRICS, stop_at_step=t.stop_at_step,
                    stop_at_name="train.stop_at_step")  # >= 0: save and stop there, as if interrupted (tests)
  state, _ = run.start(setup.state)
  start = run.start_step
  # uint8 batches prepared in a host thread, normalised on the devices one step ahead.
  batches = device_lib.batches(data_lib.prefetch(data_lib.train_batches(
      dataset, global_batch, config.seed, start, process_index=jax.process_index(),
      process_count=jax.process_count(), raw=True)), info, mesh)
  eval_every = max(1, int(config.eval_every_epochs * steps_per_epoch))
  result: dict[str, Any] = {}
  with run:
    step = start
    while step < total_steps:
      run.before_step()
      state, metrics = train_step(state, next(batches))
      step += 1
      run.after_step(step, metrics)
      if step % config.log_every == 0 or step == total_steps:
        run.check_finite()
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        run.log(step, metrics)
        run.progress.update(step, global_batch, loss=metrics["loss"], acc=metrics["acc"])
      else:
        run.progress.update(step, global_batch)
      if step % eval_every == 0 or step == total_steps:
        run.check_finite()
        weights = state.ema_w if cfg.ema_decay else state.w
        result = evaluate(eval_step, weights, state.stats, dataset, global_batch, mesh)
        run.log(step, result, phase="test", tag="test")
        run.progress.write(f"epoch {step / steps_per_epoch:.1f}: test top-1 {result['top1']:.4f} "
                           f"top-5 {result['top5']:.4f}")
      if run.save_or_stop(step, state):
        return {"stopped_at": step}
  if not result:  # resumed after the last step: evaluate once more
    result = evaluate(eval_step, state.ema_w if cfg.ema_decay else state.w, state.stats, dataset, global_batch, mesh)
  out = {"network": dataclasses.asdict(setup.summary), "test": result, "steps": total_steps,
         "dataset": info.name, "ema": bool(cfg.ema_decay)}
  if is_main:
    files.write_json(os.path.join(workdir, "results.json"), out)
    records = run.history.read()
    plots.curves([r for r in records if r.get("phase") != "test"], ["loss", "acc", "lr", "drop_path"],
                 os.path.join(workdir, "train_curves.png"), f"training {network.name}", x_key="epoch")
    plots.curves([r for r in records if r.get("phase") == "test"], ["top1", "top5", "loss"],
                 os.path.join(workdir, "test_curves.png"), f"test, {network.name}", x_key="epoch")
    print(f"Test top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f} on {result['examples']} examples; "
          f"results in {os.path.join(workdir, 'results.json')}", flush=True)
  run.close()
  return out

