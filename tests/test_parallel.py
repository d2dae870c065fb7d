"""Data-parallel training on 8 simulated CPU devices matches the single-device run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxopt_lab.training import parallel

# Runs in a fresh interpreter: the device count is fixed when JAX starts.
SCRIPT = r"""
import json, pathlib, sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jaxopt_lab.training.data import Dataset
from jaxopt_lab.training.models import MLP
from jaxopt_lab.optim import make_optimizer
from jaxopt_lab.training.loop import fit

OUT = pathlib.Path(sys.argv[1])
rng = np.random.default_rng(0)
images = rng.integers(0, 256, size=(2048, 28, 28, 1), dtype=np.uint8)
weights = rng.normal(size=(28 * 28, 10))
labels = np.argmax(images.reshape(2048, -1) @ weights, axis=1).astype(np.int32)
dataset = Dataset("synthetic", jnp.asarray(images[:1536]), jnp.asarray(labels[:1536]),
                  jnp.asarray(images[1536:]), jnp.asarray(labels[1536:]), 10)

def train(data_parallel):
    model = MLP(rngs=nnx.Rngs(0))
    history = fit(model, make_optimizer("adam", 1e-3), dataset, epochs=2, batch_size=64,
                  data_parallel=data_parallel, out_dir=OUT / str(data_parallel), progress=False)
    params = nnx.state(model, nnx.Param)
    return [np.asarray(x) for x in jax.tree.leaves(params)], history, params

single, single_history, _ = train(False)
sharded, sharded_history, sharded_params = train(True)
try:
    fit(MLP(rngs=nnx.Rngs(0)), make_optimizer("adam", 1e-3), dataset, epochs=1, batch_size=60,
        data_parallel=True, progress=False)
    batch_error = ""
except ValueError as error:
    batch_error = str(error)
print(json.dumps({
    "devices": jax.device_count(),
    "param_devices": len(jax.tree.leaves(sharded_params)[0].sharding.device_set),
    "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single, sharded)),
    "max_abs_param": max(float(np.max(np.abs(a))) for a in single),
    "losses": [single_history.loss, sharded_history.loss],
    "batch_error": batch_error,
    "test_accuracy": [json.loads((OUT / name / "metrics.json").read_text())["test_accuracy"]
                      for name in ("False", "True")],
}))
"""


def test_data_parallel_on_8_devices_matches_one_device(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8
    assert report["param_devices"] == 8  # parameters replicated over the mesh
    assert report["max_abs_diff"] < 1e-5 * max(1.0, report["max_abs_param"])
    single_losses, sharded_losses = report["losses"]
    assert single_losses[1] < single_losses[0]  # it trained
    for a, b in zip(single_losses, sharded_losses, strict=True):
        assert abs(a - b) < 1e-5
    assert "multiple of the 8 devices" in report["batch_error"]
    single_accuracy, sharded_accuracy = report["test_accuracy"]
    assert abs(single_accuracy - sharded_accuracy) < 1e-6


# One process of a multi-process run (or the whole single-process reference): trains the
# seed model data-parallel over every device of every process, saves the parameters.
PROCESS_SCRIPT = r"""
import json, sys
import numpy as np
from jaxopt_lab.training.parallel import initialize_distributed
started = initialize_distributed()
import jax
from flax import nnx
from jaxopt_lab.optim import make_optimizer
from jaxopt_lab.training.data import Dataset
from jaxopt_lab.training.loop import fit
from jaxopt_lab.training.models import MLP

rng = np.random.default_rng(0)
images = rng.integers(0, 256, size=(2048, 28, 28, 1), dtype=np.uint8)
labels = np.argmax(images.reshape(2048, -1) @ rng.normal(size=(784, 10)), axis=1).astype(np.int32)
dataset = Dataset("synthetic", images[:1536], labels[:1536], images[1536:], labels[1536:], 10)
model = MLP(rngs=nnx.Rngs(0))
history = fit(model, make_optimizer("adam", 1e-3), dataset, epochs=2, batch_size=64,
              data_parallel=True, progress=False, out_dir=sys.argv[2])
np.savez(sys.argv[1], *[np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))])
print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                  "started": started, "loss": history.loss}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_to_the_parameters_of_one(tmp_path):
    """jax.distributed on localhost: 2 processes x 2 CPU devices, gloo collectives."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    address = f"127.0.0.1:{_free_port()}"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PROCESS_SCRIPT,
                str(tmp_path / f"process{rank}.npz"),
                str(tmp_path / "shared_run"),
            ],
            env={
                **env,
                "JAX_COORDINATOR_ADDRESS": address,
                "JAX_NUM_PROCESSES": "2",
                "JAX_PROCESS_ID": str(rank),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    single = subprocess.run(
        [
            sys.executable,
            "-c",
            PROCESS_SCRIPT,
            str(tmp_path / "single.npz"),
            str(tmp_path / "single_run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r["processes"] == 2 and r["devices"] == 4 and r["started"] for r in reports)
    assert json.loads(single.stdout.strip().splitlines()[-1])["processes"] == 1
    first, second, alone = (
        np.load(tmp_path / name) for name in ("process0.npz", "process1.npz", "single.npz")
    )
    for key in alone:
        np.testing.assert_array_equal(first[key], second[key])  # replicas agree exactly
        # the gradient sum is split over 4 devices instead of 2: float32 rounding only
        np.testing.assert_allclose(first[key], alone[key], rtol=1e-4, atol=2e-5)
    assert reports[0]["loss"][1] < reports[0]["loss"][0]  # it trained
    # one run folder, written by process 0 alone, as complete as the single process's
    shared, single_run = tmp_path / "shared_run", tmp_path / "single_run"
    assert sorted(p.name for p in shared.iterdir()) == sorted(p.name for p in single_run.iterdir())
    assert json.loads((shared / "metrics.json").read_text())["epochs"] == 2


def test_mesh_spans_all_devices_on_the_data_axis():
    mesh = parallel.data_mesh()
    assert mesh.axis_names == (parallel.DATA_AXIS,)
    assert mesh.devices.size == len(jax.devices())
    assert parallel.batch_sharding(mesh).spec == PartitionSpec(parallel.DATA_AXIS)


def test_distributed_runtime_starts_only_when_asked(monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert parallel.initialize_distributed() is False
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
        parallel.initialize_distributed()
