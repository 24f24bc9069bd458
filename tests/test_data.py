"""The data layer: sources, splits, augmentation, resumable and sharded batches."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from unas_jax import data
from unas_jax.data import augment as aug
from unas_jax.data.batching import stream_positions
from unas_jax.errors import ConfigError, DataError


# --------------------------------------------------------------------------- helpers


def _indexed_npz(path, n_train=50, n_test=13, size=8, channels=3, **extra):
  """A .npz whose image i carries its index in pixel (0, 0) channels 0/1 (when 3 channels)."""
  rng = np.random.default_rng(0)
  shape = (size, size, channels) if channels else (size, size)

  def images(n):
    x = rng.integers(0, 256, (n,) + shape, dtype=np.uint8)
    if channels == 3:
      x[:, 0, 0, 0] = np.arange(n) % 256
      x[:, 0, 0, 1] = np.arange(n) // 256
    return x

  arrays = dict(x_train=images(n_train), y_train=np.arange(n_train) % 5,
                x_test=images(n_test), y_test=np.arange(n_test) % 5)
  arrays.update(extra)
  np.savez(path, **arrays)
  return arrays


def _ids(x_normalised, info):
  """Recovers the indices written by _indexed_npz from normalised, unaugmented images."""
  raw = np.rint((x_normalised[:, 0, 0, :2] * np.asarray(info.std[:2]) + np.asarray(info.mean[:2])) * 255)
  return (raw[:, 0] + 256 * raw[:, 1]).astype(int)


@pytest.fixture
def npz_dataset(tmp_path):
  path = tmp_path / "d.npz"
  _indexed_npz(path)
  return data.load({"name": "npz", "npz_path": str(path), "train_portion": 0.8})


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("portion", [0.0, 1.0, 1.5, -0.1, "0.9"])
def test_train_portion_outside_unit_interval_is_rejected(portion):
  with pytest.raises(ConfigError, match="train_portion"):
    data.load({"name": "digits", "train_portion": portion})


def test_bad_config_keys_and_names_are_rejected():
  with pytest.raises(ConfigError, match="unknown config.data key"):
    data.load({"name": "digits", "imagesize": 16})
  with pytest.raises(ConfigError, match="is not one of"):
    data.load({"name": "mnist"})
  with pytest.raises(ConfigError, match="npz_path"):
    data.load({"name": "npz"})
  with pytest.raises(ConfigError, match="must be 1, 3"):
    data.load({"name": "digits", "channels": 2})


def test_default_config_holds_every_key():
  config = data.default_config()
  assert config.name == "digits" and config.train_portion == 0.9
  assert data.resolve(config).name == "digits"
  config.train_portion = 0.5  # the block is an ordinary overridable ConfigDict
  assert data.resolve(config).train_portion == 0.5


def test_in_memory_sources_import_neither_tensorflow_nor_jax(tmp_path):
  """Digits/.npz start fast and touch no device before jax.distributed.initialize()."""
  code = ("import sys; from unas_jax import data; d = data.load('digits'); "
          "next(data.search_batches(d, 4, 0)); "
          "print(sorted(m for m in ('tensorflow', 'jax', 'tensorflow_datasets') if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- digits


def test_digits_loads_and_splits_deterministically(digits):
  again = data.load({"name": "digits"})
  info = digits.info
  assert info.num_classes == 10 and info.image_shape == (32, 32, 3)
  assert info.sizes["train"] + info.sizes["test"] == 1797
  assert info.sizes["test"] == 359  # a fixed stratified 80/20 split: round(0.2 * n_c) per class
  assert set(np.unique(digits.y_test)) == set(range(10))
  assert digits.x_train.dtype == np.uint8
  np.testing.assert_array_equal(digits.x_train, again.x_train)
  np.testing.assert_array_equal(digits.y_test, again.y_test)
  st, sv = digits.indices["search_train"], digits.indices["search_val"]
  np.testing.assert_array_equal(st, again.indices["search_train"])
  assert len(st) == round(0.9 * info.sizes["train"])
  assert not set(st) & set(sv) and len(st) + len(sv) == info.sizes["train"]
  # 3 identical channels (grayscale replicated) and no flips for digits.
  np.testing.assert_array_equal(digits.x_train[..., 0], digits.x_train[..., 2])
  assert digits.augment == aug.AugmentSpec(crop_padding=4, flip=False, cutout=0)


def test_split_seed_changes_only_the_search_split(digits):
  other = data.load({"name": "digits", "split_seed": 1})
  np.testing.assert_array_equal(other.x_test, digits.x_test)
  assert not np.array_equal(other.indices["search_val"], digits.indices["search_val"])


def test_digits_size_and_channels_follow_the_config():
  small = data.load({"name": "digits", "image_size": 16, "channels": 1})
  assert small.info.image_shape == (16, 16, 1)
  assert small.augment.crop_padding == 2  # 4 pixels at 32, scaled to 16
  native = data.load({"name": "digits", "image_size": 8})
  from sklearn.datasets import load_digits
  raw = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
  # Size 8 is the native size: pixels unchanged, only the split reorders them.
  all_images = np.concatenate([native.x_train[..., 0], native.x_test[..., 0]])
  assert sorted(map(bytes, all_images)) == sorted(map(bytes, raw))


def test_resize_matches_jax_antialiased_bilinear():
  import jax
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
  for h, w in [(32, 32), (5, 7), (16, 6)]:
    want = jax.image.resize(x.astype(np.float32), (3, h, w, 3), "linear", antialias=True)
    got = aug.resize(x, h, w)
    np.testing.assert_allclose(got, np.clip(np.asarray(want), 0, 255), atol=0.51 + 1e-3)


# --------------------------------------------------------------------------- npz


def test_npz_source_loads_grayscale_and_keras_labels(tmp_path):
  path = tmp_path / "g.npz"
  rng = np.random.default_rng(1)
  np.savez(path, x_train=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
           y_train=(np.arange(20) % 4)[:, None], x_test=rng.integers(0, 256, (8, 6, 6), dtype=np.uint8),
           y_test=np.arange(8) % 4, class_names=np.array(["a", "b", "c", "d"]))
  ds = data.load({"name": "npz", "npz_path": str(path), "train_portion": 0.5})
  assert ds.info.image_shape == (6, 6, 1)
  assert ds.info.class_names == ("a", "b", "c", "d") and ds.info.num_classes == 4
  assert ds.info.sizes == {"train": 20, "search_train": 10, "search_val": 10, "test": 8}
  rgb = data.load({"name": "npz", "npz_path": str(path), "channels": 3, "image_size": 12})
  assert rgb.info.image_shape == (12, 12, 3)
  x, y = next(data.train_batches(rgb, 4, seed=0))
  assert x.shape == (4, 12, 12, 3) and x.dtype == np.float32 and y.dtype == np.int32


def test_npz_errors_are_clear(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    data.load({"name": "npz", "npz_path": str(tmp_path / "absent.npz")})
  path = tmp_path / "partial.npz"
  np.savez(path, x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.zeros(4, np.int64))
  with pytest.raises(DataError, match=r"lacks array\(s\) \['x_test', 'y_test'\]") as err:
    data.load({"name": "npz", "npz_path": str(path)})
  assert "\n" not in str(err.value)
  _indexed_npz(tmp_path / "len.npz", y_train=np.zeros(7, np.int64))
  with pytest.raises(DataError, match="expected 50 integer labels"):
    data.load({"name": "npz", "npz_path": str(tmp_path / "len.npz")})
  _indexed_npz(tmp_path / "float.npz", x_test=np.zeros((13, 8, 8, 3), np.float32))
  with pytest.raises(DataError, match="dtype float32; expected uint8"):
    data.load({"name": "npz", "npz_path": str(tmp_path / "float.npz")})
  _indexed_npz(tmp_path / "shape.npz", x_test=np.zeros((13, 9, 8, 3), np.uint8))
  with pytest.raises(DataError, match="same"):
    data.load({"name": "npz", "npz_path": str(tmp_path / "shape.npz")})
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(DataError, match="cannot be read"):
    data.load({"name": "npz", "npz_path": str(tmp_path / "junk.npz")})


def test_cifar10_subset_loads(shared_data):
  ds = data.load({"name": "npz", "npz_path": str(shared_data / "cifar10_subset.npz")})
  info = ds.info
  assert info.sizes == {"train": 10000, "search_train": 9000, "search_val": 1000, "test": 2000}
  assert info.image_shape == (32, 32, 3) and info.num_classes == 10
  assert info.class_names[0] == "airplane"
  np.testing.assert_allclose(info.mean, data.sources.STATS["cifar10"][0], atol=0.01)
  assert ds.augment == aug.AugmentSpec(crop_padding=4, flip=True, cutout=0)
  (xt, yt), (xv, yv) = next(data.search_batches(ds, 32, seed=0))
  assert xt.shape == xv.shape == (32, 32, 32, 3) and yt.shape == yv.shape == (32,)
  assert abs(float(xt.mean())) < 0.5 and 0.5 < float(xt.std()) < 1.5  # roughly normalised


# --------------------------------------------------------------------------- tfds


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet2012"])
def test_missing_tfds_dataset_fails_fast_with_preparation_steps(tmp_path, name):
  import tensorflow_datasets  # noqa: F401  (import time is not what is measured)
  start = time.perf_counter()
  with pytest.raises(DataError) as err:
    data.load({"name": name, "data_dir": str(tmp_path)})
  assert time.perf_counter() - start < 5.0
  message = str(err.value)
  assert "\n" not in message
  assert f"tfds.builder('{name}', data_dir='{tmp_path}').download_and_prepare()" in message
  assert "--config.data.name=digits" in message
  if name == "imagenet2012":
    assert f"{tmp_path}/downloads/manual/" in message and "ILSVRC2012_img_train.tar" in message
  assert not any(tmp_path.iterdir())  # nothing was downloaded or created


_PREPARE = r"""
import io, os, sys, tarfile
from unittest import mock
import numpy as np
from PIL import Image
try:
  import importlib_resources  # noqa: F401
