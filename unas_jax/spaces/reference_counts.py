"""Parameter and multiply-add counts of the PyTorch reference networks (ground truth for our builds).

Obtained by building the reference networks with torch 2.13 on CPU:

* DARTS space: NVlabs/unas darts/model.py (Network with dataset='cifar10' for CIFAR,
  NetworkImageNet with its default bn=True) for the UNAS genotypes of darts/genotypes.py
  with set_primitives(-1), and quark0/darts cnn/model.py (NetworkCIFAR, NetworkImageNet)
  for DARTS_V2. Settings in :data:`DARTS_SETTINGS`. DARTS's ImageNet auxiliary head has
  no BatchNorm after its 2x2 conv; UNAS's has (``aux_head_bn``).
* ProxylessNAS space: NVlabs/unas proxylessnas/model.py ``Network(genotype, 1000)`` at
  224x224, its width list replaced by the mobile one for the ``mobile`` rows.
  ProxylessNAS's own log (mit-han-lab/proxylessnas logs/imagenet_gpu_log.txt) gives
  7.12M parameters and 465.3M FLOPs for ProxylessNAS-GPU.

Parameters: ``sum(p.numel())`` with the auxiliary head; ``params_without_aux`` subtracts
the ``auxiliary_head.*`` parameters. Multiply-adds: forward hooks on every ``nn.Conv2d``
(output elements x C_in/groups x k x k) and ``nn.Linear`` (in x out), auxiliary head off,
eval mode, one image.
"""
from __future__ import annotations

# (genotype, setting): (params, params_without_aux, multiply_adds)
REFERENCE_COUNTS: dict[tuple[str, str], tuple[int, int, int]] = {
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

# DARTS-space evaluation settings of the reference rows: (network kwargs, image shape HWC).
DARTS_SETTINGS: dict[str, tuple[dict, tuple[int, int, int]]] = {
    "cifar10": (dict(network="cifar", num_classes=10, channels=36, num_cells=20), (32, 32, 3)),
    "cifar100": (dict(network="cifar", num_classes=100, channels=36, num_cells=20), (32, 32, 3)),
    "imagenet": (dict(network="imagenet", num_classes=1000, channels=48, num_cells=14), (224, 224, 3)),
}


def aux_head_bn(genotype: str) -> bool:
  """Whether the reference's auxiliary head has BatchNorm after its 2x2 conv (all but DARTS_V2)."""
  return genotype != "darts_v2"
