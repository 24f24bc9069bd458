r"""Fault injection against a tiny DARTS search: every case ends in one line or an identical resume.

    python experiments/fault_injection.py                     # every case, 2 random hard kills
    python experiments/fault_injection.py --kills=10          # more random kill -9 repetitions
    python experiments/fault_injection.py --cases=sigterm,nonfinite --markdown

Runs ``python -m unas_jax.main`` as subprocesses on the DARTS ``:quick`` search
shrunk to 3 cells, 4 channels, 8x8 images, batch 8, 6 steps (checkpoints every
2), breaks it in each way of issue 15, reruns where a rerun should resume, and
prints a table: case, exit code(s), the one line printed (or TRACEBACK), whether
the resumed run ended bitwise identical to an uninterrupted one (phi, w,
BatchNorm statistics, optimiser and estimator states, history, genotype), and
the seconds to the first exit. All runs share one persistent compilation cache.

The disk-full case mounts a small tmpfs (needs root; skipped otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/darts_cifar10.py:quick", "--config.model.cells=3", "--config.model.channels=4",
        "--config.data.image_size=8", "--config.batch_size=8", "--config.model.ops=unas3",
        "--config.search.max_steps=6", "--config.search.init_epochs=0", "--config.log_every=2",
        "--config.checkpoint_every=2"]
CACHE = None  # --cache: the persistent compilation cache of every run (default <base>/xla_cache)


class Run:
  """One ``unas_jax.main`` subprocess with its output in files."""

  def __init__(self, base: str, name: str, workdir: str, extra=(), config=None):
    self.out, self.err = os.path.join(base, f"{name}.out"), os.path.join(base, f"{name}.err")
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
               UNAS_JAX_COMPILATION_CACHE=CACHE or os.path.join(base, "xla_cache"))
    args = [sys.executable, "-m", "unas_jax.main", *(config or TINY), *extra, f"--workdir={workdir}"]
    self.start = time.perf_counter()
    with open(self.out, "w") as out, open(self.err, "w") as err:
      self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=err)

  def stdout(self) -> str:
    return open(self.out, errors="replace").read()

  def stderr(self) -> str:
    return open(self.err, errors="replace").read()

  def wait(self, timeout: float = 3600) -> int:
    try:
      return self.proc.wait(timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
      return -999

  def seconds(self) -> float:
    return time.perf_counter() - self.start

  def wait_for(self, predicate, timeout: float = 900, poll: float = 0.05) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
      if predicate():
        return True
      if self.proc.poll() is not None:
        return predicate()
      time.sleep(poll)
    return False

  def line(self) -> str:
    """The run's one ``unas_jax:`` line (errors first), or TRACEBACK."""
    err = self.stderr()
    if "Traceback" in err:
      last = [l for l in err.strip().splitlines() if l.strip()][-1:]
      return "TRACEBACK: " + (last[0][:150] if last else "")
    lines = [l for l in err.splitlines() if l.startswith("unas_jax: error:")]
    lines += [l for l in err.splitlines() if l.startswith(("unas_jax: stopped", "unas_jax: warning:"))]
    out = [l.strip() for l in self.stdout().replace("\r", "\n").splitlines() if l.strip().startswith("Stopped by")]
    lines += out
    return lines[0] if lines else ""


