"""Data-parallel training on JAX's own sharding: one mesh axis, ``'data'``.

The recipe (used by :func:`jaxopt_lab.training.loop.fit` with ``data_parallel=True``):

- :func:`data_mesh` lays all devices on a 1-D mesh with axis :data:`DATA_AXIS`.
- The train state and the dataset arrays are replicated on every device
  (``NamedSharding(mesh, P())``, :func:`replicate`).
- Inside the train step the gathered batch is constrained to :func:`batch_sharding`
  (``P('data')``): each device computes the loss of its slice, and XLA all-reduces the
  gradients, so every replica applies the same update. Results equal the single-device
  run up to float rounding (the sum of the per-example gradients is split differently).

For several processes (hosts), :func:`initialize_distributed` calls
``jax.distributed.initialize`` when ``JAX_COORDINATOR_ADDRESS`` is set: with
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` for a manual launch, or without them inside a
cluster JAX detects (Slurm, Open MPI, Kubernetes, TPU pods). On CPUs the cross-process
collectives run over gloo. Every process then loads the same dataset, the mesh spans the
devices of all processes, and the parameters stay identical on all of them (the gradient
all-reduce spans processes); only process 0 writes the run folder.
"""

from __future__ import annotations

import os
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed() -> bool:
    """Start JAX's multi-process runtime if the environment asks for it (see the module
    doc); return whether it did. Call it before any other JAX work."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        return False
    manual = {
        "num_processes": os.environ.get("JAX_NUM_PROCESSES"),
        "process_id": os.environ.get("JAX_PROCESS_ID"),
    }
    if (manual["num_processes"] is None) != (manual["process_id"] is None):
        raise ValueError("set both JAX_NUM_PROCESSES and JAX_PROCESS_ID, or neither")
    kwargs = {k: int(v) for k, v in manual.items() if v is not None}
    if os.environ.get("JAX_PLATFORMS", "cpu").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, **kwargs)
    return True


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named :data:`DATA_AXIS` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), (AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding that splits the leading (batch) dimension over :data:`DATA_AXIS`."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy every array of ``tree`` onto all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless ``batch_size`` splits evenly over the mesh."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise ValueError(
            f"data-parallel batch_size must be a multiple of the {devices} devices, "
            f"got {batch_size}"
        )