except ImportError:
  # tfds 4.9.x imports it while preparing but declares it only for Python < 3.9
  # (tensorflow/datasets#11212); the standard library's module has what it uses.
  import importlib.resources
  sys.modules["importlib_resources"] = importlib.resources
import tensorflow_datasets as tfds

root = sys.argv[1]
rng = np.random.default_rng(0)

# CIFAR-10: fake extracted binaries, "downloaded" by a patched download manager.
extracted = os.path.join(root, "cifar_extracted")
binaries = os.path.join(extracted, "cifar-10-batches-bin")
os.makedirs(binaries)
def write(name, labels):
  images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
  np.concatenate([labels[:, None].astype(np.uint8), images.reshape(len(labels), -1)], 1).tofile(
      os.path.join(binaries, name))
  return images.transpose(0, 2, 3, 1)
train = [write(f"data_batch_{i + 1}.bin", np.arange(i * 8, i * 8 + 8) % 10) for i in range(5)]
test = write("test_batch.bin", np.arange(10) % 10)
with open(os.path.join(binaries, "batches.meta.txt"), "w") as f:
  f.write("\n".join("airplane automobile bird cat deer dog frog horse ship truck".split()) + "\n")
np.savez(os.path.join(root, "cifar_truth.npz"), x_train=np.concatenate(train),
         y_train=np.arange(40) % 10, x_test=test, y_test=np.arange(10) % 10)
