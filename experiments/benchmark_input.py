r"""Host-side input pipeline throughput: images/s per host core, CIFAR npz and tfds ImageNet paths.

Measures what the host does for every step of a search (:mod:`unas_jax.data`): for the
in-memory CIFAR path (``.npz``), gathering, crop and flip on uint8 (``raw=True``: the
normalisation runs on the device since issue 10) and, for comparison, the old
host-normalised float32 batches; for the tfds ImageNet path, tf.data's JPEG decode,
random-resized crop, resize to 224 and flip (``raw=True``: uint8 out). The process is
pinned to one core (``sched_setaffinity``), so tf.data's threads share that core, and the
rate is reported per wall second and per second of process CPU time (user + system;
other processes on a shared machine inflate it less than the wall time).

Data: ``--npz`` (default ``../shared/data/cifar10_subset.npz`` when present, else 50,000
synthetic 32x32 images); ``--imagenet_dir`` a tfds ``data_dir`` with imagenet2012 prepared,
else a small imagenet2012 of synthetic JPEGs (smooth random images of ImageNet's typical
size, about 400x350) is prepared in a temporary folder first.

    python experiments/benchmark_input.py --out=experiments/results/input_pipeline_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "cifar10_subset.npz"

# Prepares a tfds imagenet2012 from synthetic "manual" tars (as tests/test_data.py does).
_PREPARE = r"""
import io, os, sys, tarfile
import numpy as np
from PIL import Image
try:
  import importlib_resources  # noqa: F401
except ImportError:
  # tfds 4.9.x imports it while preparing but declares it only for Python < 3.9.
  import importlib.resources
  sys.modules["importlib_resources"] = importlib.resources
import tensorflow_datasets as tfds

root, per_class = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
manual = os.path.join(root, "downloads", "manual")
os.makedirs(manual)
def jpeg(h, w):
  # Smooth content (upsampled noise) compresses and decodes like a photograph, unlike white noise.
  small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
  img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
  buf = io.BytesIO()
  img.save(buf, format="JPEG", quality=90)
  return buf.getvalue()
def add(tar, name, payload):
  info = tarfile.TarInfo(name)
  info.size = len(payload)
  tar.addfile(info, io.BytesIO(payload))
sizes = []
with tarfile.open(os.path.join(manual, "ILSVRC2012_img_train.tar"), "w") as outer:
  for synset in ["n01440764", "n01443537", "n01484850", "n01491361"]:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as tar:
      for i in range(per_class):
        payload = jpeg(int(rng.integers(300, 450)), int(rng.integers(350, 500)))
        sizes.append(len(payload))
        add(tar, f"{synset}_{i}.JPEG", payload)
    add(outer, f"{synset}.tar", inner.getvalue())
with tarfile.open(os.path.join(manual, "ILSVRC2012_img_val.tar"), "w") as tar:
  for i in range(8):
    add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg(375, 500))
