"""A real Airflow 3 deployment on loopback for end-to-end tests and the demo.

Starts the scheduler (LocalExecutor), dag-processor, triggerer and api-server as separate processes
in a throwaway AIRFLOW_HOME with SQLite, talks to them through the REST API, and stops them by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The log servers of scheduler and triggerer would bind every interface; the api-server reads the
# task logs from the shared local folder instead, so they are not started.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer", "--skip-serve-logs"),
    "api-server": ("api-server",),
}
_SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
_LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
FAILED_TI_STATES = frozenset({"failed", "upstream_failed"})


class StackError(RuntimeError):
    """The Airflow stack did not start, stopped unexpectedly, or a DAG run did not finish in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; raise StackError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except (OSError, ValueError, StackError) as exc:
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def parse_time(value: str | None) -> datetime | None:
    """Parse an ISO-8601 timestamp from the REST API (None stays None)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """Largest number of [start, end) intervals open at the same instant (a sweep over the endpoints)."""
    events = [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    # Ends sort before starts at the same instant: touching intervals do not overlap.
    events.sort(key=lambda item: (item[0], item[1]))
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def stop_process_groups(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every process group at once, SIGKILL those left after ``timeout``.

    Each process leads its own group; a final SIGKILL to the group also ends children that outlive
    their leader (task processes forked by a scheduler or worker).
    """
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class AirflowStack:
    """Real Airflow processes sharing one SQLite home; use as a context manager or call start()/stop()."""

    home: Path
    dags_folder: Path = REPO / "dags"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    parallelism: int = 4
    startup_timeout: float = 180.0
    api_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """Base URL of the api-server (REST API under /api/v2, UI endpoints under /ui)."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_dir(self) -> Path:
        """Folder holding one log file per Airflow component."""
        return self.home / "component-logs"

    def env(self) -> dict[str, str]:
        """Environment of every Airflow process: ours plus the caller's, minus its AIRFLOW*/NEPTUNE_*."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "NEPTUNE_"))}
        conf = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    {
                        "name": "dags-folder",
                        "classpath": _LOCAL_BUNDLE,
                        "kwargs": {"path": str(self.dags_folder)},
                    }
                ]
            ),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": _SIMPLE_AUTH,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": self._secret("api"),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            # Manual triggers only: an unpaused @daily DAG must not start a scheduled run of its own.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # Fast loops: the machine is small and the tests wait on state changes.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "5",
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "PYTHONUNBUFFERED": "1",
        }
        return {**base, **conf, **self.extra_env}

    def _secret(self, name: str) -> str:
        """A per-home secret, written once, so every process (and a restart) agrees on it."""
        path = self.home / f".secret-{name}"
        if not path.exists():
            if name == "fernet":
                from cryptography.fernet import Fernet

                value = Fernet.generate_key().decode()
            else:
                value = secrets.token_urlsafe(32)
            path.write_text(value)
        return path.read_text()

    def airflow(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command against this home; raise StackError with its output on failure."""
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(
                f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def start(self) -> AirflowStack:
        """Migrate the DB, start every component and wait until the api-server reports all healthy."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.airflow("db", "migrate")
        try:
            for component, command in COMPONENTS.items():
                log = (self.log_dir / f"{component}.log").open("ab")
                self.processes[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *command],
                    env=self.env(),
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() reaches its workers too
                )
                log.close()
            wait_until(
                self._healthy, timeout=self.startup_timeout, interval=1.0, what="a healthy Airflow stack"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        self.check_alive()
        health = self.api("GET", "/api/v2/monitor/health")
        components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(name) or {}).get("status") == "healthy" for name in components)

    def check_alive(self) -> None:
        """Raise StackError with the component's log tail when one of the processes has exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}:\n{self.component_log(name)[-4000:]}")

    def component_log(self, name: str) -> str:
        """The combined stdout/stderr of one component so far."""
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every component: SIGTERM to each process group by PID, SIGKILL after ``timeout``."""
        stop_process_groups(list(self.processes.values()), timeout)
        self.processes.clear()

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # REST API -----------------------------------------------------------------------------------

    def api(
        self, method: str, path: str, body: Any = None, *, raw: bool = False, timeout: float = 30.0
    ) -> Any:
        """Call the api-server (all-admins auth: no token needed) and decode the JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "text/plain" if raw else "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise StackError(f"{method} {path} -> HTTP {exc.code}: {detail}") from exc
        if raw:
            return payload
        return json.loads(payload) if payload else None

    def wait_for_dags(self, *dag_ids: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed and serialized every DAG; fail fast on import errors."""

        def parsed() -> bool:
            self.check_alive()
            errors = self.api("GET", "/api/v2/importErrors")["import_errors"]
            if errors:
                text = "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors)
                raise AssertionError(f"DAG import errors:\n{text}")
            known = {d["dag_id"] for d in self.api("GET", "/api/v2/dags?limit=100")["dags"]}
            return set(dag_ids) <= known

        wait_until(parsed, timeout=timeout, interval=1.0, what=f"DAGs {', '.join(dag_ids)} to be parsed")

    def set_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create or resize a pool through the REST API."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        try:
            self.api("POST", "/api/v2/pools", body)
        except StackError as exc:
            if "HTTP 409" not in str(exc):
                raise
            self.api("PATCH", f"/api/v2/pools/{name}", body)

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a DAG run now and return its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        return str(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The DAG run as the REST API describes it."""
        return dict(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait for a DAG run to reach success or failed; return the state (StackError on timeout)."""

        def finished() -> str | None:
            self.check_alive()
            state = str(self.dag_run(dag_id, run_id)["state"])
            return state if state in TERMINAL_RUN_STATES else None

        return str(
            wait_until(finished, timeout=timeout, interval=1.0, what=f"{dag_id} run {run_id} to finish")
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance (mapped ones included) of a DAG run."""
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances?limit=1000")
        return list(answer["task_instances"])

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """The try history of one task instance."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/{map_index}/tries"
        return list(self.api("GET", path)["task_instances"])

    def _log_path(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int) -> Path:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        return folder / f"attempt={try_number}.log"

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The log of one try of a task instance, read from the log files the workers wrote."""
        path = self._log_path(dag_id, run_id, task_id, try_number, map_index)
        return path.read_text(errors="replace") if path.exists() else f"(no log file at {path})"

    def trigger_logs(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
    ) -> dict[str, str]:
        """Logs the triggerer wrote for a deferred try, by file name (``<attempt>.log.trigger.<job>.log``)."""
        path = self._log_path(dag_id, run_id, task_id, try_number, map_index)
        return {
            p.name: p.read_text(errors="replace")
            for p in sorted(path.parent.glob(f"{path.name}.trigger.*.log"))
        }

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """A readable account of the failed task instances of a run, with their logs."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] in FAILED_TI_STATES:
                header = f"--- {ti['task_id']}[{ti['map_index']}] {ti['state']} (try {ti['try_number']})"
                log = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"])
                parts.append(f"{header}\n{log_text(log)[-6000:]}")
        states = {
            f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in self.task_instances(dag_id, run_id)
        }
        return f"task states: {json.dumps(states, indent=1)}\n" + "\n".join(parts)

    def run_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None, *, timeout: float = 300.0) -> str:
        """Unpause, trigger and wait; raise StackError with the failing tasks' logs unless it succeeded."""
        self.unpause(dag_id)
        run_id = self.trigger(dag_id, conf)
        state = self.wait_for_run(dag_id, run_id, timeout)
        if state != "success":
            raise StackError(f"{dag_id} run {run_id} ended {state}\n{self.failure_report(dag_id, run_id)}")
        return run_id


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def log_text(log: str) -> str:
    """Task logs are JSON lines in Airflow 3; render them as 'level event' lines for humans."""
    lines = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(record, dict):
            extra = {k: v for k, v in record.items() if k not in {"timestamp", "level", "event", "logger"}}
            suffix = f" {extra}" if extra else ""
            lines.append(f"{record.get('level', '')} {record.get('event', '')}{suffix}")
        else:
            lines.append(line)
    return "\n".join(lines)


@contextlib.contextmanager
def airflow_stack(home: Path, **kwargs: Any) -> Iterator[AirflowStack]:
    """Start an AirflowStack in ``home`` and stop it on exit, whatever happens."""
    stack = AirflowStack(home=home, **kwargs)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
