r"""Parameters and multiply-adds of every built-in network, next to the PyTorch references.

    PYTHONPATH=. python experiments/param_counts.py [--json=/tmp/param_counts.json]

DARTS space: every built-in genotype in its CIFAR-10 and CIFAR-100 settings
(NetworkCIFAR, 20 cells, 36 channels, 32x32) and ImageNet setting
(NetworkImageNet, 14 cells, 48 channels, 224x224, 1000 classes); parameters with
and without the auxiliary head, multiply-adds of convolutions and linear layers
of the inference network for one image. ProxylessNAS space: both built-in
networks at 224x224 with GPU and mobile widths (needs
``unas_jax.nn.proxyless_network``).

Reference columns: the PyTorch reference networks built with torch 2.13 on CPU
(NVlabs/unas darts/model.py for UNAS genotypes, quark0/darts cnn/model.py for
DARTS_V2, NVlabs/unas proxylessnas/model.py for the ProxylessNAS-space networks,
its width list replaced by the mobile one for the mobile rows), parameters by
``sum(p.numel())``, multiply-adds by forward hooks on ``nn.Conv2d`` and
``nn.Linear``. ProxylessNAS's own log (mit-han-lab/proxylessnas
logs/imagenet_gpu_log.txt) gives 7.12M parameters and 465.3M FLOPs for
ProxylessNAS-GPU.
"""
from __future__ import annotations

import argparse
import importlib
import json

from unas_jax.nn import darts_network as dn
from unas_jax.spaces import darts

SETTINGS = {
    "cifar10": (dict(network="cifar", num_classes=10, channels=36, num_cells=20), (32, 32, 3)),
    "cifar100": (dict(network="cifar", num_classes=100, channels=36, num_cells=20), (32, 32, 3)),
    "imagenet": (dict(network="imagenet", num_classes=1000, channels=48, num_cells=14), (224, 224, 3)),
}
# (params, params without aux, multiply-adds) of the PyTorch references (module docstring).
REFERENCE = {
    ("unas_cifar10", "cifar10"): (3807192, 3330766, 516304512),
    ("unas_cifar10", "cifar100"): (3928332, 3382696, 516356352),
    ("unas_cifar10", "imagenet"): (6113160, 4850848, 530212608),
    ("unas_cifar100", "cifar10"): (4491696, 4015270, 614067840),
    ("unas_cifar100", "cifar100"): (4612836, 4067200, 614119680),
    ("unas_cifar100", "imagenet"): (6977160, 5714848, 621940608),
    ("unas_imagenet", "cifar10"): (4291032, 3814606, 584042112),
    ("unas_imagenet", "cifar100"): (4412172, 3866536, 584093952),
    ("unas_imagenet", "imagenet"): (6741192, 5478880, 595184256),
    ("darts_v2", "cifar10"): (3825768, 3349342, 528359040),
    ("darts_v2", "cifar100"): (3946908, 3401272, 528410880),
    ("darts_v2", "imagenet"): (5979528, 4718752, 529911552),
    ("unas_proxyless", "gpu"): (5965528, 5965528, 428018592),
    ("proxylessnas_gpu", "gpu"): (7119848, 7119848, 465260160),
    ("unas_proxyless", "mobile"): (3688944, 3688944, 242656352),
    ("proxylessnas_gpu", "mobile"): (4359048, 4359048, 264130112),
}


def darts_rows() -> list[dict]:
  rows = []
  for name in darts.BUILTIN_GENOTYPES:
    for setting, (kwargs, image) in SETTINGS.items():
      aux_bn = name != "darts_v2"  # DARTS's ImageNet aux head has no BN after its 2x2 conv; UNAS's has
      model = dn.abstract(name, aux_head_bn=aux_bn, **kwargs)
      rows.append(dict(network=name, setting=setting, params=dn.count_params(model),
                       params_without_aux=dn.count_params(model, with_aux=False),
                       macs=dn.network_macs(name, image, **kwargs), reference=REFERENCE.get((name, setting))))
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
                       macs=int(network.count_macs(name, widths, 224, 1000)), reference=REFERENCE.get((name, widths))))
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
