r"""The compiled steps of a job, with abstract arguments, and what their lowered programs contain.

:func:`job_steps` builds every jitted step of a config's job through the job's own
setup (:func:`unas_jax.search.loop.build_search` for the searches,
:func:`unas_jax.evaluation.trainer.build_training` for ``evaluate``) with ``jax.ShapeDtypeStruct``
arguments (state from ``jax.eval_shape``): nothing is run, no data is read for the
tfds sources (``cifar10``, ``cifar100``, ``imagenet2012``; digits and npz are read for
their shapes). :func:`lower` lowers one for a platform without its device
(``jit(f).trace(*args).lower(lowering_platforms=(platform,))``) under the kernels of
that platform (:mod:`unas_jax.nn.kernels`; when lowering for ``cuda`` on a CPU host
``jax.default_backend()`` is still ``cpu``, so the choice is entered explicitly), and
:func:`count_ops` counts, in the StableHLO text, what must not reach an accelerator:
conditionals (``stablehlo.case`` / ``stablehlo.if``; XLA:GPU syncs the host for each),
while loops, host callbacks (``custom_call`` targets naming a callback), float64 values,
and the convolutions by element type (bf16 compute shows here).
"""
from __future__ import annotations

import collections
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from unas_jax.config import check_choice
from unas_jax.errors import ConfigError
from unas_jax.nn import functional
from unas_jax.nn import kernels as kernels_lib
from unas_jax.parallel import mesh as mesh_lib

PLATFORMS = ("cpu", "cuda", "tpu")
SCHEDULE_STEPS = 1000  # schedules need a step count; it changes no shape

Steps = dict[str, tuple[Callable, tuple]]


def dataset_info(config: ml_collections.ConfigDict):
  """The config's DatasetInfo, without loading the tfds sources."""
  from unas_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  from unas_jax.evaluation import run as eval_run  # pylint: disable=import-outside-toplevel
  return eval_run.nominal_info(config.data) or data_lib.load(config.data).info


def _batch(info, global_batch: int, mesh) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
  sharding = mesh_lib.batch_sharded(mesh)
  return (jax.ShapeDtypeStruct((global_batch, *info.image_shape), jnp.float32, sharding=sharding),
          jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=sharding))


class _ShapeOnlyLatency:
  """The latency hooks of a latency-aware search for lowering: the surrogate's shapes, no measurement.

  The step's program depends on the surrogate's shapes only (``coef`` ``[F]``,
  ``bias`` ``[]``) and on the space's control function; fitting it would time
  hundreds of networks.
  """

  def __init__(self, control_fn, num_features: int):
    self.control_fn = control_fn
    self.num_features = num_features

  def control_params(self):
    return {"coef": jnp.zeros((self.num_features,), jnp.float32), "bias": jnp.zeros((), jnp.float32)}


def _search_space(config):
  job = config.get("job")
  if job == "darts_search":
    from unas_jax.search import darts  # pylint: disable=import-outside-toplevel
    return darts.DartsSearchSpace(config), None
  from unas_jax.latency import additive  # pylint: disable=import-outside-toplevel
  from unas_jax.search import proxyless  # pylint: disable=import-outside-toplevel
  from unas_jax.spaces import proxyless as pspace  # pylint: disable=import-outside-toplevel
  space = proxyless.ProxylessSearchSpace(config)
  latency = None
  if config.latency.enabled:
    num_features = sum(s.num_choices for s in pspace.layer_specs(pspace.resolve_widths(config.model.widths)))
    latency = _ShapeOnlyLatency(additive.predict, num_features)
  return space, latency


