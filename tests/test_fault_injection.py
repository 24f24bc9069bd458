"""The hard cases of experiments/fault_injection.py as subprocesses: kill -9 (also during a checkpoint
write), SIGTERM, disk full. Each must end in one line or a bitwise-identical resume."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kill_sigterm_and_disk_full_end_in_one_line_or_an_identical_resume(tmp_path):
  result = subprocess.run(
      [sys.executable, "experiments/fault_injection.py", "--cases=sigterm,kill9,kill9_save,disk_full",
       "--kills=1", "--save_kills=1", f"--base={tmp_path}",
       # The test run's shared compilation cache (tests/conftest.py): the tiny search's steps are
       # often there already (tests/test_darts_search.py runs the same config).
       f"--cache={os.environ['UNAS_JAX_TEST_COMPILATION_CACHE']}"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=5400)
  rows = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{")]
  assert len(rows) >= 5, result.stdout[-3000:] + result.stderr[-3000:]
  bad = [r for r in rows if not r["ok"]]
  assert not bad, bad
  assert result.returncode == 0
