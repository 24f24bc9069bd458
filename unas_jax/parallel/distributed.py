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
