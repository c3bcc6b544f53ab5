"""Run the services of docker-compose.yaml as processes on loopback, without containers.

``ComposeStack`` reads docker-compose.yaml and starts every service with the command, entrypoint,
environment, healthcheck and ``depends_on`` conditions written there; only paths (volume targets),
ports and host names are swapped for loopback ones (see ``Loopback``):

- ``postgres`` (image ``postgres:*``): Debian's PostgreSQL server (initdb + postgres) in a throwaway
  data directory, with the user, password and database of the service's POSTGRES_* variables;
- ``redis`` (image ``redis:*``): ``redis-server`` without persistence;
- every service built from the Dockerfile: its entrypoint and command (an Airflow sub-command
  when there is no entrypoint, as the image's entrypoint does) in the repository's virtualenv.

Each service is its own process tree (own session) with its own environment, ``AIRFLOW_HOME`` and
``HOSTNAME``, like a separate host; named volumes are folders shared by the services mounting them.
``ComposeStack.report()`` lists what the runner changed and which parts of the file it did not
exercise (image build, volumes' read-only flags, restart policies, published ports).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.stack import REPO, AirflowStack, StackError, free_port, stop_process_groups, wait_until

COMPOSE_FILE = REPO / "docker-compose.yaml"
VENV_BIN = Path(sys.executable).parent
# Ports the services listen on inside their containers, and the Airflow setting that moves each one
# (None: the port appears in the service's own command, e.g. the emulator's --port 5050).
AIRFLOW_PORT_SETTINGS: dict[int, str] = {
    8080: "AIRFLOW__API__PORT",
    8974: "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    8793: "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    8794: "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
}
DEFAULT_PORTS: dict[str, int] = {"postgresql": 5432, "redis": 6379, "http": 80, "https": 443}
# The image's AIRFLOW_HOME; volume targets below it are mapped to the volumes' folders.
IMAGE_AIRFLOW_HOME = "/opt/airflow"
# The operating-system user Debian's postgresql package creates; the server runs as it under root.
POSTGRES_OS_USER = "postgres"
# Settings the runner adds on a small machine (documented in report()): one api-server worker
# process and four Celery worker processes instead of the defaults (4 and 16 per worker).
RESOURCE_SETTINGS: dict[str, str] = {
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
}
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^@/\s'\"]*@)?(?P<host>[A-Za-z0-9_.-]+)"
    r"(?::(?P<port>\d+))?"
)
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class ComposeError(StackError):
    """docker-compose.yaml asks for something the runner cannot do as processes, or a service failed."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ``${VAR}``, ``${VAR:-default}`` and ``$$`` (a literal ``$``)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("braced"), match.group("default")
        value = variables.get(name, "")
        return value if value else (default or "")

    return _INTERPOLATION.sub(replace, value)


@dataclass(frozen=True)
class Service:
    """One service of the compose file, with anchors and merge keys resolved."""

    name: str
    image: str
    build: bool
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    volumes: list[str]
    ports: list[str]
    healthcheck: dict[str, Any] | None
    depends_on: dict[str, str]
    restart: str | None
    user: str | None


