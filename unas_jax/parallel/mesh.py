"""One data-parallel mesh over every device of every host.

State (phi, w, optimiser states) is replicated, batches are sharded along the
``data`` axis. Steps are ``jax.jit`` over ``jax.shard_map`` bodies: each device
runs the per-device program (its own architecture samples, local BatchNorm
statistics unless synchronised) and gradients are averaged across the axis, the
semantics ``pmap`` had (docs/engineering.md section 1: no ``jax.pmap``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from unas_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0, exclude: Sequence[jax.Device] = ()) -> Mesh:
  """A 1-D ``data`` mesh over ``num_devices`` devices (0: all devices of all hosts but ``exclude``).

  ``exclude``: devices kept out of the mesh, e.g. one local device per process reserved
  for timing latency (:func:`reserved_local_devices`); the same list on every process.
  """
  excluded = {d.id for d in exclude}
  pool = [d for d in jax.devices() if d.id not in excluded]
  available = len(pool)
  n = available if num_devices in (0, None) else num_devices
  if n > available or n < 1:
    reserved = f" ({len(excluded)} reserved outside the mesh)" if excluded else ""
    raise ConfigError(f"mesh.num_devices={num_devices} but {available} device(s) are available{reserved}")
  if jax.process_count() > 1 and n != available:
    raise ConfigError("multi-host runs use every device: set mesh.num_devices=0")
  devices = pool[:n]
  return jax.make_mesh((n,), (DATA_AXIS,), devices=devices)


def reserved_local_devices() -> list[jax.Device]:
  """The last local device of every process (a global list, the same on every process).

  Kept out of the mesh, each process's own one times latency (the probe) while the
  others run the search; ConfigError when a process has no device to spare.
  """
  by_process: dict[int, list[jax.Device]] = {}
  for d in jax.devices():
    by_process.setdefault(d.process_index, []).append(d)
  if any(len(ds) < 2 for ds in by_process.values()):
    raise ConfigError("latency.reserve_device needs at least 2 local devices per process (one for the mesh, "
                      f"one for timing); this process has {jax.local_device_count()}")
  return [max(ds, key=lambda d: d.id) for _, ds in sorted(by_process.items())]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def jit_state_step(step_fn, mesh: Mesh):
  """``jax.jit`` of a ``(state, ...) -> (state, metrics)`` step: state donated, outputs replicated.

  Outputs are placed as :func:`put_replicated` places the initial state (``P()``), so
  every call sees inputs placed alike (otherwise they come back as ``P(None, ...)``).
  """
  return jax.jit(step_fn, donate_argnums=(0,), out_shardings=replicated(mesh))


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch(global_batch: int, mesh: Mesh, name: str = "batch_size") -> int:
  """Returns the per-device batch; ConfigError unless the global batch divides evenly."""
  n = mesh.devices.size
  if global_batch % n:
    raise ConfigError(f"{name}={global_batch} is not divisible by the {n} devices of the mesh")
  return global_batch // n


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Places a host pytree (the same on every process) replicated on the mesh."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda idx: np.asarray(x)[idx]),
                      tree)


def replicated_state(mesh: Mesh, init: Callable[..., Any], *args: Any, abstract: bool = False) -> Any:
  """``init(*args)`` placed replicated on ``mesh``; ``abstract=True``: only its shapes.

  Abstract leaves are ``jax.ShapeDtypeStruct`` with the replicated sharding, from
  ``jax.eval_shape`` (no memory, no compute; ``args`` may be abstract too): the
  arguments for lowering and ahead-of-time compiling a job's steps.
  """
  if abstract:
    sharding = replicated(mesh)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                        jax.eval_shape(init, *args))
  return put_replicated(init(*args), mesh)


def put_global(global_rows: Any, mesh: Mesh) -> Any:
  """Shards a host pytree that every process holds whole (e.g. per-sample latencies) along ``data``.

  Each device takes its own rows of the global array, so the result is the same
  on any number of processes (unlike :func:`put_batch`, which takes each
  process's own rows).
  """
  sharding = batch_sharded(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
  return jax.tree.map(put, global_rows)


def put_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Assembles a global batch sharded along ``data`` from each process's local rows."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
