"""The phone latency table ships with the package: ``latency.lut_path='builtin:proxylessnas_mobile_trim'``.

No config or code path may depend on data beside the checkout (``../shared``).
"""
import ast
import fnmatch
import importlib.util
import os
import pathlib

import pytest

from unas_jax.errors import ConfigError
from unas_jax.latency import tables
from unas_jax.latency.lut import LatencyLUT
from unas_jax.spaces import proxyless as sp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(arg):
  spec = importlib.util.spec_from_file_location("proxyless_latency", ROOT / "configs" / "proxyless_latency.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_builtin_table_resolves_inside_the_package_and_prices_published_networks():
  path = pathlib.Path(tables.resolve(tables.MOBILE_TABLE))
  assert path.is_file() and path.parent.parent == ROOT / "unas_jax" / "latency"
  lut = LatencyLUT.from_yaml(str(path))
  # The published ProxylessNAS / UNAS networks on the Pixel 1 table (values as with the original file).
  assert lut.latency("unas_proxyless") == pytest.approx(64.538, abs=1e-3)
  assert lut.latency("proxylessnas_gpu") == pytest.approx(65.846, abs=1e-3)
  assert lut.latency(sp.all_zero_genotype()) == pytest.approx(lut.additive("mobile", 224).min_latency())


def test_builtin_table_is_the_published_file_unchanged(shared_data):
  packaged = pathlib.Path(tables.resolve(tables.MOBILE_TABLE)).read_bytes()
  assert packaged == (shared_data / "proxylessnas_mobile_trim.yaml").read_bytes()


def test_paths_and_unknown_builtins():
  assert tables.resolve("some/table.yaml") == "some/table.yaml"
  with pytest.raises(ConfigError, match="not a built-in table"):
    tables.resolve("builtin:pixel9")


@pytest.mark.parametrize("arg", ["lut", "quick_lut"])
def test_table_configs_use_the_packaged_table(arg):
  config = _config(arg)
  assert config.latency.lut_path == tables.MOBILE_TABLE
  assert os.path.isfile(tables.resolve(config.latency.lut_path))


def test_nothing_in_the_product_points_at_shared_data():
  for folder in ("configs", "unas_jax"):
    for path in (ROOT / folder).rglob("*.py"):
      text = path.read_text()
      assert "../shared" not in text and "shared/data" not in text, path


def test_setup_ships_the_table():
  tree = ast.parse((ROOT / "setup.py").read_text())
  package_data = next(kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                      for kw in node.keywords if kw.arg == "package_data")
  patterns = ast.literal_eval(package_data)["unas_jax.latency"]
  for name in ("data/proxylessnas_mobile_trim.yaml", "data/README.md"):
    assert (ROOT / "unas_jax" / "latency" / name).is_file()
    assert any(fnmatch.fnmatch(name, p) for p in patterns), name
