"""Latency of architectures: every latency source and its adapter to the search loop (docs/design.md sections 3 and 8).

* :mod:`~unas_jax.latency.hooks`: what the loop asks of a source (:class:`~unas_jax.latency.hooks.LatencyHooks`),
  the linear control ``g(z) = flatten(z) . coef + b``, the one target check, the found architecture's report.
* :mod:`~unas_jax.latency.proxyless_source`: the ProxylessNAS space's sources (probe, lut, blocks) and surrogate fit.
* :mod:`~unas_jax.latency.nb201_table`: the NAS-Bench-201 space's per-cell table and its surrogate.
* :mod:`~unas_jax.latency.probe`: measured latency of compiled subnetworks (the truth), cached.
* :mod:`~unas_jax.latency.lut`: ProxylessNAS's per-block lookup tables (YAML).
* :mod:`~unas_jax.latency.blocks`: per-block table of compiled blocks + one calibration scale.
* :mod:`~unas_jax.latency.surrogate`: UNAS's linear ridge surrogate (RELAX's control).
* :mod:`~unas_jax.latency.additive`: the additive model they share (min reachable latency).

No module here imports :mod:`unas_jax.search`.
"""
