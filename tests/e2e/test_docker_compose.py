"""docker-compose.yaml, Dockerfile and .dockerignore: every service, dependency and health check they rely on.

No Docker daemon is needed: the file is parsed with PyYAML and checked by `docker-compose config -q`;
the emulator service's command and health check and airflow-init's script run here with bash (paths
and ports swapped, a stand-in `airflow` CLI), and the connection they produce is given to the hook.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.e2e.stack import REPO, free_port

COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-training",
)
ALL_SERVICES = {"postgres", "redis", "neptune-emulator", "airflow-init", *AIRFLOW_SERVICES}
IMAGE_SERVICES = ("neptune-emulator", "airflow-init", *AIRFLOW_SERVICES)
EMULATOR_DATA = "/opt/airflow/emulator-data"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as PyYAML reads it (merge keys resolved)."""
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (anchors merge into it)"
    return {str(k): str(v) for k, v in env.items()}


def _command(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def _depends(service: Mapping[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on must use the long form with conditions"
    return {name: spec["condition"] for name, spec in depends.items()}


def test_every_service_is_defined(services: Mapping[str, Any]) -> None:
    assert set(services) == ALL_SERVICES


def test_airflow_services_share_the_provider_image_built_from_the_repo(
    services: Mapping[str, Mapping[str, Any]],
) -> None:
    images = {services[name]["image"] for name in IMAGE_SERVICES}
    assert len(images) == 1, f"all provider services must run one image, got {images}"
    for name in IMAGE_SERVICES:
        build = services[name]["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile", name
    assert _command(services["airflow-apiserver"]) == ["api-server"]
    assert _command(services["airflow-scheduler"]) == ["scheduler"]
    assert _command(services["airflow-dag-processor"]) == ["dag-processor"]
    assert _command(services["airflow-triggerer"]) == ["triggerer"]
    assert _command(services["airflow-worker"]) == ["celery", "worker", "--queues", "default"]
    assert _command(services["airflow-worker-training"]) == ["celery", "worker", "--queues", "training"]


def test_celery_executor_postgres_and_redis(services: Mapping[str, Mapping[str, Any]]) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        env = _env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres", name
        assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis", name
        assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"], name
        api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (api.hostname, api.port, api.path) == ("airflow-apiserver", 8080, "/execution/"), name
        # Tokens signed by one component are checked by another: one shared secret.
        assert (
            env["AIRFLOW__API_AUTH__JWT_SECRET"]
            == _env(services["airflow-apiserver"])["AIRFLOW__API_AUTH__JWT_SECRET"]
        )
        assert "./dags:/opt/airflow/dags" in services[name]["volumes"], name
    postgres = _env(services["postgres"])
    assert (
        "airflow:airflow@postgres/airflow"
        in _env(services["airflow-init"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) == (
        "airflow",
    ) * 3


def test_health_checks_and_dependencies(services: Mapping[str, Mapping[str, Any]]) -> None:
    long_running = ALL_SERVICES - {"airflow-init"}
    for name in long_running:
        check = services[name].get("healthcheck")
        assert check, f"{name} needs a health check"
        assert check.get("test"), f"{name} needs a health check command"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    for name, service in services.items():
        for target, condition in _depends(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), (
                    f"{name} waits for {target}, which has no health check"
                )
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        depends = _depends(services[name])
        for backing in ("postgres", "redis", "neptune-emulator"):
            assert depends.get(backing) == "service_healthy", (name, backing)
    for name in AIRFLOW_SERVICES:
        assert _depends(services[name])["airflow-init"] == "service_completed_successfully", name
    # Workers run tasks through the api-server's execution API: it must be up first.
    for worker in ("airflow-worker", "airflow-worker-training"):
        assert _depends(services[worker])["airflow-apiserver"] == "service_healthy", worker
    assert not _depends(services["neptune-emulator"]), "the emulator needs nothing else"
    _assert_acyclic({name: set(_depends(service)) for name, service in services.items()})


def _assert_acyclic(graph: Mapping[str, set[str]]) -> None:
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for target in graph.get(node, set()):
            visit(target, (*path, node))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_health_check_endpoints_match_the_services(services: Mapping[str, Mapping[str, Any]]) -> None:
    def test_text(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"][1:])

    assert "pg_isready" in test_text("postgres")
    assert "redis-cli ping" in test_text("redis")
    assert "/api/v2/version" in test_text("airflow-apiserver")
    # The scheduler's health endpoint exists only when enabled.
    assert ":8974/health" in test_text("airflow-scheduler")
    assert _env(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "--job-type DagProcessorJob" in test_text("airflow-dag-processor")
    assert "--job-type TriggererJob" in test_text("airflow-triggerer")
    assert "inspect ping" in test_text("airflow-worker")
    assert "inspect ping" in test_text("airflow-worker-training")
    assert "--port 5050" in services["neptune-emulator"]["command"][0]
    assert "localhost:5050/_emulator/stats" in test_text("neptune-emulator")
    # The control endpoints need the API token (the emulator shares a network with every service).
    assert "X-Neptune-Api-Token: $$(sed -n 's/^NEPTUNE_API_TOKEN=//p'" in test_text("neptune-emulator")
    assert "NEPTUNE_API_TOKEN=" in test_text("neptune-emulator"), "healthy means the token is written too"


def _emulator_args(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    (script,) = services["neptune-emulator"]["command"]
    (line,) = [line for line in script.splitlines() if line.startswith("exec python -m")]
    return shlex.split(line.split(" > ", 1)[0].replace("$$data", EMULATOR_DATA))


def test_emulator_service_command_and_volumes(services: Mapping[str, Mapping[str, Any]]) -> None:
    service = services["neptune-emulator"]
    assert service["entrypoint"] == ["/bin/bash", "-c"]
    args = _emulator_args(services)
    assert args[:4] == ["exec", "python", "-m", "airflow_provider_neptune.emulator"]
    assert _flag(args, "--host") == "0.0.0.0", "the emulator must listen on the compose network"
    assert "--open" not in args, "on a shared network the control endpoints must keep needing the token"
    # HTTPS: the hook refuses plain http to anything but loopback.
    assert _flag(args, "--public-url") == f"https://neptune-emulator:{_flag(args, '--port')}"
    assert _flag(args, "--ssl-certfile") == f"{EMULATOR_DATA}/tls/cert.pem"
    assert _flag(args, "--data-dir") == EMULATOR_DATA
    assert f"neptune-emulator-data:{EMULATOR_DATA}" in service["volumes"]
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        assert f"neptune-emulator-data:{EMULATOR_DATA}:ro" in services[name]["volumes"], name
        env = _env(services[name])
        assert env["REQUESTS_CA_BUNDLE"] == f"{EMULATOR_DATA}/tls/ca-bundle.pem", name
        assert env["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] == "1", name
        assert "OAUTHLIB_INSECURE_TRANSPORT" not in env, f"{name}: no plain http anywhere"
    help_text = subprocess.run(
        [sys.executable, "-m", "airflow_provider_neptune.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for flag in (arg for arg in args if arg.startswith("--")):
        assert flag in help_text, f"the emulator has no {flag} flag"


def _shell(text: str, replacements: Mapping[str, str]) -> str:
    """A compose command as bash sees it ($$ is compose's escape for $), with paths and ports replaced."""
    text = text.replace("$$", "$")
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


@pytest.fixture(scope="module")
def local_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (``redis://127.0.0.1:<port>``)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required (`make test` installs it)"
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            return False

        _wait_for(answers, 30, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def compose_emulator(
    services: Mapping[str, Mapping[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The emulator service's own command, run by bash on loopback with its data volume in a temp dir."""
    data_dir = tmp_path_factory.mktemp("emulator-data")
    port = free_port()
    # Loopback stands in for the compose network: the certificate also names localhost.
    replacements = {
        EMULATOR_DATA: str(data_dir),
        "--host 0.0.0.0": "--host 127.0.0.1",
        "--port 5050": f"--port {port}",
        "https://neptune-emulator:5050": f"https://localhost:{port}",
        "localhost:5050": f"localhost:{port}",
    }
    (command,) = services["neptune-emulator"]["command"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["/bin/bash", "-c", _shell(command, replacements)], env=env)
    try:
        token_file = data_dir / "emulator.env"
        _wait_for(
            lambda: token_file.exists() and "NEPTUNE_API_TOKEN=" in token_file.read_text(), 60, "the token"
        )
        yield {"proc": proc, "data_dir": data_dir, "replacements": replacements, "env": env}
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def test_the_emulator_service_writes_a_token_naming_its_service_address(
    compose_emulator: dict[str, Any], services: Mapping[str, Mapping[str, Any]]
) -> None:
    lines = (compose_emulator["data_dir"] / "emulator.env").read_text().splitlines()
    token = next(line.split("=", 1)[1] for line in lines if line.startswith("NEPTUNE_API_TOKEN="))
    address = json.loads(base64.b64decode(token))["api_address"]
    # Here the service name is replaced by localhost (see the fixture); in compose it names the service.
    assert address == compose_emulator["replacements"]["https://neptune-emulator:5050"]
    assert (compose_emulator["data_dir"] / "tls" / "key.pem").stat().st_mode & 0o077 == 0, "a private key"
    assert "NEPTUNE_PROJECT=airflow/sandbox" in lines
    # The service's health check passes against it (grep and curl, as in the container).
    check = services["neptune-emulator"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    result = subprocess.run(
        ["/bin/sh", "-c", _shell(check[1], compose_emulator["replacements"])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_init_creates_the_pool_and_a_connection_the_hook_accepts(
    compose_emulator: dict[str, Any],
    services: Mapping[str, Mapping[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_redis: str,
) -> None:
    init = services["airflow-init"]
    assert init["entrypoint"] == "/bin/bash"
    assert f"neptune-emulator-data:{EMULATOR_DATA}:ro" in init["volumes"]
    script = _command(init)[1]
    assert script.startswith("set -euo pipefail"), "a failing step must fail the init container"
    # A stand-in `airflow` CLI that records its arguments, one JSON list per call.
    calls = tmp_path / "calls.jsonl"
    fake = tmp_path / "bin" / "airflow"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\nwith open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    env = {
        **compose_emulator["env"],
        "PATH": f"{fake.parent}{os.pathsep}{compose_emulator['env']['PATH']}",
        "NEPTUNE_CONNECTION_EXTRA": _env(init)["NEPTUNE_CONNECTION_EXTRA"],
    }
    result = subprocess.run(
        ["/bin/bash", "-c", _shell(script, compose_emulator["replacements"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert recorded[0] == ["db", "migrate"]
    assert recorded[1][:3] == ["pools", "set", "neptune_api"]
    assert int(recorded[1][3]) >= 2, "the pool must let some Neptune tasks run in parallel"
    add = next(call for call in recorded if call[:3] == ["connections", "add", "neptune_default"])
    connection = json.loads(add[add.index("--conn-json") + 1])
    assert connection["conn_type"] == "neptune"
    extra = connection["extra"]
    assert extra["project"] == "airflow/sandbox"
    storage = urlsplit(extra["rate_limit_storage"])
    assert (storage.scheme, storage.hostname) == ("redis", "redis")
    # Celery uses database 0 of the same Redis; the budget keeps to its own database.
    assert storage.path not in ("", "/", "/0")

    from airflow_provider_neptune.hooks.limiter import close_budgets
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    # With the services' TLS settings the hook reaches the emulator and the token is accepted.
    for name in ("REQUESTS_CA_BUNDLE", "NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"):
        monkeypatch.setenv(name, _shell(_env(init)[name], compose_emulator["replacements"]))
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    # Loopback Redis stands in for the redis service that holds the shared budget.
    live = json.loads(json.dumps(connection).replace("redis://redis:6379", local_redis))
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", json.dumps(live))
    hook = NeptuneHook()
    try:
        assert hook.settings.project == "airflow/sandbox"
        assert str(hook.settings.api_address).startswith("https://")
        ok, message = hook.test_connection()
        assert ok, message
    finally:
        hook.close()
        # Stop the budget's background thread while its Redis is still up.
        close_budgets()


def test_the_emulator_service_stops_cleanly(compose_emulator: dict[str, Any]) -> None:
    proc = compose_emulator["proc"]
    proc.send_signal(signal.SIGTERM)
    # exec made the emulator the process docker signals: it exits 0 on SIGTERM.
    assert proc.wait(timeout=30) == 0


def test_dockerfile_installs_the_provider_with_the_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    constraints = (REPO / "constraints.txt").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", constraints, re.MULTILINE)
    assert pinned, "constraints.txt must pin apache-airflow"
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(\S+)-python(\S+)$", dockerfile, re.MULTILINE)
    assert base, "the Dockerfile builds on the official apache/airflow image"
    assert base.group(1) == pinned.group(1), "image and constraints must name the same Airflow"
    assert base.group(2) == "3.11"
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", dockerfile, re.MULTILINE)
    assert "PIP_CONSTRAINT=/opt/airflow-provider-neptune/constraints.txt" in dockerfile
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile
    assert "numpy" in dockerfile, "the example DAG needs numpy"
    assert "numpy==" in constraints, "the example DAG's numpy is pinned too"


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip()[:1] not in ("", "#")
    ]
    copied = [
        part
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
        if not part.startswith("--")
    ]
    assert {"constraints.txt", "pyproject.toml", "README.md", "airflow_provider_neptune"} <= set(copied)
    for path in copied:
        assert (REPO / path).exists(), f"the Dockerfile copies {path}, which does not exist"
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in patterns), f".dockerignore drops {path}"
    assert ".venv" in patterns, "the build context must not carry the venv"
    assert ".git" in patterns, "the build context must not carry .git"


def test_docker_compose_config_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is required (Debian package docker-compose; `make test` installs it)"
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_published_ports_are_loopback_only(services: Mapping[str, Mapping[str, Any]]) -> None:
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"airflow-apiserver", "neptune-emulator"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_environment_values_are_strings(compose: Mapping[str, Any]) -> None:
    # Compose rejects or mangles unquoted booleans and numbers in environment mappings.
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: {key} must be a quoted string, got {value!r}"
