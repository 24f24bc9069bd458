r"""The lagrangian latency multiplier on the phone table with a synthetic accuracy gradient.

    PYTHONPATH=. python experiments/simulate_lagrangian.py --out=sim.json

A cheap stand-in for ``proxyless_latency.py:quick_lut`` used to choose the multiplier's
defaults (a real search costs about an hour on the shared 2-core machine): phi of the
ProxylessNAS space, Adam with the ``:quick_lut`` schedule (0.1 cosine to 0.03), 16
architectures a step priced exactly by the phone table, the latency term through RELAX
(the table as its own control, as the fitted surrogate is within 0.1 ms of it), and in
place of REBAR on the supernet's loss a synthetic accuracy gradient: Gaussian noise of
norm ``--noise`` (the c = 0 search logged phi-gradient norms of 3-10) plus a pull of
strength ``--pull`` towards one fixed random architecture (the c = 0 search's entropy fell
from 38.7 to 25 nats: the accuracy term concentrates phi). Not a measurement of the
search: a model of its latency dynamics, reported as such.
"""
from __future__ import annotations

import argparse
import itertools
import json

import jax
import numpy as np
import jax.numpy as jnp
import optax

from unas_jax import estimators as est
from unas_jax.latency import hooks
from unas_jax.latency import lut as lut_lib
from unas_jax.latency import tables
from unas_jax.objectives import losses
from unas_jax.spaces import proxyless as space


_STEPS = {}
LAMBDA_FLOOR = 0.01   # the multiplicative update's smallest (and initial) multiplier


def _step_fn(table, constraint, term, steps, samples):
  """The jitted simulation step; everything but the structure is an argument (one compile per setting kind)."""
  cache_key = (id(table), constraint, term, steps, samples)
  if cache_key in _STEPS:
    return _STEPS[cache_key]
  bias = jnp.float32(table.bias)
  rows = {k: jnp.asarray(v, jnp.float32) for k, v in table.table.items()}

  def latency(arch):  # exact: the table is additive
    return bias + sum(jnp.sum(arch[k] * rows[k], -1) for k in rows)

  tx = optax.adam(optax.cosine_decay_schedule(0.1, steps, alpha=0.3))

  @jax.jit
  def step(phi, opt, lam, last_v, t, key, favourite, target, ratio, lambda_lr, damping, noise, pull, multiplicative):
    k = jax.random.fold_in(key, t)
    keys = est.per_sample_keys(jax.random.fold_in(k, 0), jnp.arange(samples))
    z = est.discrete(keys, phi, (samples,))
    lat = latency(z)
    coef = losses.damped_multiplier(lam, last_v, damping)

    def penalty(ms):  # the step's lagrangian term (latency.lagrangian_term)
      return losses.latency_penalty(ms, coef, target, kind="lagrangian", lagrangian_term=term)
    grads = est.relax(phi, keys, penalty(lat), lambda a: penalty(latency(a)), sample_shape=(samples,)).grads
    probs = est.probabilities(phi)
    leaves = sorted(phi)
    size = sum(phi[n].size for n in leaves)
    noise_keys = dict(zip(leaves, jax.random.split(jax.random.fold_in(k, 1), len(leaves))))
    for n in leaves:
      # d/dphi of -pull * log p(favourite) = pull * (p - onehot), plus noise of total norm `noise`.
      g = pull * (probs[n] - jax.nn.one_hot(favourite[n], phi[n].shape[-1]))
      g = g + noise / jnp.sqrt(size) * jax.random.normal(noise_keys[n], phi[n].shape)
      grads[n] = grads[n] + g
    updates, opt = tx.update(grads, opt, phi)
    phi = optax.apply_updates(phi, updates)
    expected = latency({n: p[None] for n, p in probs.items()})[0]
    mode = latency({n: m[None] for n, m in est.mode(phi).items()})[0]
    seen = {"expected": expected, "measured": jnp.mean(lat), "mode": mode}[constraint]
    v = losses.violation(seen, target, ratio)
    # additive: projected dual ascent; multiplicative: lambda <- clip(lambda exp(lr v), floor, 1e4),
    # geometric in both directions, so the multiplier reaches any scale the accuracy gradient
    # needs in log time and lets go as fast once the constraint holds.
    new_lam = jnp.where(multiplicative, jnp.clip(lam * jnp.exp(lambda_lr * v), LAMBDA_FLOOR, 1e4),
                        losses.dual_ascent(lam, seen, target, lambda_lr, ratio))
    return phi, opt, new_lam, v, expected, mode

  _STEPS[cache_key] = step, tx
  return step, tx


