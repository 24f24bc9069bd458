"""Bias and variance of every estimator on the toy problems, as a table and a plot.

Run as ``python experiments/estimator_variance.py`` or as the ``estimator_benchmark``
job (``configs/estimator_benchmark.py``). For each problem and estimator it draws
``num_samples`` independent single-sample estimates, reports the largest
Bonferroni z-score against the exact gradient (|z| above the threshold means a
detected bias) and the per-coordinate variance relative to REINFORCE without a
baseline (median and mean over coordinates; below 1 is better).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from unas_jax import estimators as est
from unas_jax.estimators import toy


@dataclasses.dataclass
class Row:
  problem: str
  estimator: str
  max_abs_z: float
  threshold: float
  biased: bool
  variance_ratio_median: float
  variance_ratio_mean: float
  note: str = ""


def learn_eta(problem: toy.ToyProblem, tau: float, steps: int, key: jax.Array, batch: int = 64,
              learning_rate: float = 0.05) -> float:
  """REBAR's remedy: descend ``d||g||^2 / d eta`` (an unbiased variance gradient) with Adam."""
  tx = optax.adam(learning_rate)
  eta = jnp.asarray(1.0, jnp.float64)
  opt_state = tx.init(eta)

  @jax.jit
  def step(eta, opt_state, key):
    keys = jax.random.split(key, batch)
    d_eta = jnp.mean(jax.vmap(lambda k: est.rebar(problem.phi, k, problem.loss_fn, eta=eta, tau=tau).eta_grad)(keys))
    updates, opt_state = tx.update(d_eta, opt_state)
    return optax.apply_updates(eta, updates), opt_state

  for k in jax.random.split(key, steps):
    eta, opt_state = step(eta, opt_state, k)
  return float(eta)


def estimators_for(problem: toy.ToyProblem, tau: float, eta_learned: float) -> dict[str, Callable]:
  def measured(p, k):
    return problem.measured_fn(est.discrete(k, est.soften(p), (1,)))
  mean_loss = float(toy.exact_expectation(problem.phi, problem.measured_fn))
  return {
      "reinforce": lambda p, k: est.reinforce(p, k, measured(p, k)).grads,
      "reinforce+exact-mean baseline": lambda p, k: est.reinforce(
          p, k, measured(p, k), baseline=est.constant_baseline(mean_loss)).grads,
      f"gumbel_softmax(tau={tau})": lambda p, k: est.gumbel_softmax(p, k, problem.loss_fn, tau=tau).grads,
      f"rebar(eta=1,tau={tau})": lambda p, k: est.rebar(p, k, problem.loss_fn, tau=tau).grads,
      f"rebar(eta={eta_learned:.2f} learned,tau={tau})": lambda p, k: est.rebar(
          p, k, problem.loss_fn, eta=eta_learned, tau=tau).grads,
      f"relax(linear g,tau={tau})": lambda p, k: est.relax(p, k, measured(p, k), problem.control_fn, tau=tau).grads,
  }


def run_report(num_samples: int = 100_000, alpha: float = 1e-4, eta_steps: int = 300,
               seed: int = 0, out_dir: str | None = None, max_cases: int = 0) -> list[Row]:
  """Computes the table; writes ``estimator_variance.{json,png}`` to ``out_dir`` if given.

  ``max_cases > 0`` keeps only the first problems (a quick look).
  """
  rows = []
  with jax.enable_x64(True):
    cases = [
        (toy.smooth_problem(), 0.4),
        (toy.smooth_problem(sharpness=4.0), 0.4),
        (toy.smooth_problem(), 0.1),
        (toy.table_problem(), 0.4),
        (toy.table_problem(interaction=3.0), 0.4),
    ]
    for problem, tau in cases[:max_cases or None]:
      start = time.time()
      exact = toy.exact_gradient(problem.phi, problem.loss_fn)
      eta = learn_eta(problem, tau, eta_steps, jax.random.key(seed + 1))
      reference_variance = None
      for name, fn in estimators_for(problem, tau, eta).items():
        estimates = toy.per_sample_estimates(fn, problem.phi, jax.random.key(seed), num_samples)
        result = toy.bias_test(estimates, exact, alpha)
        if reference_variance is None:
          reference_variance = result.variance
        ratio = result.variance / np.maximum(reference_variance, 1e-300)
        rows.append(Row(f"{problem.name},tau={tau}", name, result.max_abs_z, result.threshold, result.biased,
                        float(np.median(ratio)), float(np.mean(ratio))))
      print(f"  {problem.name} tau={tau}: {time.time() - start:.1f}s", flush=True)
  if out_dir is not None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "estimator_variance.json"), "w") as f:
      json.dump([dataclasses.asdict(r) for r in rows], f, indent=1)
    plot(rows, os.path.join(out_dir, "estimator_variance.png"))
  return rows


def format_table(rows: list[Row]) -> str:
  header = f"{'problem':34s} {'estimator':36s} {'max|z|':>8s} {'biased':>7s} {'var/RF med':>10s} {'var/RF mean':>11s}"
  lines = [header, "-" * len(header)]
  for r in rows:
    lines.append(f"{r.problem:34s} {r.estimator:36s} {r.max_abs_z:8.2f} {('YES' if r.biased else 'no'):>7s} "
                 f"{r.variance_ratio_median:10.3f} {r.variance_ratio_mean:11.3f}")
  if rows:
    lines.append(f"(bias: Bonferroni z-test, |z| > {rows[0].threshold:.2f} flags a bias at family-wise alpha)")
  return "\n".join(lines)


def plot(rows: list[Row], path: str) -> None:
  """Grouped bars: variance relative to REINFORCE (log scale), hatched where biased."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  problems = list(dict.fromkeys(r.problem for r in rows))
  fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 4.6), sharey=True)
  for ax, problem in zip(np.atleast_1d(axes), problems):
    sub = [r for r in rows if r.problem == problem]
    bars = ax.bar(range(len(sub)), [r.variance_ratio_median for r in sub],
                  color=["tab:red" if r.biased else "tab:blue" for r in sub])
    for bar, r in zip(bars, sub):
      if r.biased:
        bar.set_hatch("//")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(sub)))
    ax.set_xticklabels([r.estimator for r in sub], rotation=70, ha="right", fontsize=7)
    ax.set_title(problem, fontsize=8)
  np.atleast_1d(axes)[0].set_ylabel("median per-coordinate variance / REINFORCE")
  fig.suptitle("Estimator variance on toy problems (red, hatched: bias detected)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(config, workdir: str) -> None:
  """The ``estimator_benchmark`` job."""
  print(f"Estimator bias/variance on toy problems, {config.num_samples} samples each ...", flush=True)
  rows = run_report(config.num_samples, config.alpha, config.eta_steps, config.seed, workdir, config.max_cases)
  print(format_table(rows))
  print(f"Wrote {os.path.join(workdir, 'estimator_variance.png')} and estimator_variance.json")
