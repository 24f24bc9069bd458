"""The evaluation phase: train a found (or built-in) genotype from scratch.

``networks`` builds the network a config names, ``trainer`` is the training and
evaluation loop (checkpoints, resume, NaN watch), ``run`` is the ``evaluate`` job,
``defaults`` holds the training recipes (DARTS CIFAR/ImageNet, ProxylessNAS).
"""