tfds.builder("imagenet2012", data_dir=root).download_and_prepare()
print(f"mean JPEG size {np.mean(sizes) / 1e3:.1f} KB")
"""


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--npz", default=str(DEFAULT_NPZ) if DEFAULT_NPZ.is_file() else "")
  p.add_argument("--imagenet_dir", default="", help="tfds data_dir with imagenet2012 prepared ('': synthetic)")
  p.add_argument("--cifar_batch", type=int, default=64, help="global batch of the CIFAR search (per step: 2x)")
  p.add_argument("--imagenet_batch", type=int, default=32)
  p.add_argument("--imagenet_size", type=int, default=224)
  p.add_argument("--per_class", type=int, default=64, help="synthetic ImageNet: JPEGs per class (4 classes)")
  p.add_argument("--seconds", type=float, default=20.0, help="time per measurement")
  p.add_argument("--out", default="", help="results JSON")
  p.add_argument("--parts", default="cifar,imagenet", help="which paths to measure (comma list)")
  p.add_argument("--flops", action="store_true",
                 help="also count the FLOPs of a search step per image (XLA cost analysis of the lowered, "
                      "uncompiled step parts: DARTS 8 cells x 16 channels at 32x32, ProxylessNAS GPU widths at 224)")
  return p.parse_args(argv)


def pin_to_one_core() -> int:
  cores = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {cores[0]})
  return cores[0]


def rate(iterator, images_per_item: int, seconds: float) -> dict:
  """Images/s over wall and process CPU time, after one warm-up item."""
  next(iterator)
  n, t0, c0 = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - t0 < seconds:
    next(iterator)
    n += images_per_item
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  return {"images": n, "wall_s": wall, "cpu_s": cpu, "images_per_s_wall": n / wall, "images_per_cpu_s": n / cpu}


def cifar(args) -> dict:
  from unas_jax import data  # pylint: disable=import-outside-toplevel
  if args.npz:
    source = args.npz
    ds = data.load({"name": "npz", "npz_path": args.npz, "crop_padding": 4, "flip": True})
  else:
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp()
    source = os.path.join(tmp, "synthetic_cifar.npz")
    np.savez(source, x_train=rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, 50000), x_test=rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, 100))
    ds = data.load({"name": "npz", "npz_path": source, "crop_padding": 4, "flip": True})
  b = args.cifar_batch
  out = {"source": source, "examples": int(ds.info.sizes["train"]), "batch": b, "per_step_images": 2 * b}
  out["uint8_to_device"] = rate(data.search_batches(ds, b, 0, raw=True), 2 * b, args.seconds)
  out["float32_on_host"] = rate(data.search_batches(ds, b, 0), 2 * b, args.seconds)
  return out


def imagenet(args) -> dict:
  from unas_jax import data  # pylint: disable=import-outside-toplevel
  data_dir = args.imagenet_dir
  note = "prepared imagenet2012"
  if not data_dir:
    data_dir = tempfile.mkdtemp(prefix="synthetic_imagenet_")
    # Prepared in a child process: its tfds workaround must not leak into the reading code.
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_PREPARE), data_dir, str(args.per_class)],
                          capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if done.returncode:
      raise SystemExit(f"preparing the synthetic ImageNet failed (status {done.returncode}): {done.stderr[-3000:]}")
    print(f"prepared a synthetic imagenet2012 in {data_dir}", flush=True)
    note = f"synthetic: {4 * args.per_class} JPEGs about 400x350, {done.stdout.strip().splitlines()[-1]}"
  ds = data.load({"name": "imagenet2012", "data_dir": data_dir, "image_size": args.imagenet_size,
                  "shuffle_buffer": 64})
  b = args.imagenet_batch
  out = {"source": note, "image_size": args.imagenet_size, "batch": b}
  out["uint8_to_device"] = rate(data.train_batches(ds, b, 0, raw=True), b, args.seconds)
  out["float32_on_host"] = rate(data.train_batches(ds, b, 0), b, args.seconds)
  return out


def search_step_flops() -> dict:
  """FLOPs per training image of a REBAR search step: 2 forwards (z) + 2 arch backward passes + 1 w
  backward pass on (train, val) pairs, as experiments/benchmark_supernet.py composes a step; from
  ``jax.jit(...).lower(...).cost_analysis()`` (no compile), plain XLA convolutions."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from unas_jax.estimators import categorical  # pylint: disable=import-outside-toplevel
  from unas_jax.nn import darts_supernet, functional, proxyless_supernet  # pylint: disable=import-outside-toplevel
  from unas_jax.spaces import darts  # pylint: disable=import-outside-toplevel
  from unas_jax.spaces import proxyless as psp  # pylint: disable=import-outside-toplevel

  def count(model, batch, resolution, classes, s):
    model_def, phi, w, stats = functional.split(model)
    x = jnp.zeros((batch, resolution, resolution, 3))
    y = jnp.zeros((batch,), jnp.int32)
    if isinstance(model, proxyless_supernet.ProxylessSupernet):
      phi = {n: phi[n] for n in psp.LAYER_NAMES}
    sample = categorical.sample(jax.random.key(0), categorical.soften(phi), tau=0.4, sample_shape=(s,))

    def loss(w, arch):
      logits, new_stats = functional.apply(model_def, w, stats, x, arch, train=True,
                                           **({"key": jax.random.key(1)} if isinstance(
                                               model, proxyless_supernet.ProxylessSupernet) else {}))
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_stats

    flops = {
        "forward": jax.jit(lambda w, a: loss(w, a)[0]).lower(w, sample.z).cost_analysis()["flops"],
        "arch_grad": jax.jit(jax.grad(lambda a, w: loss(w, a)[0])).lower(sample.zeta, w).cost_analysis()["flops"],
        "w_grad": jax.jit(jax.grad(loss, has_aux=True)).lower(w, sample.zeta).cost_analysis()["flops"],
    }
    step = 2 * flops["forward"] + 2 * flops["arch_grad"] + flops["w_grad"]
    return {**{k: v / batch for k, v in flops.items()}, "step_per_train_image": step / batch}

  out = {}
  space = darts.DartsSpace(darts.op_set("unas7"))
  out["darts_cifar_8x16"] = count(darts_supernet.DartsSupernet(space, num_classes=10, channels=16, num_cells=8,
                                                               depthwise_impl="xla", rngs=nnx.Rngs(0)),
                                  8, 32, 10, 8)
  out["proxyless_gpu_224"] = count(proxyless_supernet.ProxylessSupernet(psp.GPU_WIDTHS, 1000, rngs=nnx.Rngs(0),
                                                                        depthwise_impl="xla"), 2, 224, 1000, 1)
  return out


def _print_rates(what: str, result: dict) -> None:
  for k in ("uint8_to_device", "float32_on_host"):
    print(f"{what}, {k}: {result[k]['images_per_s_wall']:.0f} images/s wall, "
          f"{result[k]['images_per_cpu_s']:.0f} images per CPU-second", flush=True)


def main(argv=None):
  args = parse_args(argv)
  core = pin_to_one_core()
  # tf.data sizes its thread pools from the visible cores: pinned first, then imported.
  results = {"pinned_core": core, "host_cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()}
  parts = args.parts.split(",")
  if "cifar" in parts:
    c = results["cifar_npz"] = cifar(args)
    _print_rates(f"CIFAR npz ({c['source']}), search pairs of batch {c['batch']}", c)
  if "imagenet" in parts:
    m = results["imagenet_tfds"] = imagenet(args)
    _print_rates(f"ImageNet tfds ({m['source']}), {m['image_size']}x{m['image_size']}, batch {m['batch']}", m)
  if args.flops:
    results["search_step_flops"] = search_step_flops()
    for name, f in results["search_step_flops"].items():
      print(f"{name}: search step {f['step_per_train_image'] / 1e9:.2f} GFLOP per training image "
            f"(forward {f['forward'] / 1e9:.2f})", flush=True)
  results["loadavg_end"] = os.getloadavg()
  print(f"load average at start {results['loadavg_start']}, at end {results['loadavg_end']} "
        f"({os.cpu_count()} cores)")
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
  sys.exit(main())
