"""Bias and variance of the estimators on small exact problems (no data, no download).

    python -m unas_jax.main --config=configs/estimator_benchmark.py:quick --workdir=/tmp/est
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.job = "estimator_benchmark"
  config.name = "estimator_benchmark"
  config.num_samples = 100_000
  config.alpha = 1e-4
  config.eta_steps = 300
  config.seed = 0
  config.max_cases = 0  # 0: all five toy problems
  if arg == "quick":
    config.num_samples = 20_000
    config.eta_steps = 100
  return config
