"""Run handles of a Neptune hook: open (pooled), create, find by custom run id, wait for delivery, stop.

Handles come from the process-wide run pool (one per server, token, project, mode and run); every
open registers the transport first, so the client's requests share the budget and retry policy.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.exceptions import (
    NeptuneDeliveryError,
    NeptuneProviderError,
    NeptuneRunNotFoundError,
)
from airflow_provider_neptune.hooks import answers, delivery
from airflow_provider_neptune.hooks.run_pool import POOL, PoolKey
from airflow_provider_neptune.hooks.series import last_steps_on, listed_series
from airflow_provider_neptune.hooks.server import ServerChecks
from airflow_provider_neptune.hooks.server_rules import check_custom_run_id, counter_delta

if TYPE_CHECKING:
    import neptune

#: Background capture the client would otherwise start for every handle: off unless asked for.
RUN_DEFAULTS: dict[str, Any] = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_traceback": False,
    "source_files": [],
    "git_ref": False,
}
_SERVER_MODES = ("async", "sync", "read-only")


@functools.cache
def reopening_run_class() -> type[neptune.Run]:
    """``neptune.Run`` that, reopened by ``with_id`` without a ``name``, leaves the run's name alone.

    The client writes its default name ("Untitled") over the run's unless the server names runs
    itself; finding the name first cost a project handle and a runs-table search per open. Only the
    run's own backend is told, for the duration of the initial writes, that the server names runs.
    """
    import neptune

    class ReopeningRun(neptune.Run):
        def _write_initial_attributes(self) -> None:
            backend = self._backend
            keeps_name = self._with_id is not None and self._name is None
            if not keeps_name or not hasattr(backend, "sys_name_set_by_backend"):
                super()._write_initial_attributes()
                return
            named_by_server = backend.sys_name_set_by_backend
            backend.sys_name_set_by_backend = True  # the client then writes no name
            try:
                super()._write_initial_attributes()
            finally:
                backend.sys_name_set_by_backend = named_by_server

    return ReopeningRun


class RunHandles(ServerChecks):
    """Pooled run handles, run creation and lookup, delivery checks and stopping."""

    def _init_run(self, mode: str, **kwargs: Any) -> neptune.Run:
        """Open a run with this hook's settings (quiet defaults unless read-only), errors translated.

        A run reopened by ``with_id`` without a ``name`` keeps its name (see :func:`reopening_run_class`).
        """
        settings = self.settings
        if mode in _SERVER_MODES:
            self.register_transport()
        options = {**RUN_DEFAULTS, **kwargs} if mode != "read-only" else dict(kwargs)
        if "with_id" in kwargs and "source_files" not in kwargs:
            # Reopening: no source_files makes the client leave the run's source_code/ alone (with
            # RUN_DEFAULTS' [] it would write this process's entrypoint over the run's, one request).
            options.pop("source_files", None)
        with self._translate_errors("Opening a Neptune run"), answers.keep_answers("/attributes") as kept:
            run = reopening_run_class()(
                project=settings.project,
                api_token=settings.api_token,
                mode=mode,  # type: ignore[arg-type]
                **options,
            )
        opened = time.monotonic()
        delivery.tracker_of(run).opened_at = opened
        for _, body in kept:
            try:
                answer = json.loads(body)
            except ValueError:
                continue
            listed = (
                listed_series(answer) if isinstance(answer, dict) and answer.get("id") == run._id else None
            )
            if listed is not None:
                delivery.tracker_of(run).opening_series = (opened, listed)
        return run

    @staticmethod
    def _sys_id(run: Any) -> str:
        """A handle's ``sys/id`` (known to the client, else read from the server)."""
        sys_id = getattr(run, "_sys_id", None)
        return str(sys_id) if sys_id else str(run["sys/id"].fetch())

    @contextmanager
    def get_run(
        self,
        run_id: str | None = None,
        custom_run_id: str | None = None,
        mode: str | None = None,
        **init_kwargs: Any,
    ) -> Iterator[neptune.Run]:
        """A pooled run handle: by ``sys/id``, by custom run id (created when new), or a new run.

        The same run opened twice in one process yields the same handle; it stays open after the
        block (stopped when evicted, by :meth:`stop_run`, :meth:`close` or at exit).
        """
        if run_id and custom_run_id:
            raise ValueError("pass run_id or custom_run_id, not both")
        check_custom_run_id(custom_run_id)
        mode = (mode or self.settings.mode).lower()
        scope = self._scope()
        if mode == "read-only" and custom_run_id and not run_id:
            run_id = self._find_by_custom_id(custom_run_id)
            custom_run_id = None

        key: PoolKey | None = None
        if run_id:
            key = (*scope, mode, "id", run_id)
        elif custom_run_id:
            key = (*scope, mode, "custom", custom_run_id)

        def opener() -> Any:
            kwargs = dict(init_kwargs)
            target = run_id
            if custom_run_id and mode in ("async", "sync"):
                # Reopen an existing run by its sys/id: reopening by custom id makes the client
                # overwrite sys/description (and sys/name) with defaults.
                target = self._existing_run(custom_run_id)
            if target:
                kwargs["with_id"] = target
            elif custom_run_id:
                kwargs["custom_run_id"] = custom_run_id
            run = self._init_run(mode, **kwargs)
            delivery.tracker_of(run)
            return run

        def aliases(run: Any) -> list[PoolKey]:
            found: list[PoolKey] = [(*scope, mode, "id", self._sys_id(run))]
            if custom_run_id:
                found.append((*scope, mode, "custom", custom_run_id))
            return found

        run = POOL.acquire(key, opener, aliases)
        try:
            yield run
        finally:
            POOL.release(run)

    def _existing_run(self, custom_run_id: str) -> str | None:
        """The sys/id of the run with this custom run id; None when there is none (or the search failed)."""
        from neptune.exceptions import NeptuneException

        from airflow_provider_neptune.hooks.nql_text import condition

        try:
            with self.get_project() as project:
                table = project.fetch_runs_table(
                    query=condition("sys/custom_run_id", "string", "=", custom_run_id, "custom_run_id"),
                    columns=["sys/id", "sys/custom_run_id"],
                    sort_by="sys/id",  # the client's default sort fails on a project without runs
                    progress_bar=False,
                ).to_pandas()
        except (NeptuneException, NeptuneProviderError) as exc:
            self.log.warning("Could not look up the existing run (%s); opening it directly", exc)
            return None
        if not table.empty and "sys/custom_run_id" in table:
            table = table[table["sys/custom_run_id"] == custom_run_id]
        return None if table.empty else str(table.iloc[0]["sys/id"])

    def _find_by_custom_id(self, custom_run_id: str) -> str:
        """The sys/id of the run with this custom run id (for read-only access)."""
        for mode in ("async", "sync"):
            pooled = POOL.get((*self._scope(), mode, "custom", custom_run_id))
            if pooled is not None:
                return self._sys_id(pooled)
        found = self._existing_run(custom_run_id)
        if found is None:
            raise NeptuneRunNotFoundError(
                f"no run with custom run id {custom_run_id!r} in project {self.settings.project!r}"
            )
        return found

    def create_run(
        self,
        custom_run_id: str | None = None,
        name: str | None = None,
        tags: Iterable[str] = (),
        description: str | None = None,
        mode: str | None = None,
        **init_kwargs: Any,
    ) -> str:
        """Create (or, for a known custom run id, reopen) a run; returns its ``sys/id``.

        Idempotent with a custom run id (at most 36 characters, else ValueError). Waits until the
        initial fields reached the server.
        """
        check_custom_run_id(custom_run_id)
        kwargs = dict(init_kwargs)
        if name is not None:
            kwargs["name"] = name
        if description is not None:
            kwargs["description"] = description
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        if tag_list:
            kwargs["tags"] = tag_list
        with self.get_run(custom_run_id=custom_run_id, mode=mode, **kwargs) as run:
            sys_id = self._sys_id(run)
            self.wait_for_delivery(run, timeout=self._default_delivery_timeout(0))
        self.log.info("Neptune run %s ready (custom run id %r)", sys_id, custom_run_id)
        return sys_id

    @contextmanager
    def get_project(self, mode: str = "read-only") -> Iterator[neptune.Project]:
        """A project handle (e.g. for ``fetch_runs_table``), stopped after the block."""
        import neptune

        settings = self.settings
        self.register_transport()
        with self._translate_errors("Opening the Neptune project"):
            project = neptune.init_project(
                project=settings.project,
                api_token=settings.api_token,
                mode=mode,  # type: ignore[arg-type]
            )
        try:
            yield project
        finally:
            project.stop()

    def _default_delivery_timeout(self, points: int) -> float:
        """How long delivery of ``points`` may take at this connection's budget: 60 s plus 2 s per 100."""
        rate = self.settings.rate_limit_per_second or 50.0
        return 60.0 + 2.0 * math.ceil(points / 100) / max(rate, 1.0)

    def _last_steps_on(
        self, run: Any, paths: Iterable[str], listed: dict[str, float | None] | None = None
    ) -> dict[str, float | None]:
        """:func:`~.series.last_steps_on` with client errors translated."""
        with self._translate_errors("Reading series from Neptune"):
            return last_steps_on(run, paths, listed)

    def _verify(self, run: Any, **kwargs: Any) -> dict[str, float | None]:
        """verify_delivery, dropping a handle whose async thread died so it is never reused."""
        try:
            return delivery.verify_delivery(run, **kwargs)
        except NeptuneDeliveryError:
            consumer = delivery.consumer_of(run)
            if consumer is not None and not delivery.consumer_alive(consumer) and POOL.remove(run):
                # Its queue stays on disk (named in the error); a later call opens a fresh handle.
                try:
                    run.stop(seconds=1)
                except Exception:
                    self.log.debug("stopping a broken run handle failed", exc_info=True)
            raise

    def wait_for_delivery(
        self, run: Any, *, timeout: float, expected_last_steps: Mapping[str, float] | None = None
    ) -> None:
        """Wait (bounded) until a handle's queue is drained and check nothing was lost.

        Raises NeptuneDeliveryError naming what was lost and where the unsent queue lies on disk.
        Offline handles keep their queue on disk by design; it is only reported.
        """
        mode = getattr(getattr(run, "_mode", None), "value", None)
        run_id = self._sys_id(run) if mode != "offline" else str(getattr(run, "_sys_id", "offline run"))
        if mode == "offline":
            self.log.info(
                "Offline run: data stays on disk at %s until `neptune sync`", delivery.queue_path(run)
            )
            return
        if mode in ("read-only", "debug"):
            return
        self._verify(
            run,
            run_id=run_id,
            timeout=timeout,
            expected_last_steps=expected_last_steps,
            read_last_steps=lambda paths: self._last_steps_on(run, paths),
        )

    def stop_run(self, run_id: str, *, timeout: float = 60.0) -> None:
        """Stop this process's handles of a run within ``timeout``; raises if data would be left unsent.

        At most 70% of the time goes to waiting for delivery, the rest to the client's ``stop()``, so its
        background thread gets time to finish a request in flight before the client closes its files.
        """
        deadline = time.monotonic() + timeout
        before = self.counters
        scope = self._scope()
        stopped = 0
        problems: list[NeptuneDeliveryError] = []
        for mode in ("async", "sync", "offline", "read-only", "debug"):
            run = POOL.get((*scope, mode, "id", run_id))
            if run is None or not POOL.remove(run):
                continue
            stopped += 1
            if mode in ("async", "sync"):
                try:
                    self.wait_for_delivery(run, timeout=max(0.0, 0.7 * (deadline - time.monotonic())))
                except NeptuneDeliveryError as exc:
                    problems.append(exc)
            path = delivery.queue_path(run)
            delivery.defer_close(run)
            run.stop(seconds=max(1.0, deadline - time.monotonic()))
            left = delivery.pending_operations(run)
            if left and mode != "offline" and not problems:
                problems.append(
                    NeptuneDeliveryError(
                        f"Neptune run {run_id} stopped with {left} operation(s) unsent. Unsent data lies on "
                        f"disk at {path}{delivery.sync_hint(path)}",
                        run_id=run_id,
                        queue_path=path,
                    )
                )
        if not stopped:
            self.log.info("Neptune run %s is not open in this process; nothing to stop", run_id)
        after = self.counters
        self._report(f"stop_run {run_id}", counter_delta(before, after))
        if problems:
            raise problems[0]
