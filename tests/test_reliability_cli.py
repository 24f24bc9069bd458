"""Bad values, workdirs and genotypes end in one line and exit 2 at start-up, before anything is compiled."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config=configs/darts_cifar10.py:quick", "--config.model.cells=3", "--config.model.channels=4",
        "--config.data.image_size=8", "--config.batch_size=8", "--config.model.ops=unas3",
        "--config.search.max_steps=6", "--config.search.init_epochs=0"]


def _main(*args, timeout=300):
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "unas_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _one_line(result, code, *fragments):
  assert result.returncode == code, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("unas_jax: error:")]
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize("override,fragment", [
    ("--config.log_every=0", "config.log_every=0 must be an integer in [1, inf)"),
    ("--config.checkpoint_every=0", "config.checkpoint_every=0 must be an integer in [1, inf)"),
    ("--config.search.max_steps=-1", "config.search.max_steps=-1 must be an integer in [0, inf)"),
])
def test_bad_values_stop_before_the_workdir_is_touched(tmp_path, override, fragment):
  workdir = tmp_path / "run"
  _one_line(_main(*TINY, override, f"--workdir={workdir}"), 2, fragment)
  assert not workdir.exists(), "validation must come before anything is created, loaded or compiled"


@pytest.mark.parametrize("penalty", ["linear", "hinge"])
def test_non_positive_latency_target(tmp_path, penalty):
  _one_line(_main("--config=configs/proxyless_latency.py:quick", "--config.latency.target_ms=-5",
                  f"--config.latency.penalty={penalty}", f"--workdir={tmp_path / 'run'}"), 2,
            "config.latency.target_ms=-5.0 must be a finite number in (0, inf)")


def test_unknown_variant_is_one_clean_line():
  line = _one_line(_main("--config=configs/darts_cifar10.py:nonsense"), 2, "unknown config variant 'nonsense'")
  assert "File " not in line and "^^^" not in line


@pytest.fixture
def read_only_dir(tmp_path):
  """A directory this process cannot write to (a read-only tmpfs when running as root)."""
  path = tmp_path / "read_only"
  path.mkdir()
  if os.geteuid() != 0:
    path.chmod(0o500)
    yield path
    path.chmod(0o700)
    return
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                    capture_output=True).returncode:
    pytest.skip("running as root and cannot mount a read-only tmpfs")
  yield path
  subprocess.run(["umount", str(path)], capture_output=True)


def test_workdir_problems_are_one_line(tmp_path, read_only_dir):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  _one_line(_main(*TINY, f"--workdir={a_file}"), 2, "is a file")
  _one_line(_main(*TINY, f"--workdir={a_file / 'sub' / 'run'}"), 2, f"lies under {a_file}, which is a file")
  _one_line(_main(*TINY, f"--workdir={read_only_dir / 'run'}"), 2, "cannot be created or written")
  _one_line(_main(*TINY, f"--workdir={read_only_dir}"), 2, "cannot be created or written")


def test_unknown_uri_scheme_is_one_line_and_creates_nothing(tmp_path):
  del tmp_path
  result = _main(*TINY, "--workdir=foo://bucket/run")
  _one_line(result, 2, "unknown URI scheme foo://")
  assert not (ROOT / "foo:").exists()


def _genotype_file(tmp_path, name, mutate):
  from unas_jax.spaces import darts_genotype
  g = json.loads(darts_genotype.BUILTIN_GENOTYPES["unas_cifar10"].to_json())
  mutate(g)
  path = tmp_path / name
  path.write_text(json.dumps(g))
  return path


@pytest.mark.parametrize("name,mutate,fragment", [
    ("inputs_int.json", lambda g: g["normal"][0].__setitem__("inputs", 3), "'inputs' and 'ops' must be lists"),
    ("ops_int.json", lambda g: g["reduce"][1].__setitem__("ops", [1, 2]), "unknown op"),
    ("concat_int.json", lambda g: g.__setitem__("normal_concat", 5), "'normal_concat' is 5"),
    ("meta_list.json", lambda g: g.__setitem__("meta", [1]), "'meta' must be a JSON object"),
])
def test_malformed_genotype_contents(tmp_path, name, mutate, fragment):
  path = _genotype_file(tmp_path, name, mutate)
  workdir = tmp_path / "run"
  _one_line(_main("--config=configs/darts_cifar10_eval.py:quick", f"--config.model.genotype={path}",
                  f"--workdir={workdir}"), 2, str(path), fragment)
  assert not workdir.exists()


def test_binary_genotype(tmp_path):
  path = tmp_path / "binary.json"
  path.write_bytes(bytes(range(256)))
  _one_line(_main("--config=configs/darts_cifar10_eval.py:quick", f"--config.model.genotype={path}",
                  f"--workdir={tmp_path / 'run'}"), 2, "not a genotype JSON file")
  from unas_jax.errors import ConfigError
  from unas_jax.spaces import proxyless
  with pytest.raises(ConfigError, match="not a genotype JSON file"):
    proxyless.ProxylessGenotype.load(str(path))
