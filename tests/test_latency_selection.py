"""latency.selection=constrained_mode: the most probable architecture that meets the target
(and, with ``latency.min_ratio``, uses at least that fraction of it).

The Lagrangian relaxation's answer is checked against brute force over every architecture
of small random problems: it meets the target, and no architecture at most as slow is
more probable (the relaxation's sufficiency: z(mu) maximises log p - mu lat). The plain
mode, which misses the target there, is the negative control.
"""
import itertools

import numpy as np
import pytest

from unas_jax.latency import additive
from unas_jax.latency import hooks
from unas_jax.latency.additive import AdditiveLatency
from unas_jax.spaces import proxyless as sp


def _problem(seed, shapes=((4,), (3,), (2, 3))):
  rng = np.random.default_rng(seed)
  logits = {f"c{i}": rng.normal(0, 1.5, s).astype(np.float32) for i, s in enumerate(shapes)}
  costs = {n: rng.uniform(0.5, 5.0, np.shape(v)) for n, v in logits.items()}
  return logits, costs, 2.0


def _enumerate(logits, costs, bias):
  """(log p, latency, choice) of every architecture (each row of each leaf is a categorical)."""
  rows = [(n, r) for n in sorted(logits) for r in np.ndindex(np.shape(logits[n])[:-1])]
  logp = {n: logits[n] - np.log(np.exp(logits[n]).sum(-1, keepdims=True)) for n in logits}
  out = []
  for ks in itertools.product(*[range(np.shape(logits[n])[-1]) for n, _ in rows]):
    lp = sum(float(logp[n][r + (k,)]) for (n, r), k in zip(rows, ks))
    lat = bias + sum(float(costs[n][r + (k,)]) for (n, r), k in zip(rows, ks))
    out.append((lp, lat, ks))
  return rows, out


def _as_tuple(rows, choice):
  return tuple(int(np.asarray(choice[n])[r]) for n, r in rows)


@pytest.mark.parametrize("seed", range(6))
def test_constrained_mode_meets_the_target_and_nothing_as_fast_is_more_probable(seed):
  logits, costs, bias = _problem(seed)
  rows, archs = _enumerate(logits, costs, bias)
  lats = np.array([a[1] for a in archs])
  mode = max(archs, key=lambda a: a[0])
  target = float(lats.min() + 0.5 * (mode[1] - lats.min()))  # halfway between the fastest and the mode
  assert mode[1] > target  # negative control: the mode misses this target
  choice, latency = hooks.constrained_mode(logits, costs, bias, target)
  found = next(a for a in archs if a[2] == _as_tuple(rows, choice))
  assert found[1] == pytest.approx(latency) and latency <= target
  best_as_fast = max(a[0] for a in archs if a[1] <= latency + 1e-9)
  assert found[0] >= best_as_fast - 1e-6


def test_constrained_mode_uses_the_budget():
  """Not the trivial feasible answer: the fastest architecture meets every feasible target too."""
  slower_than_fastest, ratios = 0, []
  for seed in range(20):
    logits, costs, bias = _problem(seed)
    _, archs = _enumerate(logits, costs, bias)
    lats = np.array([a[1] for a in archs])
    mode = max(archs, key=lambda a: a[0])
    target = float(lats.min() + 0.5 * (mode[1] - lats.min()))
    _, latency = hooks.constrained_mode(logits, costs, bias, target)
    slower_than_fastest += latency > lats.min() + 1e-9
    ratios.append(latency / target)
  assert slower_than_fastest >= 12, (slower_than_fastest, ratios)


def test_constrained_mode_is_the_mode_when_the_mode_meets_the_target():
  logits, costs, bias = _problem(0)
  _, archs = _enumerate(logits, costs, bias)
  mode = max(archs, key=lambda a: a[0])
  choice, latency = hooks.constrained_mode(logits, costs, bias, mode[1] + 1.0)
  assert latency == pytest.approx(mode[1])
  assert all(np.array_equal(choice[n], np.argmax(logits[n], -1)) for n in logits)


def test_min_ratio_lifts_a_mode_under_the_band():
  """A mode far under the target is replaced by an architecture within [min_ratio * T, T]
  when the relaxation or one choice changed next to it reaches the band, never above T;
  min_ratio=0 (the negative control) keeps the mode."""
  lifted, in_band, optimal = 0, 0, 0
  for seed in range(12):
    logits, costs, bias = _problem(seed)
    rows, archs = _enumerate(logits, costs, bias)
    lats = np.array([a[1] for a in archs])
    mode = max(archs, key=lambda a: a[0])
    target = float(mode[1] + 0.5 * (lats.max() - mode[1]))  # halfway between the mode and the slowest
    min_ratio = 0.95
    floor = min_ratio * target
    assert mode[1] < floor
    choice, latency = hooks.constrained_mode(logits, costs, bias, target, min_ratio)
    found = next(a for a in archs if a[2] == _as_tuple(rows, choice))
    assert found[1] == pytest.approx(latency) and mode[1] - 1e-9 <= latency <= target
    if latency < floor - 1e-9:  # left under the band: no single change of it reaches the band
      for a in archs:
        if sum(x != y for x, y in zip(a[2], found[2])) == 1:
          assert not floor <= a[1] <= target, (seed, a, found)
    lifted += latency > mode[1] + 1e-9
    in_band += latency >= floor - 1e-9
    # The brute-force answer of the same problem: how often the selection finds it.
    band = [a for a in archs if floor <= a[1] <= target]
    optimal += latency >= floor - 1e-9 and found[0] >= max(a[0] for a in band) - 1e-9
    kept, kept_latency = hooks.constrained_mode(logits, costs, bias, target, 0.0)
    assert kept_latency == pytest.approx(mode[1]) and _as_tuple(rows, kept) == mode[2]
  # Deterministic problems, measured: 11 lifted, 10 in [0.95, 1] (the other 2 have no single change
  # into the band), 9 of those the brute-force optimum (the 10th 0.28 nats below it);
  # min_ratio=0 keeps all 12 modes.
  assert lifted >= 11 and in_band >= 10 and optimal >= 9, (lifted, in_band, optimal)


