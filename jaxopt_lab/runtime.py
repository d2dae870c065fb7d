"""Timing, device information and the caches of compiled programs: the bottom layer,
importing nothing of jaxopt_lab.

Every timing warms the function up first (compilation excluded), then calls it
``repeats`` times, blocking on the result each time, and reports the median and the
spread: wall time on shared machines is noisy, so a single number would mislead.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax


@dataclass(frozen=True)
class Timing:
    """Seconds per call over repeated, blocked calls (compilation excluded)."""

    median_s: float
    min_s: float
    iqr_s: float
    repeats: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def time_call(
    fn: Callable[..., Any], *args: Any, warmup: int = 2, repeats: int = 10, **kwargs: Any
) -> Timing:
    """Time ``fn(*args, **kwargs)``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Each call is followed by ``jax.block_until_ready`` on its result, so asynchronous
    dispatch cannot hide device work.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        jax.block_until_ready(fn(*args, **kwargs))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args, **kwargs))
        times.append(time.perf_counter() - start)
    return summarise(times)


def summarise(times: Sequence[float]) -> Timing:
    """Median, minimum and spread of per-call seconds: the interquartile range from four
    calls on, the full range below that."""
    if not times:
        raise ValueError("times must not be empty")
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
        spread = q3 - q1
    else:
        spread = max(times) - min(times)
    return Timing(statistics.median(times), min(times), spread, len(times))


def compile_timed(
    jitted: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[jax.stages.Compiled, float]:
    """The compiled executable of a ``jax.jit``-ed function for these arguments, and the
    seconds lowering and compiling took. Call the executable to run it: calling
    ``jitted`` itself would compile a second time (``lower().compile()`` does not fill
    ``jit``'s cache)."""
    start = time.perf_counter()
    compiled = jitted.lower(*args, **kwargs).compile()
    return compiled, time.perf_counter() - start


def time_compile(jitted: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds to lower and compile a ``jax.jit``-ed function for these arguments."""
    return compile_timed(jitted, *args, **kwargs)[1]


def compilation_cache_folder(setting: str) -> Path | None:
    """The folder a compilation-cache setting names (``--compilation-cache`` or
    ``$JAXOPT_LAB_COMPILATION_CACHE``): None for ``off`` (a folder named off is
    ``./off``)."""
    return None if setting == "off" else Path(setting).expanduser()


def default_compilation_cache() -> Path | None:
    """``$JAXOPT_LAB_COMPILATION_CACHE`` (None when it is ``off``), else
    ``$XDG_CACHE_HOME/jaxopt_lab/xla`` (default ``~/.cache/jaxopt_lab/xla``)."""
    chosen = os.environ.get("JAXOPT_LAB_COMPILATION_CACHE")
    if chosen:
        return compilation_cache_folder(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "jaxopt_lab" / "xla"


def enable_compilation_cache(directory: str | Path) -> Path:
    """Keep every compiled XLA program in ``directory`` (JAX's persistent compilation
    cache), so a later process reuses what an earlier one compiled instead of compiling
    it again: compile once per machine, not once per run. JAX keys entries on the
    program, the JAX version and the device, so a stale entry is never used; deleting the
    folder is always safe. Call it before the first compilation.

    The programs go to this host's subfolder (:func:`host_cache_folder`), which is
    returned. XLA compiles CPU programs for the host's instruction sets, but JAX's key
    names a CPU only as ``cpu``: hosts with different CPUs sharing one folder (a home on
    a network drive) would load each other's programs, an older CPU rejecting them and
    compiling again, a newer one able to run code built for fewer instructions than it has.
    """
    folder = host_cache_folder(directory)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def host_cache_folder(directory: str | Path, flags: frozenset[str] | None = None) -> Path:
    """This host's subfolder of a compilation-cache folder: ``<machine>-<digest>``, the
    digest of the CPU's feature flags (``flags``, default :func:`cpu_flags`)."""
    features = " ".join(sorted(cpu_flags() if flags is None else flags))
    digest = hashlib.sha256(features.encode()).hexdigest()[:12]
    return Path(directory).expanduser() / f"{platform.machine() or 'unknown'}-{digest}"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux's ``flags`` line on x86, ``Features`` on ARM);
    where there is no such file, the processor's name as one flag."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset({platform.processor() or platform.machine()})


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file, flushed to disk, and a
    rename: a reader, or another process writing the same file, sees all of it or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


# Libraries whose code runs while a program is traced: a new version of any of them may
# trace another program, so their versions are part of an exported program's key.
_TRACING_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy")


def _package_source_digest() -> str:
    """SHA-256 of every Python file of jaxopt_lab: an edit anywhere makes new keys."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def exported_program_key(program_id: str, example_args: Sequence[jax.Array]) -> str:
    """The file name under which :func:`exported_program` keeps a program: a SHA-256 of
    ``program_id``, jaxopt_lab's source, the tracing libraries' versions, every JAX
    configuration value, the backend and its devices, and the shape and dtype of each
    argument."""
    device = jax.devices()[0]
    parts = [
        program_id,
        _package_source_digest(),
        *(f"{name}={importlib.metadata.version(name)}" for name in _TRACING_LIBRARIES),
        *(f"{name}={value!r}" for name, value in sorted(jax.config.values.items())),
        f"{jax.default_backend()}/{device.device_kind}/{jax.device_count()}",
        *(str(jax.typeof(arg)) for arg in example_args),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def exported_program(
    function: Callable[..., tuple[jax.Array, ...]],
    example_args: Sequence[jax.Array],
    program_id: str,
) -> Callable[..., tuple[jax.Array, ...]]:
    """``jax.jit(function)``, traced and lowered once per machine instead of once per
    process.

    With the persistent compilation cache on (:func:`enable_compilation_cache`), the
    traced and lowered program (a :mod:`jax.export` artifact) is kept in its
    ``exported/`` subfolder under :func:`exported_program_key`, and a later process
    loads it instead of tracing and lowering ``function`` again; the compiled program
    then comes from the compilation cache. ``function`` takes and returns flat tuples of
    arrays (no pytrees, no PRNG key arrays: pass ``jax.random.key_data``).

    ``program_id`` must name everything the program depends on besides its arguments'
    shapes and dtypes and jaxopt_lab's own code (for a training epoch: the model, the
    optimizer with its schedule, the batch size); two functions given the same
    ``program_id`` share one program. With the cache off this is ``jax.jit(function)``.
    An unreadable file is warned about and replaced.
    """
    cache = jax.config.jax_compilation_cache_dir
    if cache is None:
        return jax.jit(function)
    path = Path(cache) / "exported" / f"{exported_program_key(program_id, example_args)}.jaxexport"
    try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except FileNotFoundError:
        exported = None
    except Exception as error:  # a truncated or foreign file: export again over it
        warnings.warn(f"ignoring the unreadable exported program {path}: {error}", stacklevel=2)
        exported = None
    if exported is None:
        exported = jax.export.export(jax.jit(function))(*example_args)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, exported.serialize())
    return jax.jit(exported.call)


def cpu_cache_bytes(level: int = 3) -> int | None:
    """Size of the host CPU's unified (or data) cache at ``level`` in bytes, read from
    Linux's sysfs; None where it cannot be read."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for index in sorted(root.glob("index*")):
        try:
            if int((index / "level").read_text()) != level:
                continue
            if (index / "type").read_text().strip() not in ("Unified", "Data"):
                continue
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            return None
        return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    return None


def device_info() -> dict[str, Any]:
    """What the numbers were measured on: device, JAX version, host."""
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
