r"""Lowers every compiled step of a config's job for a platform, without its device; counts what is in them.

    python experiments/lower_for.py --platform=cuda --config=configs/darts_cifar10.py:quick
    python experiments/lower_for.py --platform=tpu --config=configs/proxyless_latency.py:quick
    python experiments/lower_for.py --platform=cuda --config=configs/darts_cifar10_eval.py --config.model.dtype=bfloat16
    python experiments/lower_for.py --platform=cpu --config=configs/darts_cifar10.py:quick   # the CPU kernels

Nothing is compiled or run: the steps are built by the job's own setup with abstract
state (``unas_jax.utils.lowering.job_steps``) and lowered with
``jit(step).trace(*args).lower(lowering_platforms=(platform,))`` under the platform's
kernels (``--kernels`` overrides: ``cpu`` | ``xla``). One JSON line per step: conditionals
(``stablehlo.case``/``if``), while loops, host callbacks, custom calls by target, ops that
touch float64, convolutions by element type, total ops (static counts in the module text).
``--dump_dir`` also writes each module's text.
"""
import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from unas_jax.errors import UnasError
from unas_jax.utils import lowering

_CONFIG = config_flags.DEFINE_config_file("config", "configs/darts_cifar10.py:quick", "experiment config")
_PLATFORM = flags.DEFINE_enum("platform", "cuda", list(lowering.PLATFORMS), "platform to lower for")
_KERNELS = flags.DEFINE_enum("kernels", None, ["cpu", "xla"], "kernels (default: cpu for cpu, xla otherwise)")
_DUMP = flags.DEFINE_string("dump_dir", None, "also write each lowered module's StableHLO text here")


def main(argv):
  del argv
  config = _CONFIG.value
  try:
    steps = lowering.job_steps(config)
  except UnasError as e:
    print(f"lower_for: error: {e}", file=sys.stderr)
    sys.exit(2)
  for name, (step, args) in steps.items():
    t0 = time.perf_counter()
    text = lowering.lower(step, args, _PLATFORM.value, _KERNELS.value).as_text()
    row = {"job": config.job, "step": name, "platform": _PLATFORM.value,
           "kernels": _KERNELS.value or lowering.kernels_lib.for_platform(_PLATFORM.value),
           **lowering.count_ops(text), "lower_s": round(time.perf_counter() - t0, 2)}
    print(json.dumps(row), flush=True)
    if _DUMP.value:
      os.makedirs(_DUMP.value, exist_ok=True)
      with open(os.path.join(_DUMP.value, f"{config.job}_{name}_{_PLATFORM.value}.mlir"), "w") as f:
        f.write(text)


if __name__ == "__main__":
  app.run(main)
