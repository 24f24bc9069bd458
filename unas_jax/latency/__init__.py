"""Latency of ProxylessNAS-space architectures (docs/design.md sections 3 and 8).

* :mod:`~unas_jax.latency.probe`: measured latency of compiled subnetworks (the truth), cached.
* :mod:`~unas_jax.latency.lut`: ProxylessNAS's per-block lookup tables (YAML).
* :mod:`~unas_jax.latency.blocks`: per-block table of compiled blocks + one calibration scale.
* :mod:`~unas_jax.latency.surrogate`: UNAS's linear ridge surrogate (RELAX's control).
* :mod:`~unas_jax.latency.additive`: the additive model they share (min reachable latency).
"""
