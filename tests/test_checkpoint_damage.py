"""Checkpoints that survive damage, and saves that fail loudly (unas_jax/utils/checkpoint.py)."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from unas_jax.errors import CheckpointError, SaveError
from unas_jax.utils import checkpoint as checkpoint_lib

STATE = {"phi": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(0, jnp.int32)}


def _state(step):
  return {"phi": STATE["phi"] + step, "step": jnp.asarray(step, jnp.int32)}


def _write(workdir, steps=(1, 2)):
  ckpt = checkpoint_lib.Checkpointer(str(workdir))
  for s in steps:
    ckpt.save(s, _state(s), {"step": s}, force=True)
  ckpt.close()
  return workdir / "checkpoints"


def _truncate_state_metadata(step_dir):
  path = step_dir / "state" / "_METADATA"
  path.write_bytes(path.read_bytes()[:17])


def _garbage_state_metadata(step_dir):
  (step_dir / "state" / "_METADATA").write_bytes(b"\x00\xffnot json at all")


def _remove_state_item(step_dir):
  import shutil
  shutil.rmtree(step_dir / "state")


def _empty_step_folder(step_dir):
  import shutil
  shutil.rmtree(step_dir)
  step_dir.mkdir()


def _garbage_meta(step_dir):
  (step_dir / "meta" / "metadata").write_text("{\"step\": 2, trunc")


DAMAGE = [_truncate_state_metadata, _garbage_state_metadata, _remove_state_item, _empty_step_folder, _garbage_meta]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_damaged_newest_step_falls_back_and_is_moved_aside(tmp_path, capfd, damage):
  directory = _write(tmp_path)
  damage(directory / "2")
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  state, meta, step = ckpt.restore(STATE)
  assert step == 1 and meta == {"step": 1}
  np.testing.assert_array_equal(state["phi"], _state(1)["phi"])
  assert not (directory / "2").exists() and (directory / "2.damaged").is_dir()  # moved, not deleted
  err = capfd.readouterr().err
  lines = [l for l in err.splitlines() if l.startswith("unas_jax: warning:")]
  assert len(lines) == 1 and "step 2" in lines[0] and "2.damaged" in lines[0] and "resuming from step 1" in lines[0]
  assert "Traceback" not in err
  # The run goes on: the next save and a later restore do not trip over the moved folder.
  ckpt.save(3, _state(3), {"step": 3}, force=True)
  ckpt.close()
  again = checkpoint_lib.Checkpointer(str(tmp_path))
  assert again.restore(STATE)[2] == 3
  again.close()


def test_no_step_restores_is_one_line_and_moves_nothing(tmp_path):
  directory = _write(tmp_path)
  _garbage_state_metadata(directory / "2")
  _remove_state_item(directory / "1")
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  with pytest.raises(CheckpointError) as info:
    ckpt.restore(STATE)
  message = str(info.value)
  assert "\n" not in message and str(directory) in message
  assert "another --workdir" in message and "remove the damaged step folders" in message
  assert "step 2" in message and "step 1" in message
  assert sorted(os.listdir(directory)) == ["1", "2"]


def test_keeps_at_least_two_steps(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=1)
  for s in (1, 2, 3):
    ckpt.save(s, _state(s), {"step": s}, force=True)
  ckpt.close()
  assert ckpt.all_steps() == [2, 3]


def test_failed_save_raises_one_line_naming_last_good(tmp_path, monkeypatch):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1), {"step": 1}, force=True)
  ckpt.wait()

  real_write_text = epath.Path.write_text

  def disk_full(self, *args, **kwargs):
    if "checkpoints" in str(self):
      raise OSError(28, "No space left on device")
    return real_write_text(self, *args, **kwargs)

  monkeypatch.setattr(type(epath.Path(str(tmp_path))), "write_text", disk_full)
  with pytest.raises(SaveError) as info:
    ckpt.save(2, _state(2), {"step": 2}, force=True)
    ckpt.wait()
  monkeypatch.undo()
  message = str(info.value)
  assert "\n" not in message and "No space left on device" in message, message
  assert "step 2" in message and f"Last good checkpoint: step 1 in {tmp_path / 'checkpoints'}" in message
  # Space freed: the same workdir resumes from the good step.
  again = checkpoint_lib.Checkpointer(str(tmp_path))
  assert again.restore(STATE)[2] == 1
  again.close()


def test_relative_workdir_saves_and_restores(tmp_path, monkeypatch):
  # The README's command passes --workdir=workdirs/darts_quick; orbax wants absolute paths
  # (the clean-environment check of 2026-11-30 stopped at the first save without this).
  monkeypatch.chdir(tmp_path)
  _write(epath.Path("runs/relative"))
  ckpt = checkpoint_lib.Checkpointer("runs/relative")
  state, meta, step = ckpt.restore(_state(0))
  ckpt.close()
  assert step == 2 and meta["step"] == 2
  np.testing.assert_array_equal(state["phi"], _state(2)["phi"])
  assert (tmp_path / "runs" / "relative" / "checkpoints" / "2").is_dir()