def search_steps(config: ml_collections.ConfigDict, mesh) -> Steps:
  """``{'search', 'warmup', 'eval'}`` of a ``darts_search`` / ``proxyless_search`` job, abstract arguments."""
  from unas_jax.search import loop  # pylint: disable=import-outside-toplevel
  from unas_jax.search import step as step_lib  # pylint: disable=import-outside-toplevel
  info = dataset_info(config)
  global_batch = config.batch_size
  space, latency = _search_space(config)
  setup = loop.build_search(config, info, mesh, space, lambda _: latency, SCHEDULE_STEPS, abstract=True)
  state, cfg = setup.state, setup.cfg
  replicated = mesh_lib.replicated(mesh)
  n = step_lib.num_global_samples(cfg, global_batch, mesh.devices.size)
  latency_ms = jax.ShapeDtypeStruct((n,), jnp.float32, sharding=(
      replicated if cfg.sampling == "shared" else mesh_lib.batch_sharded(mesh)))
  control = latency.control_params() if latency is not None else jnp.zeros(())
  control = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), control)
  batch = _batch(info, global_batch, mesh)
  arch = jax.tree.map(lambda p: jax.ShapeDtypeStruct((1, *p.shape), p.dtype, sharding=replicated), state.phi)
  mask = jax.ShapeDtypeStruct((global_batch,), jnp.float32, sharding=mesh_lib.batch_sharded(mesh))
  return {
      "search": (setup.search_step, (state, batch, batch, latency_ms, control)),
      "warmup": (setup.warmup_step, (state, batch)),
      "eval": (setup.eval_step, (state.w, state.stats, arch, *batch, mask)),
  }


def probe_steps(config: ml_collections.ConfigDict) -> Steps:
  """``{'probe'}``: the forward pass the latency probe compiles and times, for one subnetwork.

  As :func:`unas_jax.latency.probe.compile_forward` builds it (weights and input
  in the probe's dtype, ``train=False``), for the ``proxylessnas_gpu`` genotype at
  the probe's batch size and resolution.
  """
  from unas_jax.nn.proxyless_network import ProxylessNetwork  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  lc, m = config.latency, config.model
  # The probe's own rule (latency.proxyless_source.probe_config): latency.dtype, else the compute dtype.
  dtype = jnp.dtype(lc.dtype or m.dtype)
  num_classes = dataset_info(config).num_classes
  net = nnx.eval_shape(lambda: ProxylessNetwork("proxylessnas_gpu", m.widths, num_classes, rngs=nnx.Rngs(0),
                                                depthwise_impl=m.depthwise_impl, dtype=dtype,
                                                kernels=m.kernels))
  model_def, _, w, stats = functional.split(net)
  cast = lambda a: jax.ShapeDtypeStruct(a.shape, dtype if jnp.issubdtype(a.dtype, jnp.floating) else a.dtype)  # noqa: E731
  w, stats = jax.tree.map(cast, w), jax.tree.map(cast, stats)
  x = jax.ShapeDtypeStruct((lc.batch_size, lc.resolution, lc.resolution, 3), dtype)

  def forward(w, stats, x):
    return functional.apply(model_def, w, stats, x, None, train=False)[0]
  return {"probe": (jax.jit(forward), (w, stats, x))}


def train_steps(config: ml_collections.ConfigDict, mesh) -> Steps:
  """``{'train', 'eval'}`` of the ``evaluate`` job (``trainer.build_training``, abstract), abstract arguments."""
  from unas_jax.evaluation import networks, trainer  # pylint: disable=import-outside-toplevel
  from unas_jax.evaluation import run as eval_run  # pylint: disable=import-outside-toplevel
  eval_run.check_config(config)
  info = dataset_info(config)
  global_batch = config.batch_size
  network = networks.from_config(config.model, seed=config.seed)
  steps_per_epoch = max(1, SCHEDULE_STEPS // max(1, int(config.train.epochs)))
  setup = trainer.build_training(config, network, info, mesh, steps_per_epoch, abstract=True)
  state = setup.state
  batch = _batch(info, global_batch, mesh)
  mask = jax.ShapeDtypeStruct((global_batch,), jnp.float32, sharding=mesh_lib.batch_sharded(mesh))
  return {"train": (setup.train_step, (state, batch)), "eval": (setup.eval_step, (state.w, state.stats, *batch, mask))}


def job_steps(config: ml_collections.ConfigDict, mesh=None, *, probe: bool = True) -> Steps:
  """Every compiled step of the config's job (``probe``: also the proxyless probe's subnetwork)."""
  job = config.get("job")
  mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh.num_devices)
  if job in ("darts_search", "proxyless_search"):
    steps = search_steps(config, mesh)
    if probe and job == "proxyless_search" and config.latency.enabled and config.latency.source == "probe":
      steps.update(probe_steps(config))
    return steps
  if job == "evaluate":
    return train_steps(config, mesh)
  raise ConfigError(f"config.job={job!r}: supported jobs are darts_search, proxyless_search and evaluate")


