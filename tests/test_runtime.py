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
