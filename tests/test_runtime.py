"""runtime.py: the persistent compilation cache makes a second process compile nothing
that a first one compiled (JAX reports cache hits), and the timing helpers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxopt_lab import runtime

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp
from jaxopt_lab.runtime import enable_compilation_cache
if sys.argv[1] != "off":
    enable_compilation_cache(sys.argv[1])
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
step = jax.jit(lambda w, x: jnp.tanh(x @ w).sum())
jax.block_until_ready(jax.grad(step)(jnp.ones((32, 8)), jnp.ones((4, 32))))
print(json.dumps({
    "hits": events.count("/jax/compilation_cache/cache_hits"),
    "misses": events.count("/jax/compilation_cache/cache_misses"),
}))
"""


def _run(cache: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, cache], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_process_reuses_what_the_first_compiled(tmp_path):
    cache = tmp_path / "nested" / "xla"
    first = _run(str(cache))
    assert first["misses"] > 0 and first["hits"] == 0
    assert any(cache.iterdir())
    second = _run(str(cache))
    assert second["hits"] == first["misses"] and second["misses"] == 0
    assert _run("off") == {"hits": 0, "misses": 0}  # without it, no cache is consulted


def test_each_cpu_keeps_its_programs_in_its_own_subfolder(tmp_path):
    def flags_of(flags: str) -> frozenset[str]:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n")
        return runtime.cpu_flags(cpuinfo)

    avx2, avx512 = flags_of("fpu sse2 avx avx2 fma"), flags_of("fpu sse2 avx avx2 fma avx512f")
    assert avx2 == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert runtime.cpu_flags(tmp_path / "missing")  # no such file: the processor's name
    cache = tmp_path / "xla"
    folder = runtime.host_cache_folder(cache, avx2)
    assert folder.parent == cache
    assert runtime.host_cache_folder(cache, avx512) != folder  # another instruction set
    assert runtime.host_cache_folder(cache, flags_of("fma avx2 avx sse2 fpu")) == folder
    assert runtime.host_cache_folder(cache) == runtime.host_cache_folder(cache)  # this host


def test_default_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXOPT_LAB_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.default_compilation_cache() == tmp_path / "jaxopt_lab" / "xla"
    monkeypatch.setenv("JAXOPT_LAB_COMPILATION_CACHE", str(tmp_path / "elsewhere"))
    assert runtime.default_compilation_cache() == tmp_path / "elsewhere"
    monkeypatch.setenv("JAXOPT_LAB_COMPILATION_CACHE", "off")
    assert runtime.default_compilation_cache() is None
    monkeypatch.setenv("JAXOPT_LAB_COMPILATION_CACHE", "./off")  # a folder named off
    assert runtime.default_compilation_cache() == Path("off")


def test_the_cli_fills_the_cache_folder_it_is_given(tmp_path):
    import os

    def minimize(*flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "jaxopt_lab.cli", "minimize", "--problem", "beale"]
        return subprocess.run(
            [*command, *flags], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )

    cache = tmp_path / "cache"
    assert minimize("--compilation-cache", str(cache)).returncode == 0
    assert any(cache.iterdir())
    unused = tmp_path / "unused"
    environment = {**os.environ, "JAXOPT_LAB_COMPILATION_CACHE": str(unused)}
    assert minimize("--no-compilation-cache", env=environment).returncode == 0
    assert not unused.exists()
    # off means no cache, as in the environment variable, not a folder named off
    assert minimize("--compilation-cache", "off", env=environment).returncode == 0
    assert not unused.exists() and not (tmp_path / "off").exists()
    both = minimize("--no-compilation-cache", "--compilation-cache", str(cache))
    assert both.returncode == 1 and "exclude each other" in both.stderr


def test_summarise_rejects_no_times():
    with pytest.raises(ValueError, match="times"):
        runtime.summarise([])


EXPORT_SCRIPT = r"""
import json, sys
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from jaxopt_lab.runtime import enable_compilation_cache, exported_program
folder = enable_compilation_cache(sys.argv[1])
traces = []

def layer(w, x):
    traces.append(1)  # runs only while the function is traced
    return jnp.tanh(x @ w).sum(), 2 * w

args = (jnp.arange(12.0).reshape(3, 4) / 10, jnp.linspace(-1, 1, 6).reshape(2, 3))
program = exported_program(layer, args, sys.argv[2])
got = program(*args)
traced = len(traces)
expected = jax.jit(layer)(*args)
print(json.dumps({
    "traced": traced,
    "equal": all(np.array_equal(a, b) for a, b in zip(got, expected)),
    "files": sorted(path.name for path in (folder / "exported").iterdir()),
}))
"""


def _run_export(cache: Path, program_id: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", EXPORT_SCRIPT, str(cache), program_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_a_second_process_loads_the_exported_program_instead_of_tracing(tmp_path):
    cache = tmp_path / "xla"
    first, _ = _run_export(cache, "layer")
    assert first["traced"] == 1 and first["equal"] and len(first["files"]) == 1
    second, _ = _run_export(cache, "layer")
    assert second == {**first, "traced": 0}  # same file, same results, nothing traced
    other, _ = _run_export(cache, "another layer")  # another program_id: its own program
    assert other["traced"] == 1 and other["equal"] and len(other["files"]) == 2
    stored = runtime.host_cache_folder(cache) / "exported" / first["files"][0]
    stored.write_bytes(b"not an exported program")
    repaired, warning = _run_export(cache, "layer")
    assert repaired["traced"] == 1 and repaired["equal"] and "unreadable" in warning
    assert _run_export(cache, "layer")[0]["traced"] == 0  # the file was written again


def test_the_key_of_an_exported_program_names_its_arguments_and_id():
    import jax.numpy as jnp

    args = (jnp.ones((3, 4)), jnp.ones(2, jnp.int32))
    key = runtime.exported_program_key("id", args)
    assert runtime.exported_program_key("id", (jnp.zeros((3, 4)), jnp.ones(2, jnp.int32))) == key
    assert runtime.exported_program_key("other id", args) != key
    assert runtime.exported_program_key("id", (jnp.ones((3, 5)), args[1])) != key
    assert runtime.exported_program_key("id", (args[0], jnp.ones(2, jnp.int16))) != key


def test_without_a_compilation_cache_nothing_is_exported(monkeypatch):
    import jax
    import jax.numpy as jnp

    assert jax.config.jax_compilation_cache_dir is None

    def no_export(*args, **kwargs):
        raise AssertionError("exported although the compilation cache is off")

    monkeypatch.setattr(jax.export, "export", no_export)
    program = runtime.exported_program(lambda x: (x + 1,), (jnp.ones(3),), "plus one")
    assert float(program(jnp.ones(3))[0].sum()) == 6.0
