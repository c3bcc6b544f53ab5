"""A project's runs listed page by page and edited by id through the client's backend, without ``init_run``.

Opening a run costs about 15 requests (look-ups, attributes, ping, token); a project-wide clean-up needs
only each run's fields (one search page per 100 runs) and one ``executeOperations`` per changed run. Every
request goes through the hook's transport, so the shared budget, the retry policy and the counters apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

FieldEdit = tuple[str, "str | None"]
"""One edit of a run's field: ``(path, text)`` assigns a string field, ``(path, None)`` deletes the field."""


class RunEditor:
    """One client backend for the hook's server, token and project: table pages and edits by run id.

    Built once per clean-up: its start-up (client config, token exchange, API specs) is paid once, not
    per run. Errors are raised as the hook's provider errors (never with the token).
    """

    def __init__(self, hook: NeptuneHook) -> None:
        from neptune.internal.backends.hosted_neptune_backend import HostedNeptuneBackend
        from neptune.internal.credentials import Credentials

        self._hook = hook
        settings = hook.settings
        if not settings.api_address or not settings.project:
            raise ValueError(
                f"connection {hook.neptune_conn_id!r} needs a server (an API token) and a project "
                "(workspace/project) to list and edit runs"
            )
        _ = hook.policy  # registers the server with the shared transport before the first request
        with hook._translate_errors("Connecting to the Neptune server"):
            self._backend = HostedNeptuneBackend(Credentials.from_token(settings.api_token))
        self._project_id: str | None = None

    @property
    def project_id(self) -> str:
        """The project's internal id (one ``getProject`` request, then cached)."""
        if self._project_id is None:
            from neptune.internal.id_formats import QualifiedName

            project = str(self._hook.settings.project)
            with self._hook._translate_errors(f"Looking up project {project!r}"):
                self._project_id = str(self._backend.get_project(QualifiedName(project)).id)
        return self._project_id

    def runs(
        self, query: str | None, *, sort_by: str = "sys/creation_time", progress_bar: Any = None
    ) -> Iterator[Any]:
        """The project's runs (not trashed) matching NQL ``query``, oldest first, fetched page by page.

        Yields the client's ``LeaderboardEntry`` objects (``id``: the run's internal id, ``attributes``:
        every field with its value); a page is requested only when the previous one is consumed, so
        memory holds one page whatever the project's size (``fetch_runs_table`` reads every page first).
        """
        from neptune.internal.container_type import ContainerType
        from neptune.metadata_containers.utils import build_raw_query, prepare_nql_query

        nql = build_raw_query(query, trashed=False) if query else prepare_nql_query([], [], [], [], False)
        project_id = self.project_id
        with self._hook._translate_errors("Listing the project's runs"):
            entries = self._backend.search_leaderboard_entries(
                project_id=project_id,
                types=[ContainerType.RUN],
                query=nql,
                sort_by=sort_by,
                ascending=True,
                progress_bar=progress_bar,
            )
            yield from entries

    def edit(self, run_internal_id: str, edits: Sequence[FieldEdit]) -> list[str]:
        """Apply ``edits`` to one run in one ``executeOperations`` request, in exactly the given order.

        The client's ``execute_operations`` regroups a batch by path (sorted), which would lose an order
        that matters to a server applying a batch one operation after the other; this sends the list as
        given. Returns the errors the server reported for single operations (empty when all applied).
        """
        from neptune.internal.container_type import ContainerType
        from neptune.internal.operation import AssignString, DeleteAttribute, Operation

        operations: list[Operation] = [
            DeleteAttribute(path.split("/")) if text is None else AssignString(path.split("/"), text)
            for path, text in edits
        ]
        if not operations:
            return []
        from bravado.exception import HTTPError
        from neptune.common.exceptions import ClientHttpError
        from neptune.exceptions import ContainerUUIDNotFound

        from airflow_provider_neptune.exceptions import NeptuneProviderError, NeptuneRunNotFoundError

        what = f"Editing run {run_internal_id}"
        try:
            with self._hook._translate_errors(what):
                errors = self._backend._execute_operations(run_internal_id, ContainerType.RUN, operations)
        except ContainerUUIDNotFound as exc:
            raise NeptuneRunNotFoundError(f"run {run_internal_id} no longer exists") from exc
        except ClientHttpError as exc:  # an answer no retry can change (retryable ones were retried)
            raise NeptuneProviderError(
                f"{what}: the server refused the request (HTTP {exc.status}: {str(exc.response)[:300]})"
            ) from exc
        except HTTPError as exc:
            raise NeptuneProviderError(
                f"{what}: the server refused the request (HTTP {exc.status_code}: {str(exc)[:300]})"
            ) from exc
        return [str(error) for error in errors]

    def close(self) -> None:
        """Release the backend's HTTP session."""
        self._backend.close()