def _as_argv(value: Any, *, shell_form: bool) -> list[str] | None:
    """Compose's command/entrypoint: a list as is; a string split like a shell would (``shell_form``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value) if shell_form else [value]
    return [str(part) for part in value]


def load_services(path: Path = COMPOSE_FILE) -> dict[str, Service]:
    """Parse the compose file (YAML anchors and ``<<`` merges resolved by the loader)."""
    document = yaml.safe_load(path.read_text())
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict) or not services:
        raise ComposeError(f"{path}: no services mapping")
    out = {}
    for name, spec in services.items():
        if not isinstance(spec, dict):
            raise ComposeError(f"{path}: service {name!r} is not a mapping")
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        out[name] = Service(
            name=name,
            image=str(spec.get("image", "")),
            build="build" in spec,
            entrypoint=_as_argv(spec.get("entrypoint"), shell_form=True),
            command=_as_argv(spec.get("command"), shell_form=True),
            environment={str(k): "" if v is None else str(v) for k, v in env.items()},
            volumes=[str(v) for v in spec.get("volumes") or []],
            ports=[str(p) for p in spec.get("ports") or []],
            healthcheck=spec.get("healthcheck"),
            depends_on={
                dep: str((cond or {}).get("condition", "service_started")) for dep, cond in depends.items()
            },
            restart=spec.get("restart"),
            user=spec.get("user"),
        )
    return out


def start_order(services: Mapping[str, Service]) -> list[str]:
    """Services sorted so that each comes after everything it depends on (ComposeError on a cycle)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"depends_on cycle: {' -> '.join((*chain, name))}")
        if name not in services:
            raise ComposeError(f"{chain[-1]} depends on unknown service {name!r}")
        visiting.add(name)
        for dep in services[name].depends_on:
            visit(dep, (*chain, name))
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name, ())
    return order


