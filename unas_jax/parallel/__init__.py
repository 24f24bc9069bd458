"""Data parallelism: the device mesh and JAX's distributed runtime.

Steps are ``jax.jit`` over a one-axis ``Mesh`` with ``jax.shard_map`` inside (no
``pmap``); ``distributed`` starts the multi-process runtime and broadcasts from
process 0 what every process must hold identically (latency measurements).
Synchronised BatchNorm (``bn='sync'``) lives with BatchNorm, :mod:`unas_jax.nn.batchnorm`.
"""
