"""Integration fixtures: a real ``redis-server`` on loopback (shared by every helper) and hook builders."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a throwaway redis-server (no persistence) on a free loopback port; stop it after the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make redis` (Debian package redis-server)")
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not _ping(port):
            if process.poll() is not None:
                pytest.fail(f"redis-server exited with code {process.returncode}")
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 15 s")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def neptune_hook_factory(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Build NeptuneHooks on the session emulator through a real ``neptune_default`` connection.

    Async queues go to a per-test data directory; every pooled run handle is stopped afterwards.
    Keyword arguments become connection extras (e.g. ``mode="sync"``).
    """
    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.hooks.run_pool import POOL

    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / ".neptune"))
    made: list[Any] = []

    def make(emulator: Any = None, **extra: Any) -> Any:
        emulator = emulator or neptune_emulator
        extra.setdefault("retry_backoff", 0.05)
        monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", emulator.airflow_conn_json(**extra))
        hook = NeptuneHook()
        _ = hook.settings  # resolve now, while this connection is in the environment
        made.append(hook)
        return hook

    yield make
    POOL.close_all(seconds=10)


@pytest.fixture
def emulator(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The session emulator with NEPTUNE_* set for the plain client and a scratch working directory."""
    for key, value in neptune_emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return neptune_emulator
