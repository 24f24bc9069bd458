"""Latency-aware search in the ProxylessNAS space: REBAR on accuracy + RELAX on measured latency.

    python -m unas_jax.main --config=configs/proxyless_latency.py --workdir=workdirs/proxyless
    python -m unas_jax.main --config=configs/proxyless_latency.py:quick     # zero-download, CPU minutes
    python -m unas_jax.main --config=configs/proxyless_latency.py:lut       # phone latency table (mobile widths)
    python -m unas_jax.main --config=configs/proxyless_latency.py:quick_lut # digits + the phone table (no timing noise)

The full variant searches on ImageNet (tfds ``imagenet2012``, prepared in
``--config.data.data_dir``) at 224x224 and measures the latency of every sampled
network on this device at batch 32 (docs/design.md section 8). ``latency.target_ms``
is the hinge target: set it for your device. ``--config.latency.penalty=lagrangian``
needs no coefficient: the search adjusts a multiplier until the expected latency
meets the target (README: "Latency targets without tuning a coefficient").
"""
import ml_collections

from unas_jax.latency import tables
from unas_jax.search import defaults


def get_config(arg=None):
  config = defaults.base_config("proxyless_search", "proxyless_latency", "imagenet2012")
  config.data.image_size = 224
  config.batch_size = 64
  config.model = ml_collections.ConfigDict({
      "widths": "gpu",            # gpu (UNAS: 40-24-32-56-112-128-256-432-1728) | mobile | "9,comma,separated,ints"
      "zero_dropout": 0.1,        # dropout on the zero (skip) choice, as the reference
      "bn_affine": True,          # the reference ProxylessNAS-space supernet keeps affine BatchNorm
      "depthwise_impl": "auto",
      "kernels": "auto",          # auto (CPU kernels on the CPU backend, plain XLA ops elsewhere) | cpu | xla
      "dtype": "float32",         # compute dtype: float32 | bfloat16 | float16 (phi, w, BN stats stay float32)
      "remat": "none",            # none | layer (keep conv outputs) | layer_inputs: jax.checkpoint each mixed layer
      "scan_layers": False,       # True: each stage's layers 2-4 as one lax.scan (CPU: compile -29%, steps 2x slower)
  })
  s = config.search
  s.estimator = "rebar"
  s.objective = "gen"
  s.sampling = "per_device"       # one architecture per device: one latency measurement each
  s.eps = 0.08                    # ImageNet softening (docs/design.md section 4)
  s.pairing_weight = 0.0
  s.epochs = 60
  s.init_epochs = 10
  config.latency = defaults.latency_block()
  config.latency.update({
      "enabled": True,
      "source": "probe",          # probe (time compiled subnetworks on this device) | lut (YAML table) |
                                  # blocks (a table of blocks timed on this device, calibrated by whole networks)
      "target_ms": 10.0,          # hinge target
      "warmup_steps": 2000,
      "batch_size": 32,           # latency is measured at this batch size ...
      "resolution": 224,          # ... and resolution
      "dtype": "",                # "": the compute dtype, model.dtype (float32 unless set)
      "num_runs": 10,             # median of 10 timed runs (docs/design.md section 8)
      "num_warmup": 2,
      "statistic": "median",      # median | min (min is steadier on a loaded shared CPU)
      "compile_threads": 0,       # background compiles at once (0: one per CPU core; timing never overlaps them)
      "rounds": 3,                # surrogate measurements: interleaved, shuffled timing rounds
      "chunk_size": 16,
      "surrogate_archs": 10000,   # random architectures measured to fit the surrogate (paper: ~10k)
      "blocks_calibration_archs": 10,  # source=blocks: whole networks timed to fit the table's scale ...
      "blocks_test_archs": 20,         # ... and to report its held-out error (MAPE, Kendall tau)
      "refit_every": 0,           # >0: refit the surrogate from the search's measurements every N steps
      "lut_path": "",             # source=lut: a ProxylessNAS-format latency YAML, or builtin:<name> (tables.py)
      "lut_num_classes": 1000,
      "widths": "",               # source=lut: widths of the deployed network the table prices ("": model.widths)
  })
  if arg in (None, ""):
    return config
  if arg == "lut":
    config.name = "proxyless_latency_lut"
    config.model.widths = "mobile"
    config.latency.source = "lut"
    config.latency.lut_path = tables.MOBILE_TABLE
    config.latency.target_ms = 60.0
    return config
  if arg not in ("quick", "quick_lut"):
    raise ValueError(f"unknown config variant {arg!r}; use ':quick', ':quick_lut', ':lut' or nothing")
  # Zero-download: digits at 32x32, a narrow network, latency on this CPU at batch 16.
  config.name = "proxyless_latency_quick"
  config.data = defaults.data_lib.default_config("digits")
  config.data.image_size = 32
  config.batch_size = 16
  config.model.widths = "16,8,16,16,24,32,48,64,128"
  s.eps = 0.0
  s.epochs = 2
  s.init_epochs = 0
  s.max_steps = 120
  s.phi_lr = 3e-2                 # a short search: let phi move
  s.w_lr = 3e-3                   # ... and w (the UNAS 3e-4 leaves w at chance for 120 steps)
  s.w_lr_min = 3e-4
  s.phi_lr_min = 1e-2
  config.latency.batch_size = 16
  config.latency.resolution = 32
  config.latency.statistic = "min"   # a laptop CPU is noisy: the minimum is the steadier figure
  # 147 one-hot features: fewer than ~100 measurements over-fit (held-out R^2 < 0 with 40).
  config.latency.surrogate_archs = 100
  config.latency.warmup_steps = 20
  # Random architectures of this network take 2-3.5 ms on a 2-core CPU (all-zero 1.5 ms);
  # per-layer choices differ by ~0.05 ms, so c is large: at c = 1 per ms the accuracy
  # gradient's noise dominated and 200 steps did not move the expected latency (2.61 ->
  # 2.58 ms); c = 30 took the found architecture to 1.46 ms against a 2 ms target.
  config.latency.target_ms = 2.0
  config.latency.c = 30.0
  config.log_every = 10
  config.checkpoint_every = 60
  if arg == "quick_lut":
    # Accuracy from the narrow supernet on digits, latency from the phone table for the
    # same per-layer choices in the mobile-width network at 224x224 (deterministic).
    config.name = "proxyless_latency_quick_lut"
    config.latency.source = "lut"
    config.latency.lut_path = tables.MOBILE_TABLE
    config.latency.widths = "mobile"
    config.latency.resolution = 224
    config.latency.surrogate_archs = 1000   # table look-ups are free
    config.latency.target_ms = 50.0
    # 5 nats of loss per 10 ms over the target: at c = 0.05 the expected latency fell only
    # 114 -> 92 ms in 120 steps; at 0.5 the found architecture met 50 ms (33.1 ms) while
    # the c = 0 search ended at 105.8 ms (experiments/results/latency_lut_search).
    config.latency.c = 0.5
    # Look-ups cost nothing: one architecture (and latency) per example, not one per
    # device, so RELAX averages 16 latency samples a step (measured: with one, 120 steps
    # moved the expected latency only from 114 to 109 ms against a 45 ms target).
    s.sampling = "per_example"
    s.phi_lr = 0.1
    s.phi_lr_min = 3e-2
  return config
