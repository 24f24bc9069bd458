r"""Search-step throughput on 1, 2, 4, 8 devices (simulated CPU devices unless --real).

    PYTHONPATH=. python experiments/benchmark_scaling.py --devices=1,2,4,8 -- \
        --config=configs/darts_cifar10.py:quick --config.model.cells=3 --config.model.channels=4 \
        --config.data.image_size=16 --config.batch_size=16 --steps=5

Runs ``experiments/benchmark_search.py`` once per device count in a fresh process
(``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be set before JAX
starts) with the same global batch, and prints one table. Simulated CPU devices
share the machine's cores, so on CPU the table shows the overhead of sharding
(collectives, per-device programs), not a speed-up; with ``--real`` the devices
are the machine's accelerators and the mesh takes the first N.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
  parser.add_argument("--real", action="store_true", help="use the real devices instead of simulated CPU ones")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds per device count")
  parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: flags for benchmark_search.py")
  args = parser.parse_args()
  bench_args = [a for a in args.bench_args if a != "--"]
  rows = []
  for n in [int(v) for v in args.devices.split(",")]:
    env = dict(os.environ)
    if not args.real:
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
      env["JAX_PLATFORMS"] = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "bench.json")
      cmd = [sys.executable, os.path.join(HERE, "benchmark_search.py"), *bench_args, f"--config.mesh.num_devices={n}",
             "--noparts", f"--json={out}"]
      proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
      if proc.returncode != 0:
        print(f"{n} devices: failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        continue
      with open(out) as f:
        result = json.load(f)
    rows.append((n, result))
    print(f"  {n} device(s): {result['images_per_s']:.1f} images/s", flush=True)
  if not rows:
    sys.exit("no device count finished")
  print(f"\nsearch step, {rows[0][1]['config']}, same global batch on every row")
  print(f"{'devices':>7s} {'device kind':>14s} {'images/s':>9s} {'step median s':>13s} {'compile s':>9s} "
        f"{'vs 1 device':>11s}")
  base = rows[0][1]["images_per_s"]
  for n, r in rows:
    print(f"{n:7d} {r['devices'].split(' x ', 1)[-1]:>14s} {r['images_per_s']:9.2f} {r['step_median_s']:13.3f} "
          f"{r['compile_s']:9.1f} {r['images_per_s'] / base:11.2f}")


if __name__ == "__main__":
  main()
