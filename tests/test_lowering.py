"""The steps lowered for cuda and tpu hold no CPU kernels, host callbacks or float64 (issue 10).

Every compiled step of the DARTS search, the ProxylessNAS latency search (with
the probe's subnetwork) and the evaluation training is built by the job's own
setup with abstract state and lowered for each platform on this CPU host
(``unas_jax.utils.lowering``); tiny sizes keep each trace to seconds. Negative
control: the same search step lowered for ``cpu`` holds the CPU kernels'
conditionals, so the count does see them.
"""
import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

from unas_jax.nn import kernels as kernels_lib
from unas_jax.nn import ops
from unas_jax.utils import lowering

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _config(name, arg):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _darts_search(**model):
  config = _config("darts_cifar10", "quick")
  config.data.image_size = 8
  config.batch_size = 4
  config.model.update(cells=3, channels=4, ops="unas7", **model)
  return config


def _proxyless_search(**model):
  """With the stages' repeated layers scanned (model.scan_layers; the lagrangian job unrolls them)."""
  config = _config("proxyless_latency", "quick")
  config.batch_size = 2
  config.model.update(**{"widths": "8,8,8,8,8,8,8,8,16", "scan_layers": True, **model})
  config.latency.batch_size = 2
  return config


def _proxyless_lagrangian_search(**model):
  """The same with the multiplier in the search state (its dual ascent runs inside the step)."""
  config = _proxyless_search(**{"scan_layers": False, **model})
  config.latency.penalty = "lagrangian"
  return config


def _evaluate(**model):
  config = _config("darts_cifar10_eval", "quick")
  config.data.image_size = 32  # the auxiliary head needs 8x8 at 2/3 depth
  config.batch_size = 2
  # 11 cells: cells 5-6 and 9-10 repeat, so the scanned cells (model.scan_cells) are lowered too.
  config.model.update(**{"channels": 4, "num_cells": 11, "scan_cells": True, **model})
  return config


def _counts(config, platforms):
  """``{(step, platform): counts}``; each step traced once, lowered per platform."""
  out = {}
  for name, (step, args) in lowering.job_steps(config).items():
    traced = lowering.trace(step, args, kernels_lib.for_platform(platforms[0]))
    for platform in platforms:
      out[name, platform] = lowering.count_ops(lowering.lower(traced, None, platform).as_text())
  return out


def _darts_search_remat(**model):
  """model.remat=cell_inputs: the checkpointed cells' recomputation lowers without conditionals too."""
  return _darts_search(**{"remat": "cell_inputs", **model})


JOBS = {"darts_search": _darts_search, "darts_search_remat": _darts_search_remat, "proxyless_search": _proxyless_search,
        "proxyless_lagrangian_search": _proxyless_lagrangian_search, "evaluate": _evaluate}
EXPECTED_STEPS = {"darts_search": {"search", "warmup", "eval"}, "darts_search_remat": {"search", "warmup", "eval"},
                  "proxyless_search": {"search", "warmup", "eval", "probe"},
                  "proxyless_lagrangian_search": {"search", "warmup", "eval", "probe"},
                  "evaluate": {"train", "eval"}}


# The ProxylessNAS search (probe included) takes 1-1.5 minutes to lower: CI's slow pass.
def _jobs(names):
  return [pytest.param(j, marks=pytest.mark.slow) if j.startswith("proxyless") else j for j in names]


@pytest.mark.parametrize("job", _jobs(sorted(JOBS)))
def test_accelerator_lowerings_have_no_conditionals_callbacks_or_float64(job):
  counts = _counts(JOBS[job](), ("cuda", "tpu"))
  assert {name for name, _ in counts} == EXPECTED_STEPS[job]
  for (name, platform), c in counts.items():
    where = f"{job}/{name} for {platform}: {c}"
    assert c["total_ops"] > 100, where  # the count read a real program
    assert c["conditionals"] == 0, where
    assert c["host_callbacks"] == 0, where
    assert c["float64_ops"] == 0, where
    assert sum(c["convolutions"].values()) > 0, where
    if job == "darts_search_remat" and name in ("search", "warmup"):
      assert c["optimization_barriers"] > 0, where  # the checkpointed cells are in the backward pass
    # lax.scan over repeated cells / stage layers: a while loop of static trip count, which
    # XLA:GPU runs without reading its predicate back to the host (WhileThunk's trip_count).
    if job == "evaluate" or (job == "proxyless_search" and name != "probe"):
      assert c["while_loops"] > 0, where


@pytest.mark.slow  # a second lowering of the DARTS search step (about a minute)
def test_cpu_lowering_keeps_the_cpu_kernels():
  """Negative control: the CPU kernels' fusion barriers are conditionals in the cpu lowering."""
  step, args = lowering.job_steps(_darts_search(), probe=False)["search"]
  cpu = lowering.count_ops(lowering.lower(step, args, "cpu").as_text())
  assert cpu["conditionals"] > 0, cpu


@pytest.mark.parametrize("kernels,barriers", [("cpu", True), ("xla", False)])
def test_the_kernels_not_the_platform_decide(kernels, barriers):
  """The same ops lowered for cpu: conditionals with the cpu kernels only (a fresh jit per choice)."""
  def loss(x, k_dw, k_pw):
    y = ops.depthwise_conv(x, k_dw) + ops.max_pool(x) + ops.avg_pool(x)
    return jnp.sum(ops.pointwise_conv(y, k_pw) ** 2)
  args = (jnp.ones((2, 8, 8, 8)), jnp.ones((3, 3, 1, 8)), jnp.ones((2, 4, 4)))
  step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  c = lowering.count_ops(lowering.lower(step, args, "cpu", kernels=kernels).as_text())
  assert (c["conditionals"] > 0) == barriers, c


@pytest.mark.parametrize("job", _jobs(["darts_search", "proxyless_search", "evaluate"]))
def test_bfloat16_lowers_to_bfloat16_convolutions(job):
  """model.dtype=bfloat16: every convolution of every step runs in bf16 on the accelerator."""
  config = JOBS[job](dtype="bfloat16")
  if job == "proxyless_search":
    config.latency.dtype = "bfloat16"
  counts = _counts(config, ("cuda",))
  for (name, _), c in counts.items():
    assert set(c["convolutions"]) == {"bf16"} and c["convolutions"]["bf16"] > 0, (name, c)
    assert c["float64_ops"] == 0 and c["conditionals"] == 0, (name, c)


def test_count_ops_reads_the_text():
  text = "\n".join([
      '    %0 = stablehlo.convolution(%a, %b) dim_numbers = [b, 0, 1, f] : (tensor<2x8x8x3xbf16>, '
      'tensor<3x3x3x4xbf16>) -> tensor<2x8x8x4xbf16>',
      '    %1 = "stablehlo.case"(%p) ({',
      '    %2 = stablehlo.custom_call @xla_ffi_python_gpu_callback(%x) : (tensor<f32>) -> tensor<f32>',
      '    %3 = stablehlo.convert %x : (tensor<f32>) -> tensor<f64>',
      '    %4:2 = stablehlo.while(%i = %c) : tensor<i32>',
      '    %5:2 = stablehlo.optimization_barrier %a, %g : tensor<4xf32>, tensor<4xf32>',
      '    stablehlo.return %y : tensor<f32>',
  ])
  c = lowering.count_ops(text)
  assert c == {"conditionals": 1, "while_loops": 1, "optimization_barriers": 1, "host_callbacks": 1,
               "custom_calls": {"xla_ffi_python_gpu_callback": 1}, "float64_ops": 1,
               "convolutions": {"bf16": 1}, "total_ops": 6}
