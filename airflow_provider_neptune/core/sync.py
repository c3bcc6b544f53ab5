"""Worker-side ``neptune sync``: find offline runs and unsent async queues on disk and send them.

Runs the client's own sync machinery (``neptune.cli`` containers: the same code as ``neptune sync``)
in-process rather than as a subprocess, because then every request it sends passes the hook's
transport: the shared request budget, the retry policy and the counters apply, and errors that the
CLI would only log are collected and reported. The client acknowledges each batch on disk and
removes a run's folder once it is fully sent, so a second sync sends nothing again.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.core.rendered_values import as_optional_str

if TYPE_CHECKING:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

log = logging.getLogger(__name__)

DATA_DIRECTORY_ENV = "NEPTUNE_DATA_DIRECTORY"
DEFAULT_DATA_DIRECTORY = ".neptune"


def resolve_data_directory(data_directory: str | None) -> Path:
    """The folder holding ``async/`` and ``offline/``.

    Accepts that folder itself, or a folder containing ``.neptune``; default ``NEPTUNE_DATA_DIRECTORY``
    else ``./.neptune`` (as the client writes).
    """
    raw = as_optional_str(data_directory) or os.environ.get(DATA_DIRECTORY_ENV) or DEFAULT_DATA_DIRECTORY
    path = Path(raw).expanduser().resolve()
    if (
        not any((path / sub).is_dir() for sub in ("async", "offline"))
        and (path / DEFAULT_DATA_DIRECTORY).is_dir()
    ):
        return path / DEFAULT_DATA_DIRECTORY
    return path


def owner_pid(folder_name: str) -> int | None:
    """The process id the client put in a queue folder's name (``run__<uuid>__<pid>__<random>``)."""
    parts = folder_name.split("__")
    if len(parts) in (4, 5) and parts[2].isdigit():
        return int(parts[2])
    return None


def process_alive(pid: int) -> bool:
    """True if a process with this id runs on this host (ours counts: its handles may be open)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class RecordingBackend:
    """Wraps the client's backend to count what each run's sync sent and keep the errors.

    ``neptune sync`` discards the per-operation errors the server returns; here they are reported.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.operations: Counter[str] = Counter()
        self.errors: list[tuple[str, str]] = []
        self.created: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def execute_operations(self, *args: Any, **kwargs: Any) -> Any:
        """Forward, then record how many operations went through and which were rejected."""
        processed, errors = self._backend.execute_operations(*args, **kwargs)
        container_id = str(kwargs.get("container_id", args[0] if args else ""))
        self.operations[container_id] += processed
        self.errors.extend((container_id, str(error)) for error in errors)
        return processed, errors

    def create_run(self, *args: Any, **kwargs: Any) -> Any:
        """Forward, remembering the run the server created for an offline run."""
        experiment = self._backend.create_run(*args, **kwargs)
        self.created.append(experiment)
        return experiment


def make_backend(hook: NeptuneHook) -> RecordingBackend:
    """The client's backend on the hook's server, wrapped to record what each sync sends."""
    from neptune.internal.backends.hosted_neptune_backend import HostedNeptuneBackend
    from neptune.internal.credentials import Credentials

    settings = hook.settings
    hook.register_transport()  # registers the server with the shared transport (budget, retries, counters)
    return RecordingBackend(HostedNeptuneBackend(Credentials.from_token(settings.api_token)))


def sync_containers(
    hook: NeptuneHook, recorder: RecordingBackend, base: Path, offline_only: bool
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Sync what can be synced under ``base``: returns the synced runs and what is left (by reason)."""
    from neptune.cli.collect import collect_containers
    from neptune.cli.utils import get_project
    from neptune.internal.id_formats import QualifiedName

    backend: Any = recorder  # duck-types the client's NeptuneBackend
    containers = collect_containers(path=base, backend=backend)
    synced: list[dict[str, Any]] = []
    left = empty_left()
    if not offline_only:
        for container in containers.unsynced_containers:
            pids = {owner_pid(d.path.name) for d in container.execution_dirs if not d.synced}
            live = sorted(p for p in pids if p is not None and process_alive(p))
            if live:
                left["in_use"].append(f"{container.container_id} (process {', '.join(map(str, live))})")
                continue
            experiment = container.experiment
            before = backend.operations[str(container.container_id)]
            container.sync(base_path=base, backend=backend, project=None)
            synced.append(
                {
                    "kind": "async",
                    "local_id": str(container.container_id),
                    "run_id": getattr(experiment, "sys_id", None),
                    "operations": backend.operations[str(container.container_id)] - before,
                }
            )
    if containers.offline_containers:
        project_name = hook.settings.project
        if not project_name:
            raise ValueError("offline runs need a project: set it on the operator or the connection")
        project = get_project(project_name_flag=QualifiedName(project_name), backend=backend)
        if project is None:
            raise ValueError(f"project {project_name!r} not found: offline runs cannot be synced to it")
        for offline in containers.offline_containers:
            local_id = str(offline.container_id)
            created_before = len(backend.created)
            offline.sync(base_path=base, backend=backend, project=project)
            if len(backend.created) == created_before:
                continue  # the client could not register the run; it stays on disk (reported below)
            experiment = backend.created[-1]
            synced.append(
                {
                    "kind": "offline",
                    "local_id": local_id,
                    "run_id": experiment.sys_id,
                    "operations": backend.operations[str(experiment.id)],
                }
            )
    after = collect_containers(path=base, backend=backend)
    left["offline"] = [str(c.container_id) for c in after.offline_containers]
    left["async_unsent"] = [
        str(c.container_id)
        for c in after.unsynced_containers
        if not any(str(c.container_id) in item for item in left["in_use"])
    ]
    left["not_found"] = [str(c.container_id) for c in after.not_found_containers]
    return synced, left


def empty_left() -> dict[str, list[str]]:
    """What a sync left on disk, by reason: nothing yet."""
    return {"offline": [], "async_unsent": [], "in_use": [], "not_found": []}


def sync_report(
    base: Path, synced: list[dict[str, Any]], backend: RecordingBackend, left: dict[str, list[str]]
) -> dict[str, Any]:
    """The operator's result: the data directory, the synced runs, operations sent, errors and leftovers."""
    return {
        "data_directory": str(base),
        "synced": synced,
        "operations_sent": sum(int(item["operations"]) for item in synced),
        "errors": [{"container": c, "error": e} for c, e in backend.errors],
        "left": left,
    }
