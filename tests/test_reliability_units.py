"""Units of the reliability layer: the NaN watch, the history, signal handling (no supernet compiled)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from unas_jax import errors
from unas_jax.utils import checkpoint as checkpoint_lib
from unas_jax.utils import finite as finite_lib
from unas_jax.utils import metrics as metrics_lib
from unas_jax.utils.interrupt import StopRequest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _metrics(loss, grad):
  return {"loss": jnp.asarray(loss, jnp.float32), "grad_norm": jnp.asarray(grad, jnp.float32),
          "other": jnp.asarray(float("nan"))}  # not watched


def test_finite_watch_names_the_first_bad_step_and_quantity():
  watch = finite_lib.FiniteWatch(("loss", "grad_norm"))
  watch.check("step 2 in /w/checkpoints")  # nothing yet: no error
  for step, (loss, grad) in enumerate([(1.0, 2.0), (0.5, 1.0), (0.4, float("inf")), (float("nan"), float("nan"))],
                                      start=1):
    watch.update(step, _metrics(loss, grad))
  assert watch.first_bad() == (3, "grad_norm")  # the earliest, though step 4 has both
  with pytest.raises(errors.NonFiniteError) as info:
    watch.check("step 2 in /w/checkpoints")
  message = str(info.value)
  assert info.value.exit_code == errors.EXIT_NON_FINITE == 3
  assert "grad_norm is not finite at step 3" in message and "Last good checkpoint: step 2 in /w/checkpoints" in message
  assert "\n" not in message


def test_finite_watch_sees_a_bad_step_between_two_fetches():
  watch = finite_lib.FiniteWatch(("loss", "grad_norm"))
  watch.update(1, _metrics(1.0, 1.0))
  watch.update(2, _metrics(float("nan"), 1.0))   # never fetched by the loop ...
  watch.update(3, _metrics(1.0, 1.0))            # ... and finite again by the next fetch
  assert watch.first_bad() == (2, "loss")


def test_finite_watch_clean_run():
  watch = finite_lib.FiniteWatch(("loss", "grad_norm"))
  for step in range(1, 6):
    watch.update(step, _metrics(1.0 / step, 2.0))
  assert watch.first_bad() is None


def test_history_drops_a_damaged_last_line_and_steps_past_the_checkpoint(tmp_path, capfd):
  path = tmp_path / "history.jsonl"
  history = metrics_lib.JsonlHistory(str(path))
  for step in (2, 4, 6):
    history.append({"step": step, "loss": 1.0 / step})
  with open(path, "a") as f:
    f.write('{"step": 8, "loss": 0.1')  # a kill in the middle of an append
  assert [r["step"] for r in history.read()] == [2, 4, 6]
  assert "skipped 1 damaged line" in capfd.readouterr().err
  history.truncate_after(4)   # resuming from the checkpoint of step 4
  assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == [2, 4]
  history.append({"step": 6, "loss": 0.2})
  assert [r["step"] for r in history.read()] == [2, 4, 6]
  history.truncate_after(0)   # no checkpoint: nothing of the lost run stays
  assert history.read() == []


_SIGNAL_CHILD = r"""
import sys, time
from unas_jax.utils.interrupt import StopRequest
stop = StopRequest().install()
if sys.argv[1] == "saving":
  stop.mark_saving_needed()
if sys.argv[1] == "saved":  # steps ran, then everything was checkpointed before a long compile
  stop.mark_saving_needed()
  stop.mark_saved()
print("ready", flush=True)
deadline = time.time() + 60
while time.time() < deadline:
  if sys.argv[1] in ("compile", "saved"):
    time.sleep(60)          # stands for minutes in XLA's compiler (the main thread away from Python)
  time.sleep(0.01)
  if stop.requested:
    print("requested", stop.signal_name, flush=True)
    time.sleep(60)          # saving a checkpoint ...
sys.exit(9)
"""


def _child(mode):
  proc = subprocess.Popen([sys.executable, "-c", _SIGNAL_CHILD, mode], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert proc.stdout.readline().strip() == "ready"
  return proc


@pytest.mark.parametrize("mode,message", [
    ("compile", "stopped by SIGTERM before the first step"),
    # steps ran and were checkpointed, then a long compile (the search step's after the warm-up)
    ("saved", "stopped by SIGTERM while compiling (every step is in the last checkpoint)")])
def test_signal_with_nothing_new_to_save_exits_at_once(mode, message):
  proc = _child(mode)
  sent = time.perf_counter()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=30)
  assert time.perf_counter() - sent < 10
  assert proc.returncode == errors.EXIT_STOPPED == 75, (out, err)
  assert "Traceback" not in err and message in err


def test_scaffold_saves_before_a_compile_and_the_stop_then_needs_no_save(tmp_path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from unas_jax.utils.scaffold import RunScaffold  # pylint: disable=import-outside-toplevel
  from flax import struct  # pylint: disable=import-outside-toplevel

  @struct.dataclass
  class State:
    step: np.ndarray
    w: np.ndarray

  stop = StopRequest()  # not installed: only its flags are read here
  run = RunScaffold(str(tmp_path), stop, description="t", total_steps=10, steps_per_epoch=5, checkpoint_every=100,
                    finite_metrics=())
  state, meta = run.start(State(step=np.asarray(0), w=np.zeros(3, np.float32)))
  assert meta is None
  with run:
    run.save_before_compile(0, state)  # the first step: nothing to save
    assert run.checkpointer.all_steps() == [] and not stop.saved_once
    state = state.replace(step=np.asarray(4), w=np.ones(3, np.float32))
    run.after_step(4, {})
    assert stop.saving_needed
    run.save_before_compile(4, state, lambda: {"seed": 1})
    assert run.checkpointer.all_steps() == [4] and not stop.saving_needed and stop.saved_once
  run.close()
  restored, meta, _ = checkpoint_lib.Checkpointer(str(tmp_path)).restore(State(step=np.asarray(0), w=np.zeros(3)))
  assert meta == {"step": 4, "seed": 1} and int(restored.step) == 4
  np.testing.assert_array_equal(restored.w, np.ones(3))


def test_first_signal_requests_a_save_second_exits_at_once_without_traceback():
  proc = _child("saving")
  proc.send_signal(signal.SIGINT)
  assert proc.stdout.readline().strip() == "requested SIGINT"
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=30)
  assert proc.returncode == 75, (out, err)
  assert "Traceback" not in err and "KeyboardInterrupt" not in err
  assert "stopped at once by a second SIGINT" in err
