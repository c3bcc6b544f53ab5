"""NeptuneSyncOperator: upload offline runs and unsent async queues left on disk (``neptune sync``).

The work is done by :mod:`airflow_provider_neptune.core.sync` (the client's own sync machinery, run
in-process so every request passes the hook's budget, retries and counters); this module holds the
Airflow class: arguments, the lock on the data directory, the report and the failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.exceptions import NeptuneSyncError
from airflow_provider_neptune.operators.base import NeptuneBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["LOCK_NAME", "NeptuneSyncError", "NeptuneSyncOperator"]

LOCK_NAME = "airflow-provider-neptune-sync.lock"
"""File, in the data directory, that keeps two syncs of the same folder from sending the same data."""

#: Helpers that lived here before the worker-side package; still importable from this module.
_MOVED_TO_CORE = frozenset(
    {
        "DATA_DIRECTORY_ENV",
        "DEFAULT_DATA_DIRECTORY",
        "RecordingBackend",
        "owner_pid",
        "process_alive",
        "resolve_data_directory",
    }
)


def __getattr__(name: str) -> Any:
    """Resolve the helpers now in :mod:`airflow_provider_neptune.core.sync` on first access."""
    if name in _MOVED_TO_CORE:
        import importlib

        return getattr(importlib.import_module("airflow_provider_neptune.core.sync"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NeptuneSyncOperator(NeptuneBaseOperator):
    """Upload the offline runs and unsent async queues under a data directory, then report.

    Offline runs become new runs in the connection's project (the client keeps no custom run id
    offline). An async queue whose writing process still runs on this host is left alone (it is
    still sending). A file lock on the data directory keeps two syncs from sending the same data.

    :param data_directory: the client's data folder (``NEPTUNE_DATA_DIRECTORY`` / ``.neptune``) or a
        folder containing ``.neptune`` (templated); default ``NEPTUNE_DATA_DIRECTORY`` else ``./.neptune``.
    :param offline_only: sync only offline runs.
    :param fail_on_errors: fail the task when the server rejected operations (after syncing the rest).
    :param lock_timeout: seconds to wait for another sync of the same folder to finish.
    :param project: ``workspace/project`` that offline runs go to (templated).
    :param neptune_conn_id: see :class:`~airflow_provider_neptune.operators.base.NeptuneBaseOperator`.
        ``mode`` is not used: syncing always sends to the server (async), whatever mode the
        connection's tasks log in (often offline), so a DAG-wide ``default_args`` mode does no harm.
    :returns: (XCom) ``synced`` runs (local id, kind, sys/id, operations), ``operations_sent``,
        ``errors``, ``requests`` (requests, 429s, retries spent) and what is ``left`` (offline,
        unsent async, in use, run not found).
    """

    template_fields: Sequence[str] = ("data_directory", "project")
    ui_color = "#d6f5c8"

    def __init__(
        self,
        *,
        data_directory: str | None = None,
        offline_only: bool = False,
        fail_on_errors: bool = True,
        lock_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_directory = data_directory
        self.offline_only = offline_only
        self.fail_on_errors = fail_on_errors
        self.lock_timeout = lock_timeout

    def _hook_mode(self) -> str | None:
        """Always async: a sync sends to the server whatever the connection's (or ``mode``'s) mode."""
        return "async"

    def execute(self, context: Context) -> dict[str, Any]:
        """Sync everything that can be synced, then report what was sent and what is left."""
        from filelock import FileLock

        from airflow_provider_neptune.core.rendered_values import as_bool
        from airflow_provider_neptune.core.sync import (
            RecordingBackend,
            empty_left,
            make_backend,
            resolve_data_directory,
            sync_containers,
            sync_report,
        )

        base = resolve_data_directory(self.data_directory)
        offline_only = as_bool("offline_only", self.offline_only)
        if not base.is_dir():
            self.log.info("No Neptune data directory at %s: nothing to sync", base)
            return sync_report(base, [], RecordingBackend(None), empty_left())
        with self.closing_hook() as hook:
            requests_before = self.request_counters()
            with FileLock(str(base / LOCK_NAME), timeout=self.lock_timeout):
                backend = make_backend(hook)
                try:
                    synced, left = sync_containers(hook, backend, base, offline_only)
                finally:
                    backend.close()
            report = sync_report(base, synced, backend, left)
            report["requests"] = self.requests_since(requests_before)
        self.log.info(
            "Synced %d run(s) from %s: %d operations sent, %d rejected; left: %s",
            len(synced),
            base,
            report["operations_sent"],
            len(report["errors"]),
            {k: len(v) for k, v in left.items()},
        )
        if report["errors"] and as_bool("fail_on_errors", self.fail_on_errors):
            shown = "; ".join(f"{e['container']}: {e['error']}" for e in report["errors"][:10])
            raise NeptuneSyncError(
                f"the server rejected {len(report['errors'])} synced operation(s); their data is lost "
                f"(a retry will not resend it): {shown}",
                report,
            )
        return report