def read_run(workdir: str) -> dict:
  """Everything that must be identical after a resume."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from unas_jax.utils import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
  ckpt = checkpoint_lib.Checkpointer(workdir)
  state, meta = ckpt.read()
  ckpt.close()
  leaves = jax.tree_util.tree_leaves_with_path(state)
  history = [json.loads(l) for l in open(os.path.join(workdir, "history.jsonl")) if l.strip()]
  genotype = json.load(open(os.path.join(workdir, "genotype", "genotype.json")))
  return {"step": meta["step"], "state": {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves},
          "history": history, "genotype": genotype}


def identical(a: dict, b: dict) -> str:
  import numpy as np  # pylint: disable=import-outside-toplevel
  if a["step"] != b["step"]:
    return f"no (step {a['step']} vs {b['step']})"
  if a["state"].keys() != b["state"].keys():
    return "no (state structure)"
  for k in a["state"]:
    if not np.array_equal(a["state"][k], b["state"][k]):
      return f"no ({k} differs)"
  if a["history"] != b["history"]:
    return (f"no (history: steps {[r['step'] for r in a['history']]} vs "
            f"{[r['step'] for r in b['history']]})")
  if a["genotype"] != b["genotype"]:
    return "no (genotype)"
  return "yes"


class Harness:
  def __init__(self, base: str):
    self.base = base
    self.rows: list[dict] = []
    self.reference = None
    self.run_seconds = 20.0

  def workdir(self, name: str) -> str:
    path = os.path.join(self.base, "runs", name)
    shutil.rmtree(path, ignore_errors=True)
    return path

  def row(self, case: str, codes, line: str, resumed: str, seconds: float, ok: bool) -> None:
    row = {"case": case, "exit": "/".join(str(c) for c in codes), "line": " ".join(line.split())[:160],
           "resumed": resumed, "seconds": round(seconds, 1), "ok": ok}
    self.rows.append(row)
    print(json.dumps(row), flush=True)

  def resume(self, name: str, workdir: str) -> tuple[int, str]:
    run = Run(self.base, name + "_rerun", workdir)
    code = run.wait()
    if code != 0:
      return code, f"no (rerun exit {code}: {run.line()})"
    return code, identical(read_run(workdir), self.reference)


def case_reference(h: Harness, args) -> None:
  workdir = h.workdir("reference")
  run = Run(h.base, "reference", workdir)
  run.wait_for(lambda: _started(run))
  started = time.perf_counter()
  code = run.wait()
  # Random kills land anywhere from the end of setup to the end of an uninterrupted run.
  h.run_seconds = time.perf_counter() - started
  h.reference = read_run(workdir) if code == 0 else None
  h.row("uninterrupted run (reference)", [code], run.line() or "(no error line)", "-", run.seconds(), code == 0)


def _started(run: Run) -> bool:
  return "search:" in run.stdout()


def _stepped(workdir: str):
  return lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "2"))


def case_signal(h: Harness, args, sig: signal.Signals, twice: bool) -> None:
  name = f"{sig.name.lower()}{'_twice' if twice else ''}"
  workdir = h.workdir(name)
  run = Run(h.base, name, workdir)
  run.wait_for(_stepped(workdir))
  run.proc.send_signal(sig)
  if twice:
    time.sleep(0.05)
    run.proc.send_signal(sig)
  code = run.wait()
  rerun_code, resumed = h.resume(name, workdir)
  line = run.line()
  ok = code == 75 and "TRACEBACK" not in line and resumed == "yes"
  h.row(f"{sig.name}{' twice' if twice else ''} after the first checkpoint, then rerun", [code, rerun_code], line,
        resumed, run.seconds(), ok)


def case_signal_during_compile(h: Harness, args) -> None:
  workdir = h.workdir("sigterm_compile")
  run = Run(h.base, "sigterm_compile", workdir)
  run.wait_for(lambda: _started(run))   # setup done: the first step is being traced and compiled
  sent = time.perf_counter()
  run.proc.send_signal(signal.SIGTERM)
  code = run.wait()
  latency = time.perf_counter() - sent
  rerun_code, resumed = h.resume("sigterm_compile", workdir)
  line = run.line()
  h.row(f"SIGTERM during the first compile (exit {latency:.1f} s after the signal), then rerun",
        [code, rerun_code], line, resumed, run.seconds(), code == 75 and latency < 10 and resumed == "yes")


def case_kill9(h: Harness, args, index: int, during_save: bool, attempt: int = 0) -> None:
  name = f"kill9_{'save' if during_save else 'random'}_{index}" + (f"_again{attempt}" if attempt else "")
  workdir = h.workdir(name)
  run = Run(h.base, name, workdir)
  run.wait_for(lambda: _started(run))
  where = ""
  if during_save:
    ckpt_dir = os.path.join(workdir, "checkpoints")

    def writing():
      try:
        return any("tmp" in f for f in os.listdir(ckpt_dir))
      except OSError:
        return False
    caught = run.wait_for(writing, poll=0.002)
    where = "during a checkpoint write" if caught and run.proc.poll() is None else "(write not caught)"
  else:
    delay = random.uniform(0.0, args.kill_window or h.run_seconds)
    time.sleep(delay)
    where = f"at +{delay:.1f} s"
  finished = run.proc.poll() is not None
  if finished and not during_save and not args.kill_window and attempt < 3:
    # The reference run (a cold compile) took longer than this one (cached compiles): the
    # kill came after the end and tested nothing. Draw again within this run's own length.
    run.wait()
    h.run_seconds = 0.9 * run.seconds()
    case_kill9(h, args, index, during_save, attempt + 1)
    return
  if not finished:
    run.proc.kill()
  code = run.wait()
  rerun_code, resumed = h.resume(name, workdir)
  h.row(f"kill -9 {where}{' (had finished)' if finished else ''}, then rerun", [code, rerun_code],
        "(killed)", resumed, run.seconds(), resumed == "yes")


def _damage(step_dir: str, how: str) -> None:
  if how == "truncated state/_METADATA":
    path = os.path.join(step_dir, "state", "_METADATA")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
  elif how == "garbage state/_METADATA":
    open(os.path.join(step_dir, "state", "_METADATA"), "wb").write(os.urandom(64))
  elif how == "no state item":
    shutil.rmtree(os.path.join(step_dir, "state"))
  elif how == "empty step folder":
    shutil.rmtree(step_dir)
    os.makedirs(step_dir)
  elif how == "garbage meta/metadata":
    open(os.path.join(step_dir, "meta", "metadata"), "wb").write(b"{\"step\": 4, \x00\x01")


def _stopped_at(h: Harness, name: str, step: int, extra=()) -> tuple[str, Run]:
  workdir = h.workdir(name)
  run = Run(h.base, name, workdir, [f"--config.search.stop_at_step={step}", *extra])
  run.wait()
  return workdir, run


def case_damaged(h: Harness, args, how: str) -> None:
  name = "damaged_" + how.replace(" ", "_").replace("/", "_")
  workdir, first = _stopped_at(h, name, 4)
  if not os.path.isdir(os.path.join(workdir, "checkpoints", "4")):
    h.row(f"newest checkpoint damaged: {how}", [first.proc.returncode], "the first run left no step 4: " + first.line(),
          "-", first.seconds(), False)
    return
  _damage(os.path.join(workdir, "checkpoints", "4"), how)
  rerun = Run(h.base, name + "_rerun", workdir)
  code = rerun.wait()
  resumed = identical(read_run(workdir), h.reference) if code == 0 else f"no (exit {code})"
  kept = os.path.isdir(os.path.join(workdir, "checkpoints", "4.damaged"))
  line = rerun.line()
  h.row(f"newest checkpoint damaged: {how}, then rerun", [first.proc.returncode, code],
        line + ("" if kept else " [damaged step NOT kept]"), resumed, rerun.seconds(),
        code == 0 and resumed == "yes" and kept and line.startswith("unas_jax: warning:"))


def case_all_damaged(h: Harness, args) -> None:
  workdir, first = _stopped_at(h, "all_damaged", 4)
  if not os.path.isdir(os.path.join(workdir, "checkpoints", "4")):
    h.row("every checkpoint damaged", [first.proc.returncode], "the first run left no step 4: " + first.line(), "-",
          first.seconds(), False)
    return
  _damage(os.path.join(workdir, "checkpoints", "4"), "garbage state/_METADATA")
  _damage(os.path.join(workdir, "checkpoints", "2"), "no state item")
  run = Run(h.base, "all_damaged_rerun", workdir)
  code = run.wait()
  line = run.line()
  h.row("every checkpoint damaged", [first.proc.returncode, code], line, "-", run.seconds(),
        code == 2 and line.startswith("unas_jax: error:"))


def case_nonfinite(h: Harness, args) -> None:
  workdir, first = _stopped_at(h, "nonfinite", 2)
  run = Run(h.base, "nonfinite_rerun", workdir, ["--config.search.w_lr=1e30"])
  code = run.wait()
  line = run.line()
  steps = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  genotype = os.path.exists(os.path.join(workdir, "genotype", "genotype.json"))
  ok = code == 3 and line.startswith("unas_jax: error:") and steps == ["2"] and not genotype
  h.row("diverging (w_lr=1e30) after a good checkpoint", [first.proc.returncode, code],
        line + f" [checkpoints: {steps}; genotype written: {genotype}]", "-", run.seconds(), ok)


def case_history(h: Harness, args, how: str) -> None:
  name = "history_" + how.split()[0]
  workdir, first = _stopped_at(h, name, 3)
  path = os.path.join(workdir, "history.jsonl")
  if how == "truncated last line":
    # What a kill in the middle of an append leaves: half a record of a step past the checkpoint.
    with open(path, "a") as f:
      f.write('{"step": 4, "epoch": 0.025, "phase": "search", "objective": 2.3')
  else:  # no checkpoint: the history of the lost run must not stay
    shutil.rmtree(os.path.join(workdir, "checkpoints"))
  code, resumed = h.resume(name, workdir)
  h.row(f"history.jsonl: {how}, then rerun", [first.proc.returncode, code], "", resumed, first.seconds(),
        resumed == "yes")


def case_disk_full(h: Harness, args) -> None:
  mount = os.path.join(h.base, "small_disk")
  os.makedirs(mount, exist_ok=True)
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mount], capture_output=True).returncode:
    h.row("disk full during a checkpoint save", [], "skipped: cannot mount a tmpfs (needs root)", "-", 0, True)
    return
  try:
    workdir = os.path.join(mount, "run")
    run = Run(h.base, "disk_full", workdir)
    run.wait_for(_stepped(workdir))
    filler = os.path.join(mount, "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    code = run.wait()
    line = run.line()
    os.remove(filler)
    rerun_code, resumed = h.resume("disk_full", workdir)
    h.row("disk full after the first checkpoint, space freed, rerun", [code, rerun_code], line, resumed,
          run.seconds(), code == 74 and line.startswith("unas_jax: error:") and resumed == "yes")
  finally:
    subprocess.run(["umount", mount], capture_output=True)


def case_bad_inputs(h: Harness, args) -> None:
  tmp = os.path.join(h.base, "bad")
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  a_file = os.path.join(tmp, "a_file")
  open(a_file, "w").write("x")
  binary = os.path.join(tmp, "binary.json")
  open(binary, "wb").write(bytes(range(256)))
  int_inputs = os.path.join(tmp, "int_inputs.json")
  from unas_jax.spaces import darts_genotype  # pylint: disable=import-outside-toplevel
  g = json.loads(darts_genotype.BUILTIN_GENOTYPES["unas_cifar10"].to_json())
  g["normal"][0]["inputs"] = 3
  json.dump(g, open(int_inputs, "w"))
  proxyless = ["--config=configs/proxyless_latency.py:quick"]
  evaluate = ["--config=configs/darts_cifar10_eval.py:quick"]
  cases = [
      ("log_every=0", TINY + ["--config.log_every=0"], None),
      ("checkpoint_every=0", TINY + ["--config.checkpoint_every=0"], None),
      ("search.max_steps=-1", TINY + ["--config.search.max_steps=-1"], None),
      ("latency.target_ms=-5, penalty=linear", proxyless + ["--config.latency.target_ms=-5",
                                                            "--config.latency.penalty=linear"], None),
      ("latency.target_ms=0, penalty=hinge", proxyless + ["--config.latency.target_ms=0"], None),
      ("unknown config variant :nonsense", ["--config=configs/darts_cifar10.py:nonsense"], None),
      ("workdir is a file", TINY, a_file),
      ("workdir under a file", TINY, os.path.join(a_file, "run")),
      ("workdir not creatable (/proc/...)", TINY, "/proc/unas_jax_no/run"),
      ("workdir with an unknown URI scheme", TINY, "foo://bucket/run"),
      ("genotype JSON with inputs an int", evaluate + [f"--config.model.genotype={int_inputs}"], None),
      ("genotype JSON that is binary", evaluate + [f"--config.model.genotype={binary}"], None),
  ]
  for label, config, workdir in cases:
    workdir = workdir or os.path.join(tmp, "run_" + str(abs(hash(label))))
    run = Run(h.base, "bad_" + str(abs(hash(label))), workdir, config=config)
    code = run.wait()
    line = run.line()
    created = workdir.startswith(tmp + "/run_") and os.path.exists(workdir)
    h.row(f"bad input: {label}", [code], line + (" [workdir created]" if created else ""), "-", run.seconds(),
          code == 2 and line.startswith("unas_jax: error:") and not created)
  h.row("(bad inputs: nothing created locally for foo://)", [], "", "-", 0, not os.path.exists(
      os.path.join(ROOT, "foo:")))


DAMAGES = ("truncated state/_METADATA", "empty step folder", "garbage state/_METADATA", "no state item",
           "garbage meta/metadata")

CASES = {
    "bad_inputs": case_bad_inputs,
    "sigterm": lambda h, a: case_signal(h, a, signal.SIGTERM, False),
    "sigint_twice": lambda h, a: case_signal(h, a, signal.SIGINT, True),
    "sigterm_compile": case_signal_during_compile,
    "kill9": lambda h, a: [case_kill9(h, a, i, False) for i in range(a.kills)],
    "kill9_save": lambda h, a: [case_kill9(h, a, i, True) for i in range(a.save_kills)],
    "damaged": lambda h, a: [case_damaged(h, a, how) for how in DAMAGES[:a.damages]],
    "all_damaged": case_all_damaged,
    "nonfinite": case_nonfinite,
    "history": lambda h, a: [case_history(h, a, how) for how in ("truncated last line", "no checkpoint left")],
    "disk_full": case_disk_full,
}


def markdown(rows: list[dict]) -> str:
  lines = ["| case | exit code(s) | one line printed | resumed identical | s | as required |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    line = r["line"].replace("|", "\\|")
    lines.append(f"| {r['case']} | {r['exit']} | {line} | {r['resumed']} | {r['seconds']} | "
                 f"{'yes' if r['ok'] else '**NO**'} |")
  return "\n".join(lines)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {list(CASES)}")
  parser.add_argument("--kills", type=int, default=2, help="random kill -9 repetitions")
  parser.add_argument("--damages", type=int, default=len(DAMAGES),
                      help=f"how many kinds of checkpoint damage to try, of {list(DAMAGES)}")
  parser.add_argument("--save_kills", type=int, default=1, help="kill -9 during a checkpoint write, repetitions")
  parser.add_argument("--kill_window", type=float, default=0.0,
                      help="kill -9 within this many s after setup (default: the reference run's duration)")
  parser.add_argument("--base", default=None, help="scratch folder (default: a new temporary one)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--reference", default=None,
                      help="workdir of an earlier uninterrupted run of the same config (skips the reference run)")
  parser.add_argument("--cache", default=None, help="persistent compilation cache (default <base>/xla_cache)")
  parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
  args = parser.parse_args()
  random.seed(args.seed)
  global CACHE
  CACHE = args.cache
  base = args.base or tempfile.mkdtemp(prefix="unas_fault_")
  os.makedirs(base, exist_ok=True)
  sys.path.insert(0, ROOT)
  h = Harness(base)
  wanted = [c for c in args.cases.split(",") if c]
  unknown = [c for c in wanted if c not in CASES]
  if unknown:
    parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
  needs_reference = any(c != "bad_inputs" for c in wanted)
  if needs_reference and args.reference:
    h.reference = read_run(args.reference)  # an uninterrupted run of this script's config, done before
    h.run_seconds = args.kill_window or 60.0
  elif needs_reference:
    case_reference(h, args)
    if h.reference is None:
      print("the reference run failed; see", base, file=sys.stderr)
      return 1
  for c in wanted:
    CASES[c](h, args)
  print()
  print(markdown(h.rows) if args.markdown else "\n".join(
      f"{r['case'][:70]:70s} {r['exit']:>7s} {r['resumed'][:12]:12s} {'ok' if r['ok'] else 'NOT OK'}  {r['line'][:90]}"
      for r in h.rows))
  return 0 if all(r["ok"] for r in h.rows) else 1


if __name__ == "__main__":
  sys.exit(main())