def simulate(table, target, *, constraint, ratio, lambda_lr, damping, noise, pull, steps, seed, samples=16,
             term="linear", update="add"):
  step, tx = _step_fn(table, constraint, term, steps, samples)
  key = jax.random.key(seed)
  phi = space.init_phi(jax.random.fold_in(key, 1), scale=1e-3)
  favourite = {k: jax.random.randint(jax.random.fold_in(key, i + 7), (), 0, v.shape[-1])
               for i, (k, v) in enumerate(sorted(phi.items()))}
  settings = [jnp.float32(v) for v in (target, ratio, lambda_lr, damping, noise, pull)] + [jnp.bool_(update == "mul")]
  opt = tx.init(phi)
  lam, last_v = jnp.float32(LAMBDA_FLOOR if update == "mul" else 0.0), jnp.float32(0.0)
  trace = []
  for t in range(steps):
    phi, opt, lam, last_v, expected, mode = step(phi, opt, lam, last_v, t, key, favourite, *settings)
    if t % 20 == 0 or t == steps - 1:
      trace.append([t, float(expected), float(mode), float(lam)])
  # latency.selection=constrained_mode at min_ratio 0 (as it was when these sweeps ran): the most probable
  # architecture the (exact) table prices under the target.
  costs = {n: np.asarray(v, np.float64) for n, v in table.table.items()}
  found = hooks.constrained_mode(phi, costs, float(table.bias), target)
  fitted = None if found is None else found[1]
  return {"mode_ratio": float(mode) / target, "expected_ratio": float(expected) / target,
          "constrained_mode_ratio": None if fitted is None else fitted / target, "trace": trace}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--targets", default="40,50,60,80")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--noise", default="3,8")
  parser.add_argument("--pull", default="0.5", help="comma-separated accuracy pulls")
  parser.add_argument("--settings", default="expected:0.95:0.1:3,expected:1.0:0.1:3,mode:0.95:0.1:3",
                      help="constraint:ratio:lambda_lr:damping[:term[:update]],... (term: latency.lagrangian_term, "
                           "linear by default; update: add (dual ascent, default) or mul (multiplicative))")
  args = parser.parse_args()
  table = lut_lib.LatencyLUT.from_yaml(tables.resolve(tables.MOBILE_TABLE)).additive("mobile", 224)
  rows = []
  for pull, setting, target, noise, seed in itertools.product([float(p) for p in args.pull.split(",")],
                                                             args.settings.split(","),
                                                       [float(t) for t in args.targets.split(",")],
                                                       [float(n) for n in args.noise.split(",")],
                                                       [int(s) for s in args.seeds.split(",")]):
    constraint, ratio, lr, damping, *rest = setting.split(":")
    term, update = (rest + ["linear", "add"][len(rest):])[:2]
    r = simulate(table, target, constraint=constraint, ratio=float(ratio), lambda_lr=float(lr),
                 damping=float(damping), noise=noise, pull=pull, steps=args.steps, seed=seed,
                 term=term, update=update)
    rows.append({"setting": setting, "pull": pull, "target": target, "noise": noise, "seed": seed, **r})
    fitted = r["constrained_mode_ratio"]
    print(f"{setting:28s} pull {pull:3.1f} target {target:4.0f} noise {noise:3.0f} seed {seed}: "
          f"mode/target {r['mode_ratio']:.3f} constrained mode/target "
          f"{'-' if fitted is None else format(fitted, '.3f')} E/target {r['expected_ratio']:.3f} "
          f"final lambda {r['trace'][-1][3]:.2f}", flush=True)
  if args.out:
    json.dump(rows, open(args.out, "w"), indent=1)


if __name__ == "__main__":
  main()