def test_the_relaxation_alone_is_sufficient_when_it_lands_in_the_band():
  """z(mu), mu < 0, maximises log p + |mu| lat: when the relaxation's answer lies in the band
  (a wide band: min_ratio 0.8), nothing at least as slow is more probable."""
  checked = 0
  for seed in range(12):
    logits, costs, bias = _problem(seed)
    rows, archs = _enumerate(logits, costs, bias)
    lats = np.array([a[1] for a in archs])
    mode = max(archs, key=lambda a: a[0])
    target = float(mode[1] + 0.5 * (lats.max() - mode[1]))
    if mode[1] >= 0.8 * target:
      continue
    choice, latency = hooks.constrained_mode(logits, costs, bias, target, 0.8)
    found = next(a for a in archs if a[2] == _as_tuple(rows, choice))
    best_as_slow = max(a[0] for a in archs if a[1] >= latency - 1e-9)
    if found[0] >= best_as_slow - 1e-6:
      checked += 1
    else:  # not the relaxation's answer: then it must be a repair next to the jump, in the band
      assert 0.8 * target <= latency <= target
  assert checked >= 6, checked


def test_min_ratio_lands_in_the_band_when_the_relaxation_reaches_it():
  """On the ProxylessNAS-sized problem (21 layers, fine steps) the answer lies in the band."""
  rng = np.random.default_rng(0)
  in_band = []
  for seed in range(10):
    logits = {f"l{i}": rng.normal(0, 2.0, (7,)) for i in range(21)}
    costs = {n: np.sort(rng.uniform(0.5, 4.0, 7)) for n in logits}
    mode_lat = 5.0 + sum(float(costs[n][np.argmax(logits[n])]) for n in logits)
    target = mode_lat / 0.7  # the mode at 0.7 of the target
    _, latency = hooks.constrained_mode(logits, costs, 5.0, target, 0.9)
    in_band.append(0.9 <= latency / target <= 1.0)
  assert all(in_band), in_band


def test_constrained_mode_is_none_below_the_fastest_architecture():
  logits, costs, bias = _problem(1)
  fastest = bias + sum(float(c.min(-1).sum()) for c in costs.values())
  assert hooks.constrained_mode(logits, costs, bias, fastest - 0.01) is None
  assert hooks.constrained_mode(logits, costs, bias, fastest + 1e-6) is not None


def test_choice_costs_recover_the_additive_table_from_the_control():
  rng = np.random.default_rng(0)
  table = {s.name: np.r_[rng.uniform(1, 2, 6), [0.0] * s.allows_zero] for s in sp.layer_specs()}
  model = AdditiveLatency(table, 3.0)
  phi = sp.init_phi()
  costs, bias = hooks.choice_costs(additive.predict, model.control_params(), phi)
  assert bias == pytest.approx(3.0, rel=1e-6)
  for name in sp.LAYER_NAMES:
    np.testing.assert_allclose(costs[name], table[name][:np.shape(phi[name])[-1]], rtol=1e-5, atol=1e-5)


def test_one_hot_logits_have_the_choice_as_mode():
  like = {"a": np.zeros((2, 3)), "b": np.zeros((4,))}
  choice = {"a": np.array([2, 0]), "b": np.array(1)}
  logits = hooks.one_hot_logits(choice, like)
  np.testing.assert_array_equal(np.argmax(logits["a"], -1), [2, 0])
  assert int(np.argmax(logits["b"])) == 1 and logits["b"].dtype == np.float32


# -- latency.verify_rounds: the selected architecture is measured, and the knapsack solved
# again with the surrogate shifted by its error there.

def _additive(costs, bias, choice):
  return bias + sum(float(np.take_along_axis(costs[n], np.asarray(choice[n])[..., None], -1).sum()) for n in costs)


def _noisy_measure(rows, costs, bias, scale, seed):
  """A device whose latency is the surrogate's plus a fixed error per architecture, N(0, scale)."""
  def measure(choice):
    rng = np.random.default_rng([seed, *_as_tuple(rows, choice)])
    return _additive(costs, bias, choice) + float(rng.normal(0.0, scale))
  return measure


