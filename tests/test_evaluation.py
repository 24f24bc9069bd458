"""The evaluate job: configs, validation, summary, network adapters and a tiny training run."""
import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from unas_jax.errors import ConfigError
from unas_jax.evaluation import defaults, networks, run as run_lib, trainer
from unas_jax.nn import functional
from unas_jax.spaces import reference_counts

CONFIGS = ["darts_cifar10_eval", "darts_cifar100_eval", "darts_imagenet_eval", "proxyless_imagenet_eval"]


def _config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), "..", "configs",
                                                                     f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "quick"])
def test_configs_load_validate_and_share_keys(name, arg):
  config = _config(name, arg)
  run_lib.check_config(config)
  assert config.job == "evaluate"
  reference = defaults.base_config("x", "digits", space=config.model.space)
  assert sorted(config.keys()) == sorted(reference.keys())
  for block in ("train", "model", "data", "mesh"):
    assert sorted(config[block].keys()) == sorted(reference[block].keys()), block
  if arg == "quick":
    assert config.data.name == "digits"


def test_recipes():
  c10, c100 = _config("darts_cifar10_eval"), _config("darts_cifar100_eval")
  for c in (c10, c100):
    t = c.train
    assert (c.model.num_cells, c.model.channels, c.model.auxiliary, t.aux_weight) == (20, 36, True, 0.4)
    assert (c.data.cutout, t.momentum, t.weight_decay, c.batch_size, t.lr, t.warmup_epochs, t.epochs,
            t.grad_clip) == (16, 0.9, 3e-4, 128, 0.05, 30, 600, 5.0)
  assert (c10.train.drop_path, c100.train.drop_path) == (0.2, 0.3)
  im = _config("darts_imagenet_eval")
  assert (im.model.num_cells, im.model.channels, im.train.label_smoothing, im.model.auxiliary) == (14, 48, 0.1, True)
  px = _config("proxyless_imagenet_eval")
  t = px.train
  assert (t.nesterov, t.label_smoothing, t.weight_decay, t.no_decay_bn, t.lr * 256 / t.lr_reference_batch) == (
      True, 0.1, 4e-5, True, 0.05)


@pytest.mark.parametrize("override,message", [
    (("train", "lr", -1.0), "config.train.lr"),
    (("train", "drop_path", 1.0), "drop_path"),
    (("model", "space", "nasnet"), "config.model.space"),
    (("model", "network", "resnet"), "config.model.network"),
    (("model", "genotype", "unas_cifar11"), "neither a built-in genotype"),
    (("model", "num_cells", 2), "num_cells"),
    (("model", "aux_head_bn", "maybe"), "aux_head_bn"),
])
def test_bad_values_fail_with_one_line_config_errors(tmp_path, override, message):
  config = _config("darts_cifar10_eval", "quick")
  block, key, value = override
  config[block][key] = value
  with pytest.raises(ConfigError, match=message) as e:
    run_lib.run(config, str(tmp_path))
  assert "\n" not in str(e.value)


def test_summary_only_needs_no_data(tmp_path, capsys):
  config = _config("darts_imagenet_eval")
  config.data.data_dir = str(tmp_path / "no_tfds_here")
  config.summary_only = True
  out = run_lib.run(config, str(tmp_path))
  summary = json.loads((tmp_path / "network_summary.json").read_text())
  assert summary == json.loads(json.dumps(out["summary"]))
  # unas_imagenet, 14 cells, 48 channels: tests/test_darts_network.py REFERENCE.
  assert (summary["params"], summary["params_without_aux"], summary["macs"]) == (6741192, 5478880, 595184256)
  assert "5.479M parameters (6.741M with the auxiliary head), 595.2M multiply-adds" in capsys.readouterr().out


def test_weight_decay_mask_spares_only_batch_norm():
  model = networks.from_config(_config("darts_cifar10_eval", "quick").model).abstract(_Info())
  _, _, w, _ = functional.split(model)
  mask = trainer.weight_decay_mask(model, w)
  flat = {tuple(getattr(k, "key", getattr(k, "idx", k)) for k in p): v
          for p, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat[("stem_bn", "scale")] is False and flat[("stem_bn", "bias")] is False
  assert flat[("stem_conv", "kernel")] is True
  assert flat[("classifier", "bias")] is True  # a linear layer's bias is decayed (ProxylessNAS: only 'bn')
  assert flat[("cells", 0, "preprocess1", "bn", "scale")] is False


class _Info:
  num_classes = 10
  image_shape = (32, 32, 3)


def _tiny_config(tmp_path):
  config = _config("darts_cifar10_eval", "quick")
  config.model.channels, config.model.num_cells = 4, 3
  config.batch_size = 32
  config.train.max_steps = 4
  config.train.warmup_epochs = 0.0
  config.log_every = 1
  config.checkpoint_every = 100
  config.eval_every_epochs = 100.0
  return config


@pytest.mark.slow
def test_tiny_training_run_writes_results_and_resumes(tmp_path, capsys):
  config = _tiny_config(tmp_path)
  config.train.stop_at_step = 2
  out = run_lib.run(config, str(tmp_path))
  assert out == {"stopped_at": 2}
  assert not (tmp_path / "results.json").exists()
  config.train.stop_at_step = -1
  out = run_lib.run(config, str(tmp_path))
  assert "Resuming from step 2" in capsys.readouterr().out
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["steps"] == 4 and results["dataset"] == "digits"
  assert 0.0 <= results["test"]["top1"] <= results["test"]["top5"] <= 1.0
  assert results["test"]["examples"] == 359
  assert results["network"]["params"] > results["network"]["params_without_aux"]
  steps = [r["step"] for r in map(json.loads, (tmp_path / "history.jsonl").read_text().splitlines())
           if r.get("phase") != "test"]
  assert steps == [1, 2, 3, 4]
  assert (tmp_path / "train_curves.png").exists() and (tmp_path / "test_curves.png").exists()
  history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert all(np.isfinite(r["loss"]) for r in history)
  assert out["test"] == results["test"]


# ---------------------------------------------------------------- ProxylessNAS


def test_proxyless_adapter_call_convention_and_counts():
  from unas_jax.nn import proxyless_network  # pylint: disable=import-outside-toplevel
  config = _config("proxyless_imagenet_eval", "quick")
  network = networks.from_config(config.model)
  model_def, _, w, stats = functional.split(network.abstract(_Info()))
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), np.float32)
  logits, aux = jax.eval_shape(lambda w, stats, x: functional.apply(
      model_def, w, stats, x, train=True, key=jax.random.key(0), drop_path=0.0)[0], w, stats, x)
  assert logits.shape == (2, 10) and aux is None
  widths = tuple(int(v) for v in config.model.widths.split(","))
  assert functional.count_params(w) == proxyless_network.count_params("unas_proxyless", widths, 10)
  assert not any(network.is_aux(p) for p in [("net", "stem")])


@pytest.mark.parametrize("genotype", ["unas_proxyless", "proxylessnas_gpu"])
def test_proxyless_networks_match_the_reference(genotype):
  # Ground truth: the PyTorch reference at GPU widths (unas_jax/spaces/reference_counts.py).
  params, _, macs = reference_counts.REFERENCE_COUNTS[(genotype, "gpu")]
  model = defaults.model_block("proxyless")
  model.genotype = genotype
  network = networks.from_config(model)

  class Info:
    num_classes = 1000
    image_shape = (224, 224, 3)
  _, _, w, _ = functional.split(network.abstract(Info()))
  assert functional.count_params(w) == params
  assert network.macs(Info()) == macs


