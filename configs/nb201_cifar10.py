"""NAS-Bench-201 cell search on cifar10 (job ``nb201_search``).

    python -m unas_jax.main --config=configs/nb201_cifar10.py --workdir=workdirs/nb201 \
        --config.benchmark.table=/path/to/nb201_accuracy.csv
    python -m unas_jax.main --config=configs/nb201_cifar10.py:quick --workdir=workdirs/nb201_quick \
        --config.data.npz_path=/path/to/cifar10_subset.npz      # CPU proxy, a few minutes
    python -m unas_jax.main --config=configs/nb201_cifar10.py:quick_digits   # zero download

The full variant is the benchmark's network (C=16, N=5 cells per stage, tfds
cifar10 at 32x32, batch 64 as the benchmark's weight-sharing searches) with
UNAS's search defaults (REBAR, L_gen, per-example architectures, 85 epochs of
which 15 w-only). ``benchmark.table`` (a CSV ``arch,cifar10,cifar100,imagenet16_120``)
turns on the benchmark look-up of the found cell and of the mode cell at every
evaluation. ``latency.enabled=True`` with ``latency.table_path`` (CSV ``arch,ms``)
adds the RELAX latency term priced by that table.
"""
import ml_collections

from unas_jax.search import defaults


def get_config(arg=None):
  config = defaults.base_config("nb201_search", "nb201_cifar10", "cifar10")
  config.batch_size = 64
  config.model = ml_collections.ConfigDict({
      "channels": 16,          # C (the benchmark's)
      "cells_per_stage": 5,    # N (the benchmark's)
  })
  config.search.pairing_weight = 0.0  # the DARTS space's penalty; an NB201 edge has one op
  config.benchmark = ml_collections.ConfigDict({"table": ""})
  config.latency = defaults.latency_block()
  config.latency.update({
      "source": "table",       # table: a CSV of NB201 string -> ms (HW-NAS-Bench / HELP style)
      "table_path": "",
      "test_fraction": 0.2,    # share of the table's cells held out to report the surrogate's error
  })
  if arg in (None, ""):
    return config
  if arg not in ("quick", "quick_digits"):
    raise ValueError(f"unknown config variant {arg!r}; use ':quick', ':quick_digits' or nothing")
  # CPU proxy: N=1, C=8, 16x16 images, a few hundred steps at batch 16.
  config.name = f"nb201_cifar10_{arg}"
  if arg == "quick":
    config.data = defaults.data_lib.default_config("npz")  # data.npz_path is required (no default path)
  else:
    config.data = defaults.data_lib.default_config("digits")
  config.data.image_size = 16
  config.batch_size = 16
  config.model.channels = 8
  config.model.cells_per_stage = 1
  # epochs as floats: the w-only warm-up is a fraction of an epoch here (0.15 epoch of the
  # CIFAR-10 subset's 9,000 search-train images at batch 16 = 84 steps; UNAS: 15 of 85 epochs).
  config.search = ml_collections.ConfigDict(dict(config.search.to_dict(), epochs=1.0, init_epochs=0.15))
  s = config.search
  s.max_steps = 400            # total steps (w-only warm-up included); the schedules follow it
  # As darts :quick: 10x UNAS's learning rates so a few hundred steps move w and phi.
  s.w_lr = 3e-3
  s.w_lr_min = 3e-4
  s.phi_lr = 1e-2
  s.phi_lr_min = 3e-3
  config.log_every = 10
  config.eval_every = 50
  config.checkpoint_every = 100
  return config