def _selection_outcomes(rounds, num=40, rho=0.9, noise=0.05):
  """(in the band, meet the target) by measurement, over ``num`` problems whose surrogate errs
  by ``noise`` x target per architecture (band: 0.1 x target wide)."""
  in_band = meets = 0
  for seed in range(num):
    logits, costs, bias = _problem(seed, shapes=((4,), (3,), (2, 3), (3, 4)))
    rows, archs = _enumerate(logits, costs, bias)
    target = float(np.quantile([a[1] for a in archs], 0.3))
    measure = _noisy_measure(rows, costs, bias, noise * target, seed)
    if rounds == 0:
      choice, _ = hooks.constrained_mode(logits, costs, bias, target, rho)
    else:
      choice, trail = hooks.measured_selection(logits, costs, bias, target, rho, measure, rounds)
      assert 1 <= len(trail) <= rounds
    lat = measure(choice)
    in_band += rho * target <= lat <= target
    meets += lat <= target
  return in_band, meets


def test_measured_selection_lands_in_the_band_where_the_surrogate_alone_misses():
  """40 problems, the surrogate off by 5% of the target per architecture (half the band's width,
  as the CPU probe's held-out MAE): with 4 measurements every answer meets the target and at
  least 30 lie in [0.9, 1] x target (33 when written; 32 with the shift alone, no bisection);
  the surrogate alone (negative control) misses the target 9 times and lands in the band 21
  times. Deterministic: the problems and the device's errors are fixed by their seeds, so
  there is no false-alarm rate; the thresholds leave room for a different but equally good
  search order, not for a weaker one (the control fails both)."""
  in_band, meets = _selection_outcomes(rounds=4)
  assert meets == 40 and in_band >= 30
  in_band0, meets0 = _selection_outcomes(rounds=0)
  assert meets0 <= 35 and in_band0 <= 25


def test_measured_selection_with_an_exact_surrogate_is_constrained_mode_in_one_measurement():
  for seed in range(4):
    logits, costs, bias = _problem(seed)
    rows, archs = _enumerate(logits, costs, bias)
    target = float(np.quantile([a[1] for a in archs], 0.5))
    expected, _ = hooks.constrained_mode(logits, costs, bias, target, 0.9)
    calls = []
    choice, trail = hooks.measured_selection(logits, costs, bias, target, 0.9,
                                             lambda c: calls.append(1) or _additive(costs, bias, c), 4)
    assert _as_tuple(rows, choice) == _as_tuple(rows, expected)
    if 0.9 * target <= trail[0]["measured_ms"] <= target:
      assert len(calls) == 1


def test_measured_selection_corrects_a_constant_bias_in_one_more_round():
  """A table source: the measurement is exact, the fitted surrogate off by a constant (the phone
  table's fit was 2-3% off its sum). The second round solves the problem the device poses."""
  checked = []
  for seed in range(6):
    logits, costs, bias = _problem(seed)
    rows, archs = _enumerate(logits, costs, bias)
    target = float(np.quantile([a[1] for a in archs], 0.5))
    offset = 0.08 * target
    truth = hooks.constrained_mode(logits, costs, bias + offset, target, 0.9)
    choice, trail = hooks.measured_selection(logits, costs, bias, target, 0.9,
                                             lambda c: _additive(costs, bias, c) + offset, 4)
    assert trail[0]["bias_ms"] == pytest.approx(bias)
    if len(trail) > 1:
      assert trail[1]["bias_ms"] == pytest.approx(bias + offset)
    if 0.9 * target <= trail[0]["measured_ms"] <= target:  # the first answer is accepted as it is
      assert len(trail) == 1
    elif 0.9 * target <= truth[1] <= target:  # else the device's own problem, solved in the second round
      assert _as_tuple(rows, choice) == _as_tuple(rows, truth[0]) and len(trail) == 2
      checked.append(seed)
  assert len(checked) >= 2  # not only first-round answers


def test_measured_selection_without_an_answer_in_the_band_keeps_the_slowest_that_meets():
  logits, costs, bias = _problem(2)
  rows, archs = _enumerate(logits, costs, bias)
  target = float(np.quantile([a[1] for a in archs], 0.5))
  measured = iter([1.2 * target, 0.5 * target, 0.7 * target, 1.05 * target])
  values = {}

  def measure(choice):  # a device far from the surrogate, never in the band
    return values.setdefault(_as_tuple(rows, choice), next(measured))

  choice, trail = hooks.measured_selection(logits, costs, bias, target, 0.9, measure, 4)
  meeting = [t["measured_ms"] for t in trail if t["measured_ms"] <= target]
  assert meeting and values[_as_tuple(rows, choice)] == max(meeting)


def test_one_hot_arch_is_a_batch_of_one():
  like = {"a": np.zeros((2, 3)), "b": np.zeros((4,))}
  z = hooks.one_hot_arch({"a": np.array([2, 0]), "b": np.array(1)}, like)
  assert z["a"].shape == (1, 2, 3) and z["b"].shape == (1, 4) and z["a"].dtype == np.float32
  np.testing.assert_array_equal(z["a"][0], [[0, 0, 1], [1, 0, 0]])