def trace(step: Callable, args: tuple, kernels: str):
  """``step`` traced (``jax.stages.Traced``) under ``kernels``; lower it for a platform with :func:`lower`.

  ``jax.jit`` caches the trace per function and argument types, not per kernel
  choice: a step object traced once keeps its first kernels, so trace each
  choice on fresh steps (:func:`job_steps` builds fresh ones on every call).
  """
  with kernels_lib.use(kernels):
    return step.trace(*args)


def lower(step: Callable | Any, args: tuple | None, platform: str, kernels: str | None = None):
  """``step`` lowered for ``platform`` (no device, no compile) under ``kernels`` (default: the platform's).

  ``step`` may be an already :func:`trace`-d step (``args`` None): one trace can be
  lowered for several platforms (``cuda`` and ``tpu`` share the ``xla`` kernels).
  """
  check_choice("platform", platform, PLATFORMS)
  traced = step if args is None else trace(step, args, kernels or kernels_lib.for_platform(platform))
  return traced.lower(lowering_platforms=(platform,))


_OP = re.compile(r'^\s*(?:[%\w#:,\s]+=\s*)?"?([a-z_]+\.[a-z_0-9.]+)"?[\s(<{@]')
_TARGET = re.compile(r'custom_call\s*@([\w.$-]+)|call_target_name\s*=\s*"([^"]+)"')
_RESULT_TYPE = re.compile(r'->\s*tensor<(?:[\dx?]*x)?([a-z]+\d*)>')
_F64 = re.compile(r'\bf64\b|complex<f64>')


def count_ops(text: str) -> dict[str, Any]:
  """Counts in a lowered module's StableHLO text (static counts: each function body once).

  Returns ``conditionals`` (``stablehlo.case`` + ``stablehlo.if``), ``while_loops``,
  ``optimization_barriers``,
  ``host_callbacks`` (custom calls whose target names a callback),
  ``custom_calls`` by target, ``float64_ops`` (ops that produce or read an
  ``f64`` value), ``convolutions`` by result element type, ``total_ops``.
  """
  ops = collections.Counter()
  targets = collections.Counter()
  convs = collections.Counter()
  f64 = 0
  for line in text.splitlines():
    match = _OP.match(line)
    if not match:
      continue
    name = match.group(1)
    if name.startswith(("func.return", "stablehlo.return", "sdy.return")):
      continue
    ops[name] += 1
    if name == "stablehlo.custom_call":
      t = _TARGET.search(line)
      targets[(t.group(1) or t.group(2)) if t else "?"] += 1
    if name == "stablehlo.convolution":
      r = _RESULT_TYPE.search(line)
      convs[r.group(1) if r else "?"] += 1
    if _F64.search(line):
      f64 += 1
  return {
      "conditionals": ops["stablehlo.case"] + ops["stablehlo.if"],
      "while_loops": ops["stablehlo.while"],
      # jax.checkpoint's recomputation reads its inputs through one (model.remat).
      "optimization_barriers": ops["stablehlo.optimization_barrier"],
      "host_callbacks": sum(n for t, n in targets.items() if "callback" in t.lower()),
      "custom_calls": dict(sorted(targets.items())),
      "float64_ops": f64,
      "convolutions": dict(sorted(convs.items())),
      "total_ops": sum(ops.values()),
  }