@dataclass
class Loopback:
    """Where each service lives on this machine: its loopback ports, its AIRFLOW_HOME, the volumes."""

    home: Path
    services: Mapping[str, Service]
    ports: dict[str, dict[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, service in self.services.items():
            wanted = set()
            if service.image.startswith("postgres"):
                wanted.add(DEFAULT_PORTS["postgresql"])
            elif service.image.startswith("redis"):
                wanted.add(DEFAULT_PORTS["redis"])
            elif not service.entrypoint:
                # An Airflow sub-command: the ports its components may listen on.
                wanted |= set(AIRFLOW_PORT_SETTINGS)
            for spec in service.ports:
                wanted.add(int(spec.rsplit(":", 1)[-1].split("/")[0]))
            for port in re.findall(r"--port[= ](\d+)", " ".join(self._texts(service))):
                wanted.add(int(port))
            self.ports[name] = {port: free_port() for port in sorted(wanted)}

    @staticmethod
    def _texts(service: Service) -> list[str]:
        return [*(service.entrypoint or []), *(service.command or [])]

    def volume_dir(self, volume: str) -> Path:
        """The folder standing for a named volume (shared by every service mounting it)."""
        return self.home / "volumes" / volume

    def service_home(self, service: str) -> Path:
        """The service's own AIRFLOW_HOME (and working directory): its 'host'."""
        return self.home / "hosts" / service

    def mounts(self, service: Service) -> list[tuple[str, Path]]:
        """(target in the container, folder here) for each volume, longest target first."""
        out = []
        for spec in service.volumes:
            source, target = spec.split(":")[:2]
            local = (REPO / source).resolve() if source.startswith((".", "/")) else self.volume_dir(source)
            out.append((target, local))
        return sorted(out, key=lambda item: -len(item[0]))

    def address(self, service: str, port: int) -> int:
        """The loopback port standing for ``service``'s container ``port``."""
        try:
            return self.ports[service][port]
        except KeyError:
            raise ComposeError(f"service {service!r} does not listen on port {port} here") from None

    def translate(self, text: str, service: Service) -> str:
        """Swap host names, ports and paths in one string of ``service``'s command or environment."""

        def url(match: re.Match[str]) -> str:
            scheme, host = match.group("scheme"), match.group("host")
            # postgresql+psycopg2, db+postgresql: the part naming a known protocol.
            base = next((part for part in scheme.split("+") if part in DEFAULT_PORTS), scheme)
            port = int(match.group("port") or DEFAULT_PORTS.get(base, 0))
            if host in self.services:
                target = host
            elif host == "localhost" and port in self.ports.get(service.name, {}):
                target = service.name
            else:
                return match.group(0)
            # TLS needs a name in the certificate (the emulator's has localhost); the rest use IPv4.
            loopback = "localhost" if base == "https" else "127.0.0.1"
            return f"{scheme}://{match.group('user') or ''}{loopback}:{self.address(target, port)}"

        text = _URL.sub(url, text)
        own = self.ports.get(service.name, {})
        text = re.sub(
            r"(--port[= ])(\d+)", lambda m: m.group(1) + str(own.get(int(m.group(2)), m.group(2))), text
        )
        text = text.replace("0.0.0.0", "127.0.0.1")
        for target, local in self.mounts(service):
            text = re.sub(rf"{re.escape(target)}(?=/|\b|$)", str(local), text)
        return text


class EmulatorControl:
    """The emulator's control endpoints (stats, faults) over HTTPS, with its API token."""

    def __init__(self, url: str, api_token: str, cafile: Path, project: str) -> None:
        self.url = url.rstrip("/")
        self.api_token = api_token
        self.cafile = cafile
        self.project = project

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("X-Neptune-Api-Token", self.api_token)
        context = ssl.create_default_context(cafile=str(self.cafile))
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            return json.loads(response.read() or b"null")

    def stats(self) -> dict[str, Any]:
        """GET /_emulator/stats."""
        return dict(self._request("GET", "/_emulator/stats"))

    def reset_stats(self) -> None:
        """POST /_emulator/reset_stats."""
        self._request("POST", "/_emulator/reset_stats", {})

    def set_faults(
        self, rate_limit: float | None = None, fault_rate: float = 0.0, latency_ms: float | None = None
    ) -> dict[str, Any]:
        """POST /_emulator/faults: the request limit (None: unlimited), fault share and latency."""
        body: dict[str, Any] = {"rate_limit": rate_limit, "fault_rate": fault_rate}
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        return dict(self._request("POST", "/_emulator/faults", body))


@dataclass
class ComposeStack(AirflowStack):
    """docker-compose.yaml's services as processes on loopback; the REST helpers of AirflowStack.

    ``overrides`` change a service's environment as a docker-compose.override.yaml would
    (``{"airflow-worker-training": {"NEPTUNE_DATA_DIRECTORY": None}}``: None removes a variable;
    ``"*"`` applies to every Airflow service); report() lists them.
    """

    compose_file: Path = COMPOSE_FILE
    overrides: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    skip: Sequence[str] = ()
    loopback: Loopback = field(init=False)
    services: dict[str, Service] = field(init=False)
    exited: dict[str, int] = field(default_factory=dict)
    postgres_root: Path | None = None

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.services = load_services(self.compose_file)
        self.loopback = Loopback(self.home, self.services)
        api = next((n for n, s in self.services.items() if s.command == ["api-server"]), None)
        if api is None:
            raise ComposeError(f"{self.compose_file}: no service runs the api-server")
        self.api_service = api
        self.api_port = self.loopback.address(api, 8080)

    # Layout ---------------------------------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        """Folder holding one log file per service."""
        return self.home / "service-logs"

    def _log_path(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int) -> Path:
        logs = self.loopback.translate(f"{IMAGE_AIRFLOW_HOME}/logs", self.services[self.api_service])
        folder = Path(logs) / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        return folder / f"attempt={try_number}.log"

    def volume(self, name: str) -> Path:
        """The folder standing for one named volume."""
        return self.loopback.volume_dir(name)

    # Environments ---------------------------------------------------------------------------------

    def _base_env(self, service: Service) -> dict[str, str]:
        """The 'host' environment: PATH with the venv (the image's Python) and PostgreSQL tools."""
        keep = ("LANG", "LC_ALL", "TZ", "TMPDIR", "TERM")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["PATH"] = os.pathsep.join(
            [str(VENV_BIN), str(postgres_bin()), "/usr/local/bin", "/usr/bin", "/bin"]
        )
        env["HOME"] = str(self.loopback.service_home(service.name))
        env["HOSTNAME"] = service.name
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def service_env(self, name: str) -> dict[str, str]:
        """The environment the runner gives one service (from the file, translated, plus overrides)."""
        service = self.services[name]
        env = self._base_env(service)
        for key, value in service.environment.items():
            env[key] = self.loopback.translate(interpolate(value, os.environ), service)
        if service.build:
            home = self.loopback.service_home(name)
            own = self.loopback.ports[name]
            moved = {
                setting: str(own[port]) for port, setting in AIRFLOW_PORT_SETTINGS.items() if port in own
            }
            env.update(
                {
                    "AIRFLOW_HOME": str(home),
                    # The image's defaults, at this service's paths: DAGs and logs are mounted volumes.
                    "AIRFLOW__CORE__DAGS_FOLDER": self.loopback.translate(
                        f"{IMAGE_AIRFLOW_HOME}/dags", service
                    ),
                    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": self.loopback.translate(
                        f"{IMAGE_AIRFLOW_HOME}/logs", service
                    ),
                    # The repository for tests.e2e.hostname: Airflow names this 'host' $HOSTNAME.
                    "PYTHONPATH": str(REPO),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.hostname.service_hostname",
                    "AIRFLOW__API__HOST": "127.0.0.1",
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                    **moved,
                    **RESOURCE_SETTINGS,
                }
            )
        for scope in ("*", name):
            if scope == "*" and not service.build:
                continue
            for key, value in (self.overrides.get(scope) or {}).items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
        return env

    def env(self) -> dict[str, str]:
        """Environment for one-off ``airflow`` commands: the api-server's."""
        return self.service_env(self.api_service)

    def service_argv(self, name: str) -> list[str]:
        """The command line of one service, translated for loopback."""
        service = self.services[name]
        if service.image.startswith("postgres"):
            raise ComposeError("postgres is started by start_postgres(), not from a command")
        if service.image.startswith("redis"):
            port = self.loopback.address(name, DEFAULT_PORTS["redis"])
            return [
                require_binary("redis-server", "Debian package redis-server"),
                "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            ]  # fmt: skip
        if not service.build:
            raise ComposeError(f"service {name!r}: image {service.image!r} has no process equivalent here")
        parts = [
            interpolate(part, os.environ) for part in [*(service.entrypoint or []), *(service.command or [])]
        ]
        if not service.entrypoint:
            # The Airflow image's entrypoint runs its arguments as an airflow sub-command.
            parts = [str(VENV_BIN / "airflow"), *parts]
            if parts[1:3] == ["celery", "worker"]:
                # Celery names a worker after the machine; here every worker shares one machine.
                parts += ["--celery-hostname", f"celery@{name}"]
        return [self.loopback.translate(part, service) for part in parts]

    # Lifecycle --------------------------------------------------------------------------------------

    def start(self) -> ComposeStack:
        """Start every service in depends_on order, waiting for each dependency's condition."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in start_order(self.services):
                if name in self.skip:
                    continue
                service = self.services[name]
                for dep, condition in service.depends_on.items():
                    self._wait_for(dep, condition)
                self.loopback.service_home(name).mkdir(parents=True, exist_ok=True)
                for _, local in self.loopback.mounts(service):
                    local.mkdir(parents=True, exist_ok=True)
                if service.image.startswith("postgres"):
                    self._start_postgres(service)
                else:
                    self.start_service(name)
            # Every long-running service healthy, as `docker compose up --wait` would; the checks
            # (several are airflow/celery CLI calls) run side by side.
            pending = [
                name
                for name in self.services
                if name not in self.skip
                and self.services[name].restart is not None
                and name in self.processes
            ]
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(pending))) as pool:
                waits = [
                    pool.submit(
                        self._wait_for,
                        name,
                        "service_healthy" if self.services[name].healthcheck else "service_started",
                    )
                    for name in pending
                ]
                for wait in waits:
                    wait.result()
        except BaseException:
            self.stop()
            raise
        return self

    def start_service(self, name: str, extra_env: Mapping[str, str | None] | None = None) -> None:
        """Start (or start again) one service as its own process tree."""
        env = self.service_env(name)
        for key, value in (extra_env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            self.service_argv(name),
            env=env,
            cwd=self.loopback.service_home(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.exited.pop(name, None)

    def _start_postgres(self, service: Service) -> None:
        env = {k: interpolate(v, os.environ) for k, v in service.environment.items()}
        user, password = env.get("POSTGRES_USER", "postgres"), env.get("POSTGRES_PASSWORD", "")
        database = env.get("POSTGRES_DB", user)
        # The postgres-db volume. Outside the stack home: the server's user must reach it, and the
        # home may sit below a folder only we can enter (pytest's tmp). Removed by stop().
        root = Path(tempfile.mkdtemp(prefix="apn-compose-postgres-"))
        self.postgres_root = root
        data, pwfile = root / "data", root / "pwfile"
        data.mkdir(mode=0o700)
        pwfile.write_text(password + "\n")
        run_as = postgres_run_as()
        if run_as:
            for path in (root, data, pwfile):
                shutil.chown(path, POSTGRES_OS_USER, POSTGRES_OS_USER)
        bin_dir = postgres_bin()
        initdb = [
            str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--pwfile", str(pwfile),
            "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync",
        ]  # fmt: skip
        result = subprocess.run([*run_as, *initdb], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ComposeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        port = self.loopback.address(service.name, DEFAULT_PORTS["postgresql"])
        log = (self.log_dir / f"{service.name}.log").open("ab")
        server = [
            str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(data),
            # A throwaway database: durability is not wanted, speed is.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        self.processes[service.name] = subprocess.Popen(
            [*run_as, *server], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        pg_env = {**os.environ, "PGPASSWORD": password}
        ready = [
            str(bin_dir / "pg_isready"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            user,
            "-d",
            "postgres",
        ]
        wait_until(
            lambda: (
                self._alive(service.name)
                and subprocess.run(ready, capture_output=True, check=False).returncode == 0
            ),
            timeout=60,
            what="PostgreSQL to accept connections",
        )
        if database != "postgres":
            create = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database]
            result = subprocess.run(create, env=pg_env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ComposeError(f"createdb {database} failed:\n{result.stderr}")

    def _alive(self, name: str) -> bool:
        proc = self.processes.get(name)
        if proc is None or proc.poll() is not None:
            code = None if proc is None else proc.returncode
            raise ComposeError(f"{name} exited with {code}:\n{self.component_log(name)[-4000:]}")
        return True

    def _wait_for(self, name: str, condition: str) -> None:
        """Wait for a depends_on condition (service_started, _healthy or _completed_successfully)."""
        if name in self.skip:
            return
        if condition == "service_completed_successfully":
            proc = self.processes[name]
            try:
                code = proc.wait(timeout=self.startup_timeout)
            except subprocess.TimeoutExpired:
                raise ComposeError(f"{name} did not finish within {self.startup_timeout} s") from None
            if code != 0:
                raise ComposeError(f"{name} exited with {code}:\n{self.component_log(name)[-4000:]}")
            self.exited[name] = code
            return
        if condition == "service_healthy":
            self.wait_healthy(name)
            return
        if condition != "service_started":
            raise ComposeError(f"depends_on condition {condition!r} of {name} is not supported")
        self._alive(name)

    def healthcheck_argv(self, name: str) -> list[str] | None:
        """The service's healthcheck ``test``, translated (None when it has none)."""
        service = self.services[name]
        test = (service.healthcheck or {}).get("test")
        if not test:
            return None
        if service.image.startswith("postgres"):
            # Ours listens on a loopback port: pg_isready needs host and port besides the file's flags.
            port = self.loopback.address(name, DEFAULT_PORTS["postgresql"])
            return [*(str(t) for t in test[1:]), "-h", "127.0.0.1", "-p", str(port)]
        if service.image.startswith("redis"):
            port = self.loopback.address(name, DEFAULT_PORTS["redis"])
            # redis-cli takes its options before the command.
            return [str(test[1]), "-h", "127.0.0.1", "-p", str(port), *(str(t) for t in test[2:])]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        kind, *rest = [interpolate(str(t), os.environ) for t in test]
        rest = [self.loopback.translate(part, service) for part in rest]
        if kind == "CMD-SHELL":
            return ["/bin/bash", "-c", rest[0]]
        if kind == "CMD":
            return rest
        raise ComposeError(f"healthcheck of {name}: unsupported test kind {kind!r}")

    def wait_healthy(self, name: str) -> None:
        """Run the service's own healthcheck until it passes (ComposeError when the service exits)."""
        argv = self.healthcheck_argv(name)
        if argv is None:
            self._alive(name)
            return
        env = self.service_env(name)
        last: list[str] = [""]

        def healthy() -> bool:
            self._alive(name)
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=90)
            last[0] = (result.stdout + result.stderr)[-2000:]
            return result.returncode == 0

        try:
            wait_until(healthy, timeout=self.startup_timeout, interval=2.0, what=f"{name} to be healthy")
        except StackError as exc:
            raise ComposeError(f"{exc}; last healthcheck output:\n{last[0]}") from None

    def check_alive(self) -> None:
        """Raise when a long-running service exited (one-shot services such as airflow-init aside)."""
        for name in list(self.processes):
            if name not in self.exited:
                self._alive(name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to a service's whole process tree (its session) and reap it."""
        proc = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
        self.exited[name] = proc.returncode

    def restart(self, name: str, extra_env: Mapping[str, str | None] | None = None) -> None:
        """Stop one service (SIGTERM, then SIGKILL) and start it again, waiting until it is healthy."""
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.start_service(name, extra_env)
        self.wait_healthy(name)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every service: first those nothing depends on, then the rest (postgres, redis, emulator).

        Each tier gets SIGTERM to every process group at once, then SIGKILL after ``timeout``.
        """
        needed = {dep for service in self.services.values() for dep in service.depends_on}
        tiers = [
            [n for n in self.processes if n not in needed],
            [n for n in self.processes if n in needed],
        ]
        for tier in tiers:
            stop_process_groups([self.processes[name] for name in tier], timeout)
        self.processes.clear()
        if self.postgres_root is not None:
            shutil.rmtree(self.postgres_root, ignore_errors=True)
            self.postgres_root = None

    def __enter__(self) -> ComposeStack:
        return self.start()

    # What the file holds --------------------------------------------------------------------------

    def emulator_service(self) -> str:
        """The service running airflow_provider_neptune.emulator."""
        for name, service in self.services.items():
            if any("airflow_provider_neptune.emulator" in part for part in service.command or []):
                return name
        raise ComposeError(f"{self.compose_file}: no service runs airflow_provider_neptune.emulator")

    def emulator(self) -> EmulatorControl:
        """Control of the running emulator: its URL, token (from the env file it wrote) and CA."""
        name = self.emulator_service()
        service = self.services[name]
        command = " ".join(service.command or [])
        public = re.search(r"--public-url\s+(\S+)", command)
        project = re.search(r"--project\s+(\S+)", command)
        if public is None or project is None:
            raise ComposeError(f"{name}: the emulator command has no --public-url or --project")
        url = self.loopback.translate(public.group(1), service)
        data = self.loopback.translate(f"{IMAGE_AIRFLOW_HOME}/emulator-data", service)
        env_file = Path(data) / "emulator.env"
        tokens = re.findall(r"^NEPTUNE_API_TOKEN=(\S+)$", env_file.read_text(), re.MULTILINE)
        if not tokens:
            raise ComposeError(f"{env_file} holds no NEPTUNE_API_TOKEN line")
        return EmulatorControl(url, tokens[-1], Path(data) / "tls" / "cert.pem", project.group(1))

    def connection_extra(self) -> dict[str, Any]:
        """The neptune_default connection's extra as the init service stores it (translated)."""
        for name, service in self.services.items():
            if "NEPTUNE_CONNECTION_EXTRA" in service.environment:
                return dict(json.loads(self.service_env(name)["NEPTUNE_CONNECTION_EXTRA"]))
        raise ComposeError(f"{self.compose_file}: no service sets NEPTUNE_CONNECTION_EXTRA")

    def workers(self) -> dict[str, list[str]]:
        """Celery worker services and the queues each consumes (``--queues``/``-q``)."""
        out = {}
        for name, service in self.services.items():
            command = service.command or []
            if command[:2] == ["celery", "worker"]:
                queues: list[str] = []
                for flag, value in itertools.pairwise(command):
                    if flag in ("--queues", "-q"):
                        queues += [q for q in value.split(",") if q]
                out[name] = queues or ["default"]
        return out

    def report(self) -> str:
        """What the runner started, what it changed, and what of the file it did not exercise."""
        lines = [f"Services of {self.compose_file.name} run as processes on loopback:"]
        for name in start_order(self.services):
            service = self.services[name]
            if name in self.skip:
                lines.append(f"  {name}: skipped")
                continue
            if service.image.startswith("postgres"):
                what = f"Debian PostgreSQL ({postgres_bin().parent.name}) in a throwaway data directory"
            else:
                argv = self.service_argv(name)
                script = len(argv) == 3 and argv[1] == "-c" and "\n" in argv[2]
                what = f"{argv[0]} -c <the file's script, translated>" if script else shlex.join(argv)
            ports = ", ".join(f"{c}->{p}" for c, p in self.loopback.ports[name].items())
            lines.append(f"  {name}: {what} (ports {ports})")
        lines += [
            "Changed: host names -> 127.0.0.1 (localhost for https), ports -> free loopback ports, volume "
            "targets -> folders under the stack home, 0.0.0.0 -> 127.0.0.1; each service gets AIRFLOW_HOME, "
            "HOSTNAME=<service> (Airflow's hostname_callable reads it; Celery workers get --celery-hostname "
            f"celery@<service>), and {', '.join(f'{k}={v}' for k, v in RESOURCE_SETTINGS.items())}.",
        ]
        if self.overrides:
            lines.append(f"Overrides (as an override file would): {json.dumps(self.overrides)}")
        unexercised = ["image build (Dockerfile)", "the images' users (user: 50000:0)"]
        unexercised += ["read-only volume flags", "restart policies", "published host ports"]
        unexercised.append("healthcheck intervals (checks run until they pass)")
        lines.append(
            "Not exercised (checked statically by test_docker_compose.py): " + ", ".join(unexercised)
        )
        return "\n".join(lines)


def postgres_bin() -> Path:
    """Folder of Debian's PostgreSQL server binaries (not on PATH): the newest /usr/lib/postgresql/<v>/bin."""
    root = Path("/usr/lib/postgresql")
    candidates = sorted(
        (p for p in root.glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise ComposeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install Debian's "
            "`postgresql` package (make system-deps does)"
        )
    return candidates[-1]


def postgres_run_as() -> list[str]:
    """Prefix that runs the server as the postgres user when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ComposeError("running as root needs runuser (util-linux) to start PostgreSQL as user postgres")
    return [runuser, "-u", POSTGRES_OS_USER, "--"]


def require_binary(name: str, package: str) -> str:
    """Path of a system binary, or a ComposeError naming the package that provides it."""
    path = shutil.which(name)
    if path is None:
        raise ComposeError(f"{name} is not installed: install the {package} (make system-deps does)")
    return path


@contextlib.contextmanager
def compose_stack(home: Path, **kwargs: Any) -> Iterator[ComposeStack]:
    """Start a ComposeStack in ``home`` and stop it on exit, whatever happens."""
    stack = ComposeStack(home=home, **kwargs)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.e2e.compose_stack [--home DIR]``: start the stack, print its report, wait."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Run docker-compose.yaml's services as processes on loopback."
    )
    parser.add_argument("--home", type=Path, default=None, help="throwaway folder (default: a new temp dir)")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="apn-compose-"))
    with compose_stack(home) as stack:
        print(stack.report(), flush=True)
        print(f"\nAirflow UI and REST API: {stack.api_url}; Ctrl-C stops every service.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                stack.check_alive()
                time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
