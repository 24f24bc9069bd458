"""The DARTS-space search end to end on a tiny supernet (digits, 8x8 images)."""
import json
import os

import jax
import numpy as np
import pytest

from unas_jax.errors import ConfigError, DataError
from unas_jax.search import darts as darts_search
from unas_jax.search.darts_configs import darts_search_config
from unas_jax.spaces import darts
from unas_jax.spaces import darts_genotype
from unas_jax.utils import checkpoint as checkpoint_lib


def tiny_config(**search):
  config = darts_search_config("cifar10", "quick")
  config.data.image_size = 8
  config.batch_size = 8
  config.model.cells = 3
  config.model.channels = 4
  config.model.ops = "unas3"
  config.search.max_steps = 6
  config.search.init_epochs = 0
  config.log_every = 2
  config.checkpoint_every = 100
  for k, v in search.items():
    config.search[k] = v
  return config


def _final_phi(workdir):
  ckpt = checkpoint_lib.Checkpointer(str(workdir))
  state, meta = ckpt.read()
  return meta["step"], state["phi"]


@pytest.mark.slow
def test_search_writes_outputs_and_resumes_identically(tmp_path):
  straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
  summary = darts_search.run(tiny_config(), str(straight))
  assert os.path.exists(summary["genotype"])
  genotype = darts_genotype.Genotype.load(summary["genotype"])
  assert len(genotype.normal) == 4
  for name in ("normal_cell.png", "reduce_cell.png"):
    assert (straight / "genotype" / name).stat().st_size > 1000
  assert (straight / "selector_probabilities.png").exists()
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(straight / "tensorboard"))
  final = summary["final_eval"]
  assert len(final["random_archs_val_acc"]) == 8 and 0.0 <= final["random_archs_val_acc_mean"] <= 1.0, final
  assert final["chance_acc"] == 0.1 and final["entropy_start"] > final["entropy"] > 0, final
  assert json.load(open(straight / "summary.json"))["final_eval"] == final
  history = [json.loads(l) for l in open(straight / "history.jsonl")]
  assert [r["step"] for r in history if r.get("phase") == "search"] == [2, 4, 6]

  # Interrupted at step 3 (as on SIGTERM), then the same command again.
  stopped = darts_search.run(tiny_config(stop_at_step=3), str(interrupted))
  assert stopped == {"stopped_at": 3}
  resumed = darts_search.run(tiny_config(), str(interrupted))
  assert resumed["steps"] == 6
  (step_a, phi_a), (step_b, phi_b) = _final_phi(straight), _final_phi(interrupted)
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(phi_a), jax.tree.leaves(phi_b)):
    np.testing.assert_array_equal(a, b)
  # phi moved away from its initialisation: the comparison is not vacuous.
  assert max(float(np.max(np.abs(a))) for a in jax.tree.leaves(phi_a)) > 2e-3


def test_random_architectures_are_uniform_one_hot_and_fixed_by_seed():
  from unas_jax.search import loop
  space = darts.DartsSpace("unas4")
  phi = darts.init_phi(jax.random.key(0), space, 1.0)
  archs = loop.random_architectures(phi, 64, seed=1)
  again = loop.random_architectures(phi, 64, seed=1)
  for a, b in zip(jax.tree.leaves(archs), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)
  ops = np.stack([np.asarray(a["normal"]["ops"]) for a in archs])  # [64, 1, ..., K]
  assert ops.shape[1] == 1 and np.all(ops.sum(-1) == 1) and set(np.unique(ops)) == {0.0, 1.0}
  # Uniform, not phi's (phi has scale 1 logits): every op is drawn about equally often.
  counts = ops.reshape(-1, ops.shape[-1]).sum(0)
  assert counts.min() > 0.15 * counts.sum(), counts


def test_bad_inputs_fail_clearly(tmp_path):
  config = tiny_config()
  config.model.ops = "sep_conv_3x3,conv_9x9"
  with pytest.raises(ConfigError, match="conv_9x9"):
    darts_search.run(config, str(tmp_path / "a"))
  config = tiny_config()
  config.data.train_portion = 1.5
  with pytest.raises(ConfigError, match="train_portion"):
    darts_search.run(config, str(tmp_path / "b"))
  config = tiny_config()
  config.data.name = "cifar10"
  config.data.data_dir = str(tmp_path / "empty_tfds")
  with pytest.raises(DataError, match="cifar10"):
    darts_search.run(config, str(tmp_path / "c"))
  config = tiny_config()
  config.data.image_size = 10
  with pytest.raises(ConfigError, match="10x10 input: use a height and width divisible by 4 .*; set data.image_size"):
    darts_search.run(config, str(tmp_path / "e"))
  config = tiny_config(estimator="snas")
  with pytest.raises(ConfigError, match="estimator"):
    darts_search.run(config, str(tmp_path / "d"))
