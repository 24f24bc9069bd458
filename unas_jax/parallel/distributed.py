"""Multi-host start-up on JAX's own distributed runtime.

``jax.distributed.initialize()`` must run before anything touches a device. It is
configured, in order of precedence, from

* explicit flags (``--coordinator_address``, ``--num_processes``, ``--process_id``),
  e.g. N processes on one machine over loopback, or any cluster without a manager;
* the environment of a cluster JAX recognises by itself: Cloud TPU pod slices,
  Slurm (``srun``), Kubernetes/GKE (JobSet), Open MPI (``mpirun``): then
  ``jax.distributed.initialize()`` is called without arguments;
* nothing: a single process (the default on a workstation).
"""
from __future__ import annotations

import os

import jax
import numpy as np

from unas_jax.errors import ConfigError

# Environment variables that mark a multi-process launch JAX's cluster detection handles.
_CLUSTER_MARKERS = {
    "slurm": lambda env: int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1"))) > 1 and "SLURM_JOB_ID" in env,
    "tpu_pod": lambda env: "," in env.get("TPU_WORKER_HOSTNAMES", ""),
    "kubernetes_jobset": lambda env: "JOBSET_NAME" in env and "KUBERNETES_SERVICE_HOST" in env,
    "open_mpi": lambda env: int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1,
}


def detected_cluster(env=None) -> str | None:
  """The kind of multi-process launch the environment shows, or None."""
  env = os.environ if env is None else env
  for name, test in _CLUSTER_MARKERS.items():
    try:
      if test(env):
        return name
    except ValueError:
      continue
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, mode: str = "auto") -> str:
  """Starts the distributed runtime if this is a multi-process run; returns how.

  Args:
    coordinator_address: ``host:port`` of process 0.
    num_processes: total number of processes.
    process_id: this process's index.
    mode: ``auto`` (flags, else cluster detection, else single process) or ``off``.
  """
  explicit = [coordinator_address, num_processes, process_id]
  if mode == "off":
    return "single process (distributed start-up off)"
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ConfigError("--coordinator_address, --num_processes and --process_id must be given together")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return f"process {process_id} of {num_processes} (coordinator {coordinator_address})"
  cluster = detected_cluster()
  if cluster is not None:
    jax.distributed.initialize()
    return f"process {jax.process_index()} of {jax.process_count()} ({cluster} environment)"
  return "single process"


def broadcast_from_main(tree):
  """Process 0's values of a pytree of numpy arrays, on every process, bit for bit.

  Every process passes a tree of the same structure, shapes and dtypes (the values of
  processes other than 0 are ignored); all processes must call this at the same point
  (it is a collective). :func:`jax.experimental.multihost_utils.broadcast_one_to_all`
  sums over processes in a jitted ``psum``, which would turn float64 into float32
  (without ``jax_enable_x64``) and ``-0.0`` into ``0.0``; the bytes of each leaf are
  therefore sent as ``uint32`` words (or ``uint8`` for sizes not a multiple of 4), for
  which a sum with zeros is exact. One process: the leaves as numpy arrays, unchanged.
  """
  leaves, treedef = jax.tree.flatten(tree)
  arrays = [np.array(x, order="C") for x in leaves]  # ascontiguousarray would make 0-d arrays 1-d
  if jax.process_count() == 1:
    return jax.tree.unflatten(treedef, arrays)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  words = [a.reshape(-1).view(np.uint32 if a.nbytes % 4 == 0 else np.uint8) for a in arrays]
  # A zero-size leaf has nothing to send (and psum of an empty array is fine, but skip the round trip).
  sent = multihost_utils.broadcast_one_to_all([w for w in words if w.size])
  it = iter(sent)
  out = [np.asarray(next(it)).view(a.dtype).reshape(a.shape) if w.size else a for a, w in zip(arrays, words)]
  return jax.tree.unflatten(treedef, out)
