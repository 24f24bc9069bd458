"""A diverging search, a damaged checkpoint and a damaged history, end to end on the tiny DARTS search."""
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

from unas_jax import errors
from unas_jax.search import darts as darts_search
from unas_jax.utils import checkpoint as checkpoint_lib

from test_darts_search import tiny_config  # pylint: disable=import-error


def _config(**search):
  config = tiny_config(**search)
  config.checkpoint_every = 2
  return config


def _history_steps(workdir):
  return [json.loads(l)["step"] for l in open(workdir / "history.jsonl") if l.strip()]


@pytest.mark.slow
def test_divergence_stops_with_exit_3_keeps_the_good_checkpoint_and_writes_no_genotype(tmp_path):
  assert darts_search.run(_config(stop_at_step=2), str(tmp_path)) == {"stopped_at": 2}
  with pytest.raises(errors.NonFiniteError) as info:
    darts_search.run(_config(w_lr=1e30), str(tmp_path))  # Adam steps of ~1e29 overflow the BatchNorm variances
  message = str(info.value)
  assert info.value.exit_code == 3 and "\n" not in message
  assert "is not finite at step" in message
  assert f"Last good checkpoint: step 2 in {tmp_path / 'checkpoints'}" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # nothing saved from the diverged state
  assert not (tmp_path / "genotype" / "genotype.json").exists()
  state, meta = checkpoint_lib.Checkpointer(str(tmp_path)).read()
  assert meta["step"] == 2 and all(np.isfinite(a).all() for a in jax.tree.leaves(state))


@pytest.mark.slow
def test_damaged_checkpoint_and_history_resume_identically(tmp_path, capfd):
  straight, damaged = tmp_path / "straight", tmp_path / "damaged"
  darts_search.run(_config(), str(straight))
  darts_search.run(_config(stop_at_step=4), str(damaged))
  # The newest step loses its array metadata; a kill left half a history record behind.
  (damaged / "checkpoints" / "4" / "state" / "_METADATA").write_bytes(b"\x00garbage")
  with open(damaged / "history.jsonl", "a") as f:
    f.write('{"step": 5, "phase": "sea')
  capfd.readouterr()
  darts_search.run(_config(), str(damaged))
  err = capfd.readouterr().err
  assert "unas_jax: warning: checkpoint step 4" in err and "resuming from step 2" in err
  assert (damaged / "checkpoints" / "4.damaged").is_dir()
  a, meta_a = checkpoint_lib.Checkpointer(str(straight)).read()
  b, meta_b = checkpoint_lib.Checkpointer(str(damaged)).read()
  assert meta_a["step"] == meta_b["step"] == 6
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert [json.loads(l) for l in open(straight / "history.jsonl")] == \
         [json.loads(l) for l in open(damaged / "history.jsonl")]
  assert json.load(open(straight / "genotype" / "genotype.json")) == \
         json.load(open(damaged / "genotype" / "genotype.json"))


@pytest.mark.slow
def test_history_starts_afresh_without_a_checkpoint(tmp_path):
  darts_search.run(_config(stop_at_step=3), str(tmp_path))
  assert _history_steps(tmp_path) == [2]
  shutil.rmtree(tmp_path / "checkpoints")  # the run is lost; its history must not stay
  darts_search.run(_config(), str(tmp_path))
  assert [s for s in _history_steps(tmp_path)] == [2, 4, 6, 6]  # search records, then the final eval record
  records = [json.loads(l) for l in open(tmp_path / "history.jsonl")]
  assert [r["phase"] for r in records] == ["search", "search", "search", "eval"]


@pytest.mark.slow
def test_evaluation_training_divergence_stops_with_exit_3(tmp_path):
  from test_evaluation import _tiny_config  # pylint: disable=import-error,import-outside-toplevel
  from unas_jax.evaluation import run as run_lib  # pylint: disable=import-outside-toplevel
  config = _tiny_config(tmp_path)
  config.checkpoint_every = 2
  config.train.stop_at_step = 2
  assert run_lib.run(config, str(tmp_path)) == {"stopped_at": 2}
  config.train.stop_at_step = -1
  config.train.lr = 1e30  # weights of ~1e30 overflow float32 in the first BatchNorm variance
  with pytest.raises(errors.NonFiniteError) as info:
    run_lib.run(config, str(tmp_path))
  message = str(info.value)
  bad_step = int(re.search(r"(loss|grad_norm) is not finite at step (\d+)", message).group(2))
  assert bad_step >= 3 and f"Last good checkpoint: step 2 in {tmp_path / 'checkpoints'}" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  assert not (tmp_path / "results.json").exists()
