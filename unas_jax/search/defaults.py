"""Default config blocks shared by the search configs (UNAS defaults, docs/design.md section 6)."""
from __future__ import annotations

import ml_collections

from unas_jax import data as data_lib


def search_block() -> ml_collections.ConfigDict:
  """``config.search``: estimator, objective, schedules (UNAS CIFAR defaults)."""
  return ml_collections.ConfigDict({
      "estimator": "rebar",          # reinforce | gumbel_softmax | rebar
      "objective": "gen",            # train | val | gen
      "gen_lambda": 0.5,
      "tau": 0.4,
      "eta": 1.0,                    # REBAR's control-variate scale (UNAS: fixed 1)
      "learn_eta": False,            # REBAR's remedy: descend the estimator's variance in eta
      "eta_lr": 1e-3,                # learn_eta: Adam's learning rate on eta (one scalar, noisy
                                     # gradient d||g_hat||^2/d eta: small steps average it)
      "eps": 0.0,                    # softening log(softmax(phi) + eps); 0.08 on ImageNet
      "sampling": "per_example",     # per_example | per_device | shared
      "pairing_weight": 0.2,         # DARTS space only
      "baseline": "moving_average",  # REINFORCE: none | constant | moving_average | leave_one_out
      "baseline_decay": 0.99,
      "baseline_value": 0.0,         # baseline=constant: its value b
      "bn": "local",                 # BatchNorm statistics: local (per device, as the reference) | sync
      "epochs": 85,
      "init_epochs": 15,             # w-only warm-up epochs
      "max_steps": 0,                # >0: stop after this many steps (overrides epochs for schedules)
      "stop_at_step": -1,            # >=0: save and stop there, as if interrupted (tests)
      "w_lr": 3e-4,
      "scale_w_lr_by_batch": True,   # w_lr * global_batch / 64
      "w_lr_min": 1e-4,
      "w_weight_decay": 3e-4,
      "w_grad_clip": 5.0,
      "phi_lr": 1e-3,
      "phi_lr_min": 3e-4,
      "phi_weight_decay": 1e-6,
      "phi_beta1": 0.9,
      "phi_beta2": 0.999,
      "phi_init_scale": 1e-3,
      "w_gradient": "own_forward",   # own_forward | relaxed_forward (REBAR/GSM: w's gradient from the
                                     # estimator's relaxed forward; README "Start-up time, step speed and memory")
      "random_archs": 8,             # at the end: search-val accuracy of this many uniformly random
                                     # architectures under the final weights (0: skip)
  })


def latency_block() -> ml_collections.ConfigDict:
  """``config.latency``: the latency term of the search objective (docs/design.md section 3), off.

  The keys every latency source shares; a space's config adds its source's own
  (``source`` and what that source reads). Without this block a search has no
  latency term, and ``loop.step_config`` takes the term's settings from here.
  """
  return ml_collections.ConfigDict({
      "enabled": False,
      "estimator": "relax",          # relax | reinforce | surrogate_gumbel (FBNet-style, biased)
      "target_ms": 0.0,              # the latency budget (set it for the device); > 0 when enabled
      # hinge: c_t * relu(lat - target) | linear: c_t * lat | lagrangian: lambda * relu(lat - target) / target,
      # with lat(constraint) <= ratio * target held by a multiplier lambda >= 0 the search adjusts itself
      # (dual ascent: lambda <- max(0, lambda + lambda_lr * (lat / (ratio * target) - 1))).
      # The lagrangian defaults below were chosen in simulation (experiments/simulate_lagrangian.py,
      # experiments/results/latency_lagrangian/): with selection=constrained_mode they kept the found
      # architecture within 0.85-1.0 of the target at 4 targets, 2 seeds, with and without an
      # accuracy pull; not yet measured on real searches.
      "penalty": "hinge",
      "c": 0.1,                      # hinge / linear only
      "warmup_steps": 0,             # hinge / linear: c_t rises linearly from 0 to c over these steps
      "lambda_init": 0.0,            # lagrangian: the multiplier's start
      "lambda_lr": 0.1,              # lagrangian: its step size (scale-free: per unit of lat / target - 1)
      "damping": 10.0,               # lagrangian: proportional term, coefficient max(0, lambda + damping * last violation)
      "ratio": 1.0,                  # lagrangian: lat(constraint) is held to this fraction of the target (margin)
      "constraint": "mode",          # lagrangian: mode (surrogate's latency of p_phi's mode) | expected (its E_p_phi[lat]) | measured (mean of the samples)
      "lagrangian_term": "hinge",    # lagrangian: lambda * relu(lat - target) / target (hinge) | lambda * lat / target (linear)
      # The found architecture (hinge / lagrangian): the mode of p_phi, or (constrained_mode) the
      # most probable architecture under p_phi whose surrogate latency lies in
      # [min_ratio * target_ms, target_ms] (the mode when it does). min_ratio: a target is a
      # budget; a mode far under it (the multiplier back at 0, an accuracy term that no longer
      # pulls) gives away what the budget allowed. 0: only the target is enforced.
      "selection": "constrained_mode",
      "min_ratio": 0.9,
      # constrained_mode: measure the selected architecture and, outside the band, solve again
      # with the surrogate shifted by its error there, at most this many measurements (0: judge
      # by the surrogate alone). A fitted surrogate's error can be as wide as the band (CPU probe:
      # held-out MAE about half of it); a table source measures exactly, so one round fixes its fit's bias.
      "verify_rounds": 4,
      "ridge_lambda": 1.0,           # the latency surrogate (RELAX's control): ridge penalty of its fit ...
      "surrogate_seed": 0,           # ... and the seed of its train/held-out split
      "reserve_device": False,       # True: each process keeps its last local device out of the mesh and times on it
  })


def base_config(job: str, name: str, dataset: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.job = job
  config.name = name
  config.seed = 0
  config.batch_size = 128            # global; UNAS: 32 per GPU on 4 GPUs
  config.data = data_lib.default_config(dataset)
  config.mesh = ml_collections.ConfigDict({"num_devices": 0})  # 0: every device of every host
  config.search = search_block()
  config.log_every = 10
  config.checkpoint_every = 200
  config.eval_every = 0              # >0: also evaluate the mode architecture every N steps (else each epoch)
  return config