with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                       lambda self, url: extracted):
  tfds.builder("cifar10", data_dir=os.path.join(root, "tfds")).download_and_prepare()

# imagenet2012: fake manual tars in <data_dir>/downloads/manual, then the exact
# command that the DataError message gives.
manual = os.path.join(root, "tfds", "downloads", "manual")
os.makedirs(manual)
def jpeg(h, w):
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
  return buf.getvalue()
def add(tar, name, payload):
  info = tarfile.TarInfo(name)
  info.size = len(payload)
  tar.addfile(info, io.BytesIO(payload))
with tarfile.open(os.path.join(manual, "ILSVRC2012_img_train.tar"), "w") as outer:
  for synset in ["n01440764", "n01443537", "n01484850"]:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as tar:
      for i in range(10):
        add(tar, f"{synset}_{i}.JPEG", jpeg(30 + 3 * i, 50 - 2 * i))
    add(outer, f"{synset}.tar", inner.getvalue())
with tarfile.open(os.path.join(manual, "ILSVRC2012_img_val.tar"), "w") as tar:
  for i in range(7):
    add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg(40, 33))
tfds.builder("imagenet2012", data_dir=os.path.join(root, "tfds")).download_and_prepare()
"""


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """A tfds data_dir with fake but genuinely prepared cifar10 (40/10) and imagenet2012 (30/7).

  Prepared in a subprocess so that its workaround for a missing tfds dependency
  does not leak into the reading code under test.
  """
  root = tmp_path_factory.mktemp("tfds")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", textwrap.dedent(_PREPARE), str(root)], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return root


def test_cifar10_from_prepared_tfds_dir(tfds_dir):
  ds = data.load({"name": "cifar10", "data_dir": str(tfds_dir / "tfds"), "train_portion": 0.75})
  truth = np.load(tfds_dir / "cifar_truth.npz")
  assert ds.info.class_names[:2] == ("airplane", "automobile")
  assert ds.info.sizes == {"train": 40, "search_train": 30, "search_val": 10, "test": 10}
  assert ds.info.mean == data.sources.STATS["cifar10"][0]
  # Same (image, label) pairs as written, in tfds's order.
  for x, y, key in [(ds.x_train, ds.y_train, "train"), (ds.x_test, ds.y_test, "test")]:
    want = sorted((bytes(a), int(b)) for a, b in zip(truth[f"x_{key}"], truth[f"y_{key}"]))
    assert sorted((bytes(a), int(b)) for a, b in zip(x, y)) == want


def test_imagenet_streams_resumes_and_shards(tfds_dir):
  config = {"name": "imagenet2012", "data_dir": str(tfds_dir / "tfds"), "image_size": 24,
            "train_portion": 0.8, "shuffle_buffer": 8}
  ds = data.load(config)
  info = ds.info
  assert info.streaming and info.num_classes == 1000 and info.image_shape == (24, 24, 3)
  assert info.sizes == {"train": 30, "search_train": 24, "search_val": 6, "test": 7}
  assert data.steps_per_epoch(ds, "train", 4) == 7
  it = data.train_batches(ds, 4, seed=3)
  run = [next(it) for _ in range(10)]  # crosses an epoch boundary (7 steps)
  for x, y in run:
    assert x.shape == (4, 24, 24, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert set(y) <= {0, 1, 2}  # the three synsets are labels 0, 1, 2
  resumed = data.train_batches(ds, 4, seed=3, start_step=5)
  for step in range(5, 10):
    x, y = next(resumed)
    np.testing.assert_array_equal(x, run[step][0])
    np.testing.assert_array_equal(y, run[step][1])
  other = next(data.train_batches(ds, 4, seed=4))
  assert not np.array_equal(other[0], run[0][0])
  # Evaluation: every validation image once, padded batches masked; 2 processes
  # read disjoint halves and yield the same number of batches.
  batches = list(data.eval_batches(ds, 4))
  assert len(batches) == data.num_eval_batches(ds, 4) == 2
  assert sum(int(m.sum()) for _, _, m in batches) == 7
  single = np.concatenate([x[m] for x, _, m in batches])
  shards = [list(data.eval_batches(ds, 4, process_index=p, process_count=2)) for p in range(2)]
  assert len(shards[0]) == len(shards[1]) == data.num_eval_batches(ds, 4, process_count=2)
  sharded = np.concatenate([x[m] for shard in shards for x, _, m in shard])
  np.testing.assert_allclose(sharded, single, atol=1e-6)
  (xt, _), (xv, _) = next(data.search_batches(ds, 2, seed=0))
  assert xt.shape == xv.shape == (2, 24, 24, 3)
  # Training streams of 2 processes: half batches from disjoint halves of train.
  assert data.imagenet.local_range(ds, "train", 0, 2) == ("train", 0, 15)
  assert data.imagenet.local_range(ds, "train", 1, 2) == ("train", 15, 30)
  x, y = next(data.train_batches(ds, 4, seed=3, process_index=1, process_count=2))
  assert x.shape == (2, 24, 24, 3) and y.shape == (2,)


# --------------------------------------------------------------------------- batches


def test_batches_are_a_pure_function_of_seed_and_step(npz_dataset):
  run = [b for _, b in zip(range(12), data.search_batches(npz_dataset, 8, seed=7))]
  resumed = data.search_batches(npz_dataset, 8, seed=7, start_step=9)
  for step in range(9, 12):
    (xt, yt), (xv, yv) = next(resumed)
    (xt0, yt0), (xv0, yv0) = run[step]
    np.testing.assert_array_equal(xt, xt0)
    np.testing.assert_array_equal(yv, yv0)
    np.testing.assert_array_equal(xv, xv0)
  x, _ = data.batch_at(npz_dataset, "search_train", 8, 7, 11)
  np.testing.assert_array_equal(x, run[11][0][0])
  other = data.batch_at(npz_dataset, "search_train", 8, 8, 11)[0]
  assert not np.array_equal(other, x)


def test_stream_is_a_sequence_of_permutations(npz_dataset):
  n = npz_dataset.info.sizes["search_train"]
  indices = npz_dataset.indices["search_train"]
  positions = stream_positions(npz_dataset, "search_train", 0, 0, 3 * n)
  for epoch in range(3):
    assert sorted(positions[epoch * n:(epoch + 1) * n]) == sorted(indices)
  assert not np.array_equal(positions[:n], positions[n:2 * n])  # reshuffled every epoch


def test_search_pairs_come_from_disjoint_splits(npz_dataset):
  info = npz_dataset.info
  seen_train, seen_val = set(), set()
  for step, ((xt, yt), (xv, yv)) in zip(range(10), data.search_batches(
      npz_dataset, 8, seed=0, augment_batches=False)):
    ids_t, ids_v = _ids(xt, info), _ids(xv, info)
    np.testing.assert_array_equal(yt, npz_dataset.y_train[ids_t])
    seen_train |= set(ids_t)
    seen_val |= set(ids_v)
  assert seen_train == set(npz_dataset.indices["search_train"])
  assert seen_val == set(npz_dataset.indices["search_val"])


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_shards_partition_the_global_batch(npz_dataset, process_count):
  for step in (0, 3, 17):
    full = data.batch_at(npz_dataset, "train", 8, 5, step)
    shards = [data.batch_at(npz_dataset, "train", 8, 5, step, process_index=p,
                            process_count=process_count) for p in range(process_count)]
    assert all(s[0].shape[0] == 8 // process_count for s in shards)
    np.testing.assert_array_equal(np.concatenate([s[0] for s in shards]), full[0])
    np.testing.assert_array_equal(np.concatenate([s[1] for s in shards]), full[1])
  with pytest.raises(ConfigError, match="not divisible"):
    data.train_batches(npz_dataset, 6, seed=0, process_count=4)
  with pytest.raises(ConfigError, match="process_index"):
    data.eval_batches(npz_dataset, 8, process_index=2, process_count=2)


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_pass_covers_every_example_once(npz_dataset, process_count):
  info = npz_dataset.info
  n = info.sizes["test"]
  shards = [list(data.eval_batches(npz_dataset, 6, process_index=p, process_count=process_count))
            for p in range(process_count)]
  assert all(len(s) == data.num_eval_batches(npz_dataset, 6) == 3 for s in shards)
  ids, labels = [], []
  for batch in zip(*shards):  # global batches, in order
    x = np.concatenate([b[0] for b in batch])
    y = np.concatenate([b[1] for b in batch])
    mask = np.concatenate([b[2] for b in batch])
    assert x.shape == (6, 8, 8, 3) and mask.dtype == bool
    assert not x[~mask].any() and not y[~mask].any()  # padding is zeros
    ids += list(_ids(x[mask], info))
    labels += list(y[mask])
  assert ids == list(range(n))
  np.testing.assert_array_equal(labels, npz_dataset.y_test)


def test_train_portion_leaving_an_empty_split_is_a_data_error(tmp_path):
  _indexed_npz(tmp_path / "tiny.npz", n_train=5)
  with pytest.raises(DataError, match="empty search split"):
    data.load({"name": "npz", "npz_path": str(tmp_path / "tiny.npz"), "train_portion": 0.95})


# --------------------------------------------------------------------------- augmentation


def _reference_crop_flip(x, offset, flip, pad):
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = x.shape[1:3]
  out = np.stack([padded[i, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offset)])
  out[flip] = out[flip, :, ::-1]
  return out


@pytest.mark.parametrize("pad", [0, 1, 4, 9])
def test_crop_flip_equals_pad_then_slice_then_mirror(pad):
  rng = np.random.default_rng(pad)
  x = rng.integers(0, 256, (16, 10, 7, 3), dtype=np.uint8)
  offset = rng.integers(0, 2 * pad + 1, (16, 2))
  flip = rng.random(16) < 0.5
  got = aug.crop_flip(x, offset, flip, pad)
  assert got.dtype == np.uint8 and got.shape == x.shape
  np.testing.assert_array_equal(got, _reference_crop_flip(x, offset, flip, pad))
  if pad == 0:  # no padding: flips only
    np.testing.assert_array_equal(got[~flip], x[~flip])
    np.testing.assert_array_equal(got[flip], x[flip][:, :, ::-1])


def test_cutout_zeroes_a_clipped_square():
  x = np.ones((2, 10, 10, 3), np.float32)
  out = aug.cutout(x, np.array([[5, 5], [0, 9]]), 4)
  assert out[0].sum() == 3 * (100 - 16) and not out[0, 3:7, 3:7].any()
  assert out[1].sum() == 3 * (100 - 2 * 3) and not out[1, 0:2, 7:10].any()


def test_augmented_batches_keep_shape_dtype_and_statistics(tmp_path):
  path = tmp_path / "a.npz"
  _indexed_npz(path, size=16)
  plain = data.load({"name": "npz", "npz_path": str(path), "crop_padding": 0, "flip": False})
  x_plain, y_plain = data.batch_at(plain, "train", 10, 0, 0)
  x_raw, y_raw = data.batch_at(plain, "train", 10, 0, 0, augment_batch=False)
  np.testing.assert_array_equal(x_plain, x_raw)  # nothing enabled: only normalised
  np.testing.assert_array_equal(y_plain, y_raw)
  rows = stream_positions(plain, "train", 0, 0, 10)
  np.testing.assert_allclose(
      x_raw, (plain.x_train[rows] / 255.0 - np.asarray(plain.info.mean)) / np.asarray(plain.info.std),
      rtol=1e-5, atol=1e-5)
  full = data.load({"name": "npz", "npz_path": str(path), "cutout": 6})
  assert full.augment == aug.AugmentSpec(crop_padding=2, flip=True, cutout=6)
  x, y = data.batch_at(full, "train", 10, 0, 0)
  assert x.shape == (10, 16, 16, 3) and x.dtype == np.float32 and y.dtype == np.int32
  np.testing.assert_array_equal(y, y_raw)  # same examples, augmented
  assert not np.array_equal(x, x_raw)
  # Each image has a cutout square of at least 3x3 (6x6 clipped at a corner).
  assert all((np.abs(img).sum(-1) == 0).sum() >= 9 for img in x)


def test_prefetch_preserves_order_and_raises_producer_errors():
  assert list(data.prefetch(iter(range(50)), size=3)) == list(range(50))

  def broken():
    yield 1
    raise DataError("disk vanished")

  it = data.prefetch(broken())
  assert next(it) == 1
  with pytest.raises(DataError, match="disk vanished"):
    next(it)


# --------------------------------------------------------------------------- device-side finishing


def test_raw_batches_finished_on_the_device_equal_host_batches(tmp_path):
  """uint8 to the device, normalisation and cutout there: the host's float32 batches, to float rounding.

  Tolerance 1e-6 absolute on values of magnitude <= ~3 (a few float32 ulps): the same float32
  constants and operations, but XLA may fuse them differently from numpy.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from unas_jax.data import device as device_lib  # pylint: disable=import-outside-toplevel
  from unas_jax.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  _indexed_npz(tmp_path / "d.npz", n_train=40, n_test=13, size=12)
  ds = data.load({"name": "npz", "npz_path": str(tmp_path / "d.npz"), "cutout": 5, "flip": True})
  assert ds.augment.cutout == 5 and ds.augment.crop_padding > 0
  mesh = mesh_lib.make_mesh(1)
  put = device_lib.make_finisher(ds.info, mesh)
  for step in range(3):
    raw = data.batch_at(ds, "train", 8, 0, step, raw=True)
    assert raw["image"].dtype == np.uint8 and raw["cutout"].shape == (8, 4) and raw["label"].dtype == np.int32
    x_host, y_host = data.batch_at(ds, "train", 8, 0, step)
    x_dev, y_dev = jax.device_get(put(raw))
    assert x_dev.dtype == np.float32 and np.sum(x_host == 0.0) >= 8 * 5  # cutout squares are there
    np.testing.assert_allclose(x_dev, x_host, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y_dev, y_host)
  # Evaluation: 13 test images in batches of 8, the last padded (mask False, image 0).
  host = list(data.eval_batches(ds, 8))
  dev = list(device_lib.batches(data.eval_batches(ds, 8, raw=True), ds.info, mesh))
  assert len(host) == len(dev) == 2
  for (xh, yh, mh), (xd, yd, md) in zip(host, jax.device_get(dev)):
    np.testing.assert_allclose(xd, xh, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(yd, yh)
    np.testing.assert_array_equal(md, mh.astype(np.float32))
  assert np.all(np.asarray(dev[1][0])[5:] == 0.0) and np.asarray(dev[1][2]).sum() == 5
  # Search pairs: the same pairs as the host's.
  pairs = device_lib.search_pairs(data.search_batches(ds, 4, 1, raw=True), ds.info, mesh)
  for ((xt, yt), (xv, yv)), ((ht, hyt), (hv, hyv)) in zip([next(pairs) for _ in range(2)],
                                                        [next(data.search_batches(ds, 4, 1, start_step=s))
                                                         for s in range(2)]):
    np.testing.assert_allclose(np.asarray(xt), ht, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(xv), hv, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(yt), hyt)


def test_device_prefetch_puts_the_next_batch_before_yielding_this_one():
  from unas_jax.data import device as device_lib  # pylint: disable=import-outside-toplevel
  put = []

  def put_fn(item):
    put.append(item)
    return item * 10

  it = device_lib.device_prefetch(iter(range(5)), put_fn, ahead=1)
  assert next(it) == 0 and put == [0, 1]  # batch 1 is in flight while step 0 runs
  assert next(it) == 10 and put == [0, 1, 2]
  assert list(it) == [20, 30, 40] and put == [0, 1, 2, 3, 4]
  assert list(device_lib.device_prefetch(iter(range(3)), put_fn, ahead=0)) == [0, 10, 20]
  with pytest.raises(ValueError, match="ahead"):
    next(device_lib.device_prefetch(iter(range(3)), put_fn, ahead=-1))


def test_imagenet_raw_batches_are_uint8_and_normalise_on_the_device(tfds_dir):
  """tf.data hands uint8 (the resized pixels rounded): within half a grey level of the float path."""
  import jax  # pylint: disable=import-outside-toplevel
  from unas_jax.data import device as device_lib  # pylint: disable=import-outside-toplevel
  from unas_jax.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  ds = data.load({"name": "imagenet2012", "data_dir": str(tfds_dir / "tfds"), "image_size": 24,
                  "train_portion": 0.8, "shuffle_buffer": 8})
  mesh = mesh_lib.make_mesh(1)
  # Rounding to uint8 moves a pixel by at most 0.5 grey levels: 0.5 / 255 / std normalised.
  tol = 0.5 / 255 / min(ds.info.std) + 1e-5
  raw_train = data.train_batches(ds, 4, seed=3, raw=True)
  host_train = data.train_batches(ds, 4, seed=3)
  for _ in range(3):
    raw, (xh, yh) = next(raw_train), next(host_train)
    assert raw["image"].dtype == np.uint8 and raw["image"].shape == (4, 24, 24, 3)
    xd, yd = jax.device_get(device_lib.make_finisher(ds.info, mesh)(raw))
    np.testing.assert_allclose(xd, xh, rtol=0, atol=tol)
    assert np.abs(xd - xh).max() > 0  # really rounded: the check compares two paths
    np.testing.assert_array_equal(yd, yh)
  host = list(data.eval_batches(ds, 4))
  dev = jax.device_get(list(device_lib.batches(data.eval_batches(ds, 4, raw=True), ds.info, mesh)))
  for (xh, yh, mh), (xd, yd, md) in zip(host, dev):
    np.testing.assert_allclose(xd, xh, rtol=0, atol=tol)
    np.testing.assert_array_equal(md, mh.astype(np.float32))
