"""`NeptuneEmulator`: run the emulator in a subprocess and talk to its control endpoints.

Only the standard library is used here (subprocess, urllib), so importing it costs nothing and
never imports neptune or airflow.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

DEFAULT_PROJECTS = ("airflow/sandbox",)
_UNSET: Any = object()


class EmulatorStartError(RuntimeError):
    """The emulator subprocess did not come up in time (its log tail is in the message)."""


class NeptuneEmulator:
    """Context manager running `python -m airflow_provider_neptune.emulator` on a free port.

    >>> with NeptuneEmulator() as emu:
    ...     os.environ.update(emu.env())   # then neptune.init_run() talks to the emulator
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        projects: Iterable[str] = DEFAULT_PROJECTS,
        rate_limit: float | None = None,
        fault_rate: float = 0.0,
        seed: int | None = None,
        latency_ms: float = 0.0,
        state_timeout: float | None = None,
        multipart_threshold: int | None = None,
        multipart_chunk: int | None = None,
        public_url: str | None = None,
        api_key: str | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        log_level: str = "warning",
        extra_args: Iterable[str] = (),
        max_body_bytes: int | None = None,
        open_control: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.projects: tuple[str, ...] = tuple(projects) or DEFAULT_PROJECTS
        self.rate_limit = rate_limit
        self.fault_rate = fault_rate
        self.seed = seed
        self.latency_ms = latency_ms
        self.state_timeout = state_timeout
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk = multipart_chunk
        self.public_url = public_url
        self.api_key = api_key
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.extra_args = tuple(extra_args)
        self.max_body_bytes = max_body_bytes
        self.open_control = open_control
        self.url = ""
        self.api_token = ""
        self.project = self.projects[0]
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: IO[bytes] | None = None

    # ----- lifecycle ----------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [
            sys.executable,
            "-m",
            "airflow_provider_neptune.emulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        for project in self.projects:
            cmd += ["--project", project]
        if self.rate_limit is not None:
            cmd += ["--rate-limit", str(self.rate_limit)]
        if self.fault_rate:
            cmd += ["--fault-rate", str(self.fault_rate)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.latency_ms:
            cmd += ["--latency-ms", str(self.latency_ms)]
        if self.state_timeout is not None:
            cmd += ["--state-timeout", str(self.state_timeout)]
        if self.multipart_threshold is not None:
            cmd += ["--multipart-threshold", str(self.multipart_threshold)]
        if self.multipart_chunk is not None:
            cmd += ["--multipart-chunk", str(self.multipart_chunk)]
        if self.public_url is not None:
            cmd += ["--public-url", self.public_url]
        if self.api_key is not None:
            cmd += ["--api-key", self.api_key]
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            cmd += ["--ssl-certfile", str(self.ssl_certfile), "--ssl-keyfile", str(self.ssl_keyfile)]
        if self.max_body_bytes is not None:
            cmd += ["--max-body-bytes", str(self.max_body_bytes)]
        if self.open_control:
            cmd.append("--open")
        cmd += ["--log-level", self.log_level, *self.extra_args]
        return cmd

    def start(self) -> NeptuneEmulator:
        """Start the subprocess and wait (bounded) until it prints its token and URL."""
        if self._proc is not None:
            raise RuntimeError("emulator already started")
        fd, log_name = tempfile.mkstemp(prefix="neptune-emulator-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the subprocess's life
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")}
        self._proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=self._log_file, text=True, env=env, bufsize=1
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self._proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, name="neptune-emulator-stdout", daemon=True).start()
        found: dict[str, str] = {}
        deadline = time.monotonic() + self.startup_timeout
        while not {"NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT", "NEPTUNE_EMULATOR_URL"} <= found.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise EmulatorStartError(
                    f"emulator did not start within {self.startup_timeout} s{self._log_tail()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self._proc.wait() if self._proc else None
                self._cleanup()
                raise EmulatorStartError(f"emulator exited with status {code}{self._log_tail()}")
            key, sep, value = line.partition("=")
            if sep:
                found[key] = value
        self.api_token = found["NEPTUNE_API_TOKEN"]
        self.project = found["NEPTUNE_PROJECT"]
        self.url = found["NEPTUNE_EMULATOR_URL"]
        return self

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            tail = self.log_path.read_text(errors="replace")[-2000:]
            return f"; log:\n{tail}" if tail else ""
        return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the server and wait for it (SIGKILL after `timeout`); returns its exit status."""
        proc = self._proc
        if proc is None:
            return None
        code: int | None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(timeout=timeout)
        else:
            code = proc.returncode
        self._cleanup()
        if code == 0 and self.log_path is not None:
            # A clean exit leaves nothing worth reading; failures keep their log for debugging.
            self.log_path.unlink(missing_ok=True)
        return code

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"NeptuneEmulator(url={self.url!r}, project={self.project!r}, {state})"

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The subprocess's pid."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> NeptuneEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- control ------------------------------------------------------------------------------
    def control_headers(self) -> dict[str, str]:
        """Headers that authorise a request to the control endpoints (the API token)."""
        return {"X-Neptune-Api-Token": self.api_token} if self.api_token else {}

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **self.control_headers()}
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        context = None
        if self.ssl_certfile is not None:
            # Our own (typically self-signed) certificate is the only one to trust.
            context = ssl.create_default_context(cafile=str(self.ssl_certfile))
            context.check_hostname = False
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.loads(response.read() or b"null")

    def stats(self) -> dict[str, Any]:
        """GET /_emulator/stats."""
        result: dict[str, Any] = self._request("GET", "/_emulator/stats")
        return result

    def set_faults(
        self,
        rate_limit: float | None = _UNSET,
        fault_rate: float | None = None,
        fail_next: dict[str, Any] | list[dict[str, Any]] | None = None,
        seed: int | None = None,
        clear_fail_next: bool = False,
        latency_ms: float | None = None,
    ) -> dict[str, Any]:
        """POST /_emulator/faults; only the arguments given change (rate_limit=None removes the limit)."""
        body: dict[str, Any] = {}
        if rate_limit is not _UNSET:
            body["rate_limit"] = rate_limit
        if fault_rate is not None:
            body["fault_rate"] = fault_rate
        if fail_next is not None:
            body["fail_next"] = fail_next
        if seed is not None:
            body["seed"] = seed
        if clear_fail_next:
            body["clear_fail_next"] = True
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        result: dict[str, Any] = self._request("POST", "/_emulator/faults", body)
        return result

    def clear_faults(self) -> dict[str, Any]:
        """No rate limit, no faults, no latency, no pending fail_next rules."""
        return self.set_faults(rate_limit=None, fault_rate=0.0, clear_fail_next=True, latency_ms=0.0)

    def reset_stats(self) -> None:
        """POST /_emulator/reset_stats: zero every counter."""
        self._request("POST", "/_emulator/reset_stats", {})

    def add_project(self, project: str) -> str:
        """Create another project (workspace/name) while the server runs."""
        result = self._request("POST", "/_emulator/projects", {"project": project})
        return str(result["project"])

    def env(self) -> dict[str, str]:
        """Environment variables that point a neptune client at this emulator (plain HTTP needs
        OAUTHLIB_INSECURE_TRANSPORT; HTTPS with our self-signed certificate needs
        NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE)."""
        env = {
            "NEPTUNE_API_TOKEN": self.api_token,
            "NEPTUNE_PROJECT": self.project,
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
        }
        if self.ssl_certfile is not None:
            env["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] = "1"
        return env

    def airflow_conn_json(self, **extra: Any) -> str:
        """JSON for AIRFLOW_CONN_NEPTUNE_DEFAULT (token as password, project in extra)."""
        return json.dumps(
            {"conn_type": "neptune", "password": self.api_token, "extra": {"project": self.project, **extra}}
        )

    def run_url(self, short_id: str, project: str | None = None) -> str:
        """The page of a run (what run.get_url() returns)."""
        return f"{self.url}/{project or self.project}/e/{short_id}"

    def wait_until(self, predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
        """Poll predicate(stats) until it returns something truthy; raise TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = predicate(self.stats())
            except (urllib.error.URLError, ConnectionError):
                result = None
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)
