r"""Parameters and multiply-adds of every built-in network, next to the PyTorch references.

    PYTHONPATH=. python experiments/param_counts.py [--json=/tmp/param_counts.json]

DARTS space: every built-in genotype in its CIFAR-10 and CIFAR-100 settings
(NetworkCIFAR, 20 cells, 36 channels, 32x32) and ImageNet setting
(NetworkImageNet, 14 cells, 48 channels, 224x224, 1000 classes); parameters with
and without the auxiliary head, multiply-adds of convolutions and linear layers
of the inference network for one image. ProxylessNAS space: both built-in
networks at 224x224 with GPU and mobile widths (needs
``unas_jax.nn.proxyless_network``).

Reference columns: the PyTorch reference networks (how they were built and
counted: unas_jax/spaces/reference_counts.py).
"""
from __future__ import annotations

import argparse
import importlib
import json

from unas_jax.nn import darts_network as dn
from unas_jax.spaces import darts_genotype
from unas_jax.spaces.reference_counts import DARTS_SETTINGS, REFERENCE_COUNTS, aux_head_bn

def darts_rows() -> list[dict]:
  rows = []
  for name in darts_genotype.BUILTIN_GENOTYPES:
    for setting, (kwargs, image) in DARTS_SETTINGS.items():
      model = dn.abstract(name, aux_head_bn=aux_head_bn(name), **kwargs)
      rows.append(dict(network=name, setting=setting, params=dn.count_params(model),
                       params_without_aux=dn.count_params(model, with_aux=False),
                       macs=dn.network_macs(name, image, **kwargs), reference=REFERENCE_COUNTS.get((name, setting))))
  return rows


def proxyless_rows() -> list[dict]:
  try:
    network = importlib.import_module("unas_jax.nn.proxyless_network")
  except ImportError:
    print("unas_jax.nn.proxyless_network is not in this checkout: ProxylessNAS rows skipped")
    return []
  rows = []
  for name in ("unas_proxyless", "proxylessnas_gpu"):
    for widths in ("gpu", "mobile"):
      params = int(network.count_params(name, widths, 1000))
      rows.append(dict(network=name, setting=f"imagenet, {widths} widths", params=params, params_without_aux=params,
                       macs=int(network.count_macs(name, widths, 224, 1000)), reference=REFERENCE_COUNTS.get((name, widths))))
  return rows


def _cell(value: int, reference: int | None, scale: float, digits: int) -> str:
  mark = "" if reference is None else (" =" if value == reference else f" != {reference / scale:.{digits}f}")
  return f"{value / scale:.{digits}f}{mark}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", help="also write the rows to this JSON file")
  args = parser.parse_args()
  rows = darts_rows() + proxyless_rows()
  print(f"{'network':18s} {'setting':24s} {'params (M)':>16s} {'no aux (M)':>16s} {'mult-adds (M)':>18s}  "
        "(= : equals the PyTorch reference)")
  for r in rows:
    ref = r["reference"] or (None, None, None)
    mobile = "  < 600M" if r["setting"].startswith("imagenet") and r["macs"] < 600e6 else ""
    print(f"{r['network']:18s} {r['setting']:24s} {_cell(r['params'], ref[0], 1e6, 6):>16s} "
          f"{_cell(r['params_without_aux'], ref[1], 1e6, 6):>16s} {_cell(r['macs'], ref[2], 1e6, 3):>18s}{mobile}")
  mismatches = [r for r in rows if r["reference"] and
                (r["params"], r["params_without_aux"], r["macs"]) != tuple(r["reference"])]
  print(f"{len(rows) - len(mismatches)} of {len(rows)} rows equal their reference"
        + ("" if not mismatches else f"; MISMATCH: {[(r['network'], r['setting']) for r in mismatches]}"))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
