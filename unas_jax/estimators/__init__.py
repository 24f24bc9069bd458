"""Gradient estimators over products of categoricals (docs/design.md section 2).

    from unas_jax import estimators as est
    estimate = est.rebar(phi, key, loss_fn, eta=1.0, tau=0.4, sample_shape=(batch,))
    phi_grads = estimate.grads
"""
from unas_jax.estimators.baselines import (Baseline, constant_baseline, leave_one_out_baseline,
                                           make_baseline, moving_average_baseline, no_baseline)
from unas_jax.estimators.categorical import (Sample, conditional_scores, discrete, entropy,
                                             gumbel_noise, log_prob, mode, per_sample_keys, probabilities, sample,
                                             soften)
from unas_jax.estimators.gradients import (Estimate, gumbel_softmax, rebar, rebar_variance_gradients,
                                           reinforce, relax, unas)

__all__ = [
    "Baseline", "Estimate", "Sample", "conditional_scores", "constant_baseline", "discrete", "entropy",
    "gumbel_noise", "gumbel_softmax", "leave_one_out_baseline", "log_prob", "make_baseline", "mode",
    "moving_average_baseline", "no_baseline", "per_sample_keys", "probabilities", "rebar", "rebar_variance_gradients",
    "reinforce", "relax", "sample", "soften", "unas",
]
