"""Loaders of the in-memory sources (digits, .npz, CIFAR via tfds) and the tfds check.

tensorflow-datasets is imported only for tfds sources, so digits and .npz runs
never import TensorFlow. No function here ever starts a download: a tfds dataset
that is not prepared raises :class:`DataError` with the command that prepares it.
"""
from __future__ import annotations

import importlib.util
import os
import zipfile
from typing import Any

import numpy as np

from unas_jax.data.config import DataSpec
from unas_jax.data.dataset import ArrayDataset, build
from unas_jax.errors import DataError

# Published per-channel statistics of the training sets, in [0, 1] units (the
# constants of the DARTS/UNAS CIFAR transforms and of torchvision's ImageNet).
STATS = {
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 0  # fixed: the digits test set is part of the dataset's definition

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_digits(spec: DataSpec) -> ArrayDataset:
  """scikit-learn's handwritten digits (1797 8x8 images, 10 classes), no download.

  Pixel counts 0..16 become uint8 ``round(v * 255 / 16)``. A fixed stratified
  80/20 train/test split (per class, a permutation from a fixed seed) makes the
  test set the same on every run. Upsampled to ``image_size`` (32 by default)
  and replicated to 3 channels so the CIFAR stems apply unchanged.
  """
  from sklearn.datasets import load_digits as sk_load_digits  # pylint: disable=import-outside-toplevel
  digits = sk_load_digits()
  images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
  labels = digits.target.astype(np.int32)
  rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
  test = []
  for c in range(10):
    members = np.flatnonzero(labels == c)
    test.append(rng.permutation(members)[:int(round(DIGITS_TEST_FRACTION * len(members)))])
  is_test = np.zeros(len(labels), bool)
  is_test[np.concatenate(test)] = True
  return build(spec, images[~is_test], labels[~is_test], images[is_test], labels[is_test],
               origin="digits (scikit-learn)", class_names=[str(i) for i in range(10)],
               native_size=32, default_channels=3)


def load_npz(spec: DataSpec) -> ArrayDataset:
  """A user's ``.npz`` with x_train, y_train, x_test, y_test (uint8 NHWC or NHW, int labels).

  ``class_names`` (optional) names the labels; other keys are ignored.
  """
  path = os.path.expanduser(spec.npz_path)
  origin = f".npz file {path}"
  if not os.path.isfile(path):
    raise DataError(f"{origin} does not exist; set --config.data.npz_path to a file with arrays "
                    f"{', '.join(NPZ_KEYS)} (save one with numpy.savez)")
  try:
    with np.load(path, allow_pickle=False) as npz:
      missing = [k for k in NPZ_KEYS if k not in npz.files]
      if missing:
        raise DataError(f"{origin} lacks array(s) {missing} (it has {sorted(npz.files)}); it needs "
                        f"{', '.join(NPZ_KEYS)}, optionally class_names")
      arrays = {k: npz[k] for k in NPZ_KEYS}
      class_names = npz["class_names"].tolist() if "class_names" in npz.files else None
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise DataError(f"{origin} cannot be read as .npz ({e}); write it with numpy.savez") from None
  return build(spec, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
               origin=origin, class_names=class_names)


def _prepare_hint(name: str, root: str) -> str:
  build_cmd = (f"python -c \"import tensorflow_datasets as tfds; "
               f"tfds.builder('{name}', data_dir='{root}').download_and_prepare()\"")
  if name == "imagenet2012":
    how = (f"download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (register at "
           f"https://image-net.org/download-images) into {os.path.join(root, 'downloads', 'manual')}/"
           f", then run once: {build_cmd}")
  else:
    how = f"prepare it once (downloads it from the internet) with: {build_cmd}"
  if importlib.util.find_spec("importlib_resources") is None:
    # tensorflow-datasets 4.9.x imports it to prepare datasets but declares it
    # only for Python < 3.9 (tensorflow/datasets#11212).
    how = f"pip install importlib_resources, then {how}"
  return (f"tfds dataset '{name}' is not prepared in {root}: {how}; "
          f"or run with no download at all: --config.data.name=digits")


def tfds_builder(spec: DataSpec) -> Any:
  """The tfds builder of a *prepared* dataset; DataError with preparation steps otherwise.

  Only looks at the local ``data_dir``: nothing is downloaded and no remote
  storage is queried, so a missing dataset fails in well under a second.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  data_dir = os.path.expanduser(spec.data_dir) if spec.data_dir else None
  try:
    builder = tfds.builder(spec.name, data_dir=data_dir, try_gcs=False)
  except Exception as e:  # a corrupt dataset_info.json, an unreadable directory...
    raise DataError(f"tfds could not open dataset '{spec.name}' in {data_dir or 'its default data_dir'}"
                    f": {e}") from None
  if not builder.is_prepared():
    # builder.data_dir is <root>/<name>/<version>.
    root = os.path.dirname(os.path.dirname(str(builder.data_dir)))
    raise DataError(_prepare_hint(spec.name, root))
  return builder


def hide_gpus_from_tensorflow() -> None:
  """Keeps tf.data on the CPU: TensorFlow must not reserve accelerator memory JAX needs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow already initialised its devices
    pass


def load_cifar(spec: DataSpec) -> ArrayDataset:
  """CIFAR-10/100 from a prepared tfds ``data_dir``, decoded once into memory (~180 MB)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder = tfds_builder(spec)
  hide_gpus_from_tensorflow()
  arrays = {}
  for split in ("train", "test"):
    ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True, shuffle_files=False)
    arrays[split] = tfds.as_numpy(ds)
  label = builder.info.features["label"]
  return build(spec, arrays["train"][0], arrays["train"][1], arrays["test"][0], arrays["test"][1],
               origin=f"tfds {spec.name}", class_names=label.names, num_classes=label.num_classes,
               native_size=32, stats=STATS[spec.name])
