"""Prints each estimator's bias z-score and variance relative to REINFORCE on the toy problems.

    python experiments/estimator_variance.py [--num_samples 100000] [--out_dir /tmp/estimator_variance]

Writes estimator_variance.png (grouped bars) and estimator_variance.json to --out_dir.
"""
import argparse

from unas_jax.estimators import report


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_samples", type=int, default=100_000)
  parser.add_argument("--alpha", type=float, default=1e-4)
  parser.add_argument("--eta_steps", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out_dir", default="/tmp/estimator_variance")
  args = parser.parse_args()
  rows = report.run_report(args.num_samples, args.alpha, args.eta_steps, args.seed, args.out_dir)
  print(report.format_table(rows))
  print(f"plot: {args.out_dir}/estimator_variance.png")


if __name__ == "__main__":
  main()
