"""The command line: one-line errors for user mistakes, and the jobs start."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _main(*args, timeout=600):
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "unas_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("unas_jax: error:")]
  assert len(lines) == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def test_unknown_config_key_is_one_line_with_suggestion():
  _one_line_error(_main("--config=configs/estimator_benchmark.py", "--config.num_sample=3"),
                  "num_sample", 'Did you mean "num_samples"')


def test_badly_typed_override():
  _one_line_error(_main("--config=configs/estimator_benchmark.py", "--config.num_samples=abc"), "num_samples")


def test_missing_config_file():
  _one_line_error(_main("--config=configs/does_not_exist.py"), "does not exist")


def test_missing_config_flag():
  _one_line_error(_main(), "--config is required")


def test_missing_required_value(tmp_path):
  config = tmp_path / "needs_target.py"
  config.write_text(
      "import ml_collections\n"
      "from unas_jax.config import required\n"
      "def get_config(arg=None):\n"
      "  c = ml_collections.ConfigDict()\n"
      "  c.job = 'estimator_benchmark'\n"
      "  c.latency = ml_collections.ConfigDict({'target_ms': required(float), 'optional': None})\n"
      "  return c\n")
  _one_line_error(_main(f"--config={config}"), "latency.target_ms", "--config.latency.target_ms=")


def test_unknown_job():
  _one_line_error(_main("--config=configs/estimator_benchmark.py", "--config.job=nope"), "config.job")


@pytest.mark.slow
def test_estimator_benchmark_job_runs(tmp_path):
  result = _main("--config=configs/estimator_benchmark.py:quick", "--config.num_samples=2000",
                 "--config.eta_steps=5", "--config.max_cases=1", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "rebar" in result.stdout and (tmp_path / "estimator_variance.png").exists()
