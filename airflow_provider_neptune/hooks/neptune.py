"""NeptuneHook: the one way the provider's operators and sensors reach Neptune.

It resolves the connection's settings once, hands out pooled run handles, sends every request of the
``neptune`` client through one shared request budget and one retry policy (see :mod:`.transport`),
and verifies that logged metrics reached the server (see :mod:`.delivery`). ``neptune`` itself is
imported only inside methods, so importing this module (and the operators) stays cheap.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_neptune.exceptions import (
    NeptuneAuthError,
    NeptuneConnectionError,
    NeptuneDeliveryError,
    NeptuneProjectNotFoundError,
    NeptuneProviderError,
    NeptuneRunNotFoundError,
    NeptuneSettingsError,
    NeptuneStepConflictError,
)
from airflow_provider_neptune.hooks import delivery, transport
from airflow_provider_neptune.hooks.limiter import get_budget
from airflow_provider_neptune.hooks.retry import RetryPolicy
from airflow_provider_neptune.hooks.run_pool import POOL, PoolKey
from airflow_provider_neptune.hooks.server_rules import (
    COUNTER_KEYS,
    bound_problem,
    check_custom_run_id,
    counter_delta,
)
from airflow_provider_neptune.hooks.settings import (
    NeptuneSettings,
    is_loopback_host,
    redact_url,
    resolve_settings,
)

if TYPE_CHECKING:
    import neptune

POOL.drain = delivery.prepare_stop
#: Points per ``extend()`` call (the client splits them into operations of 100 points).
EXTEND_BATCH = 1000
#: Background capture the client would otherwise start for every handle: off unless asked for.
RUN_DEFAULTS: dict[str, Any] = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_traceback": False,
    "source_files": [],
    "git_ref": False,
}
#: Points per series read request (what the neptune client itself asks for).
READ_PAGE = 1000
_SERVER_MODES = ("async", "sync", "read-only")


def _as_float_list(name: str, what: str, values: Iterable[Any]) -> list[float]:
    """Finite floats, steps and timestamps within their bounds; ValueError naming series, index, value."""
    out: list[float] = []
    for index, value in enumerate(values):
        if isinstance(value, bool):
            raise ValueError(
                f"series {name!r}: {what} at index {index} is a boolean ({value!r}), not a number"
            )
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"series {name!r}: {what} at index {index} is not a number: {value!r}") from exc
        if not math.isfinite(number):
            raise ValueError(f"series {name!r}: {what} at index {index} is not finite: {value!r}")
        problem = bound_problem(what, number)
        if problem is not None:
            raise ValueError(
                f"series {name!r}: {what} at index {index} is out of range: {value!r}; {problem}"
            )
        out.append(number)
    return out


def _per_series(
    spec: Mapping[str, Sequence[float]] | Sequence[float] | None, path: str
) -> Sequence[float] | None:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(path)
    return spec


def _emit_stats(counts: Mapping[str, int]) -> None:
    """Send counters to Airflow's metrics (StatsD/OTel when configured; a no-op otherwise)."""
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # pragma: no cover - older 3.x
        from airflow.stats import Stats
    for key, value in counts.items():
        if value:
            try:
                Stats.incr(f"neptune.{key}", value)
            except Exception:  # metrics must never fail a task
                logging.getLogger(__name__).debug("Stats.incr failed", exc_info=True)


class _SeriesReader:
    """Points of one float series read through a run handle, ``READ_PAGE`` per request, pages cached.

    Series points are stored in step order, so a step range is found by a binary search over pages.
    ``requests`` counts the reads made, ``total`` is the series' point count at the last read.
    """

    def __init__(self, run: Any, path: str) -> None:
        self.run = run
        self.path = path
        self.total: int | None = None
        self.requests = 0
        self._pages: dict[int, list[tuple[float, float]]] = {}

    def read(self, offset: int, limit: int = READ_PAGE) -> list[tuple[float, float]]:
        """(step, value) points ``offset..offset+limit-1``; none when the series does not exist."""
        from neptune.exceptions import FetchAttributeNotFoundException
        from neptune.internal.container_type import ContainerType
        from neptune.internal.utils.paths import parse_path

        self.requests += 1
        try:
            page = self.run._backend.get_float_series_values(
                self.run._id, ContainerType.RUN, parse_path(self.path), offset, limit
            )
        except FetchAttributeNotFoundException:
            self.total = 0
            return []
        self.total = int(page.totalItemCount)
        return [(float(p.step), float(p.value)) for p in page.values]

    def count(self) -> int:
        """How many points the series holds (one small read)."""
        self.read(0, 1)
        return self.total or 0

    def _page(self, number: int) -> list[tuple[float, float]]:
        if number not in self._pages:
            self._pages[number] = self.read(number * READ_PAGE)
        return self._pages[number]

    def between(self, low: float, high: float) -> list[tuple[float, float]]:
        """Points with ``low <= step <= high``: the first page, then the last, then a binary search."""
        if not self._page(0):
            return []
        pages = math.ceil((self.total or 0) / READ_PAGE)

        def reaches(number: int) -> bool:  # the page holds a step >= low (an empty page: past the end)
            page = self._page(number)
            return not page or page[-1][0] >= low

        first = 0
        if not reaches(0):
            tail = self._page(pages - 1) if pages > 1 else []
            if not tail or tail[-1][0] < low:
                return []
            lo, hi = 1, pages - 1
            if tail[0][0] <= low:
                lo = hi  # a resume after a kill overlaps the tail: found without a search
            while lo < hi:
                mid = (lo + hi) // 2
                if reaches(mid):
                    hi = mid
                else:
                    lo = mid + 1
            first = lo
        found: list[tuple[float, float]] = []
        for number in range(first, max(pages, first + 1)):
            page = self._page(number)
            found.extend(point for point in page if low <= point[0] <= high)
            if not page or page[-1][0] >= high:
                break
        return found

    def last_step(self) -> float | None:
        """The series' last step, from the pages read so far or one more read."""
        total = self.total if self.total is not None else self.count()
        number = (total - 1) // READ_PAGE
        page = self._pages.get(number) if total else None
        if page and number * READ_PAGE + len(page) == total:
            return page[-1][0]
        tail = self.read(total - 1, 1) if total else []
        return tail[-1][0] if tail else None

    def after(self, offset: int) -> list[tuple[float, float]]:
        """Every point from index ``offset`` to the end."""
        found: list[tuple[float, float]] = []
        while True:
            page = self.read(offset)
            found.extend(page)
            offset += len(page)
            if not page or offset >= (self.total or 0):
                return found


class NeptuneHook(BaseHook):
    """Settings, pooled runs, a shared request budget, one retry policy and verified delivery for Neptune.

    :param neptune_conn_id: Airflow connection of type ``neptune`` (token in the password).
    :param project: ``workspace/project``; overrides the connection and NEPTUNE_PROJECT.
    :param mode: client mode (async, sync, offline, read-only, debug).
    :param api_token: API token; overrides the connection's password and NEPTUNE_API_TOKEN.
    :param rate_limit_per_second: shared request budget (0 disables it).
    :param rate_limit_storage: ``memory``, an absolute file path, or ``redis://...``.
    :param retry_count: retries per request after the first try.
    :param retry_backoff: base of the exponential backoff, in seconds.
    :param request_timeout: timeout of one HTTP request, in seconds.
    :param logging_level: level of the neptune and provider loggers; DEBUG logs every request.
    """

    conn_name_attr = "neptune_conn_id"
    default_conn_name = "neptune_default"
    conn_type = "neptune"
    hook_name = "Neptune"

    def __init__(
        self,
        neptune_conn_id: str = default_conn_name,
        *,
        project: str | None = None,
        mode: str | None = None,
        api_token: str | None = None,
        rate_limit_per_second: float | None = None,
        rate_limit_storage: str | None = None,
        retry_count: int | None = None,
        retry_backoff: float | None = None,
        request_timeout: float | None = None,
        logging_level: str | None = None,
    ) -> None:
        super().__init__()
        self.neptune_conn_id = neptune_conn_id
        self._arguments: dict[str, Any] = {
            "project": project,
            "mode": mode,
            "api_token": api_token,
            "rate_limit_per_second": rate_limit_per_second,
            "rate_limit_storage": rate_limit_storage,
            "retry_count": retry_count,
            "retry_backoff": retry_backoff,
            "request_timeout": request_timeout,
            "logging_level": logging_level,
        }
        self._settings: NeptuneSettings | None = None
        self._policy: transport.OriginPolicy | None = None
        self._server_info: dict[str, Any] | None = None
        self._init_lock = threading.Lock()

    # ------------------------------------------------------------------ settings and transport

    @property
    def settings(self) -> NeptuneSettings:
        """Settings resolved once: argument > connection > environment > default (validated)."""
        if self._settings is None:
            with self._init_lock:
                if self._settings is None:
                    self._settings = self._resolve_settings()
        return self._settings

    def _resolve_settings(self) -> NeptuneSettings:
        connection = None
        try:
            connection = self.get_connection(self.neptune_conn_id)
        except Exception as exc:
            if self.neptune_conn_id != self.default_conn_name:
                raise NeptuneSettingsError(
                    "neptune_conn_id", self.neptune_conn_id, f"connection not found ({type(exc).__name__})"
                ) from exc
            self.log.info(
                "Connection %r not found; using arguments and NEPTUNE_* environment variables",
                self.neptune_conn_id,
            )
        settings = resolve_settings(self.neptune_conn_id, connection, self._arguments, os.environ)
        if settings.api_token:
            try:
                from airflow.sdk.log import mask_secret

                mask_secret(settings.api_token)
            except Exception:  # masking is best effort outside a task
                self.log.debug("could not register the token with the secrets masker", exc_info=True)
        if settings.logging_level:
            for name in ("neptune", "airflow_provider_neptune"):
                logging.getLogger(name).setLevel(settings.logging_level)
        return settings

    @property
    def policy(self) -> transport.OriginPolicy | None:
        """The transport policy (budget, retries, counters) of this hook's server; None without a server."""
        settings = self.settings
        if self._policy is None and settings.api_address:
            with self._init_lock:
                if self._policy is None:
                    budget = get_budget(
                        settings.budget_key, settings.rate_limit_per_second, settings.rate_limit_storage
                    )
                    self._policy = transport.register(
                        settings.origins,
                        budget=budget,
                        retry=RetryPolicy(settings.retry_count, settings.retry_backoff),
                        request_timeout=settings.request_timeout,
                        log_requests=settings.logging_level == "DEBUG",
                        api_token=settings.api_token,
                    )
                    # oauthlib accepts plain http for these origins only when they are loopback
                    # (transport patches its check narrowly; no process-wide OAUTHLIB_INSECURE_TRANSPORT).
        return self._policy

    @property
    def counters(self) -> dict[str, int]:
        """Requests, 429s, retries, points and bytes sent to this hook's server by this process."""
        policy = self.policy if self.settings.api_address else None
        if policy is None:
            return dict.fromkeys(COUNTER_KEYS, 0)
        snapshot = policy.counters.snapshot()
        return {key: snapshot.get(key, 0) for key in COUNTER_KEYS}

    def _scope(self) -> tuple[str, str, str]:
        s = self.settings
        return (s.api_address or "", s.token_fingerprint, s.project or "")

    @contextmanager
    def _translate_errors(self, what: str) -> Iterator[None]:
        """Turn neptune client exceptions into provider errors with a hint (never the token)."""
        from neptune.common.exceptions import (
            Forbidden,
            NeptuneConnectionLostException,
            NeptuneInvalidApiTokenException,
            Unauthorized,
        )
        from neptune.exceptions import (
            CannotResolveHostname,
            MetadataContainerNotFound,
            NeptuneMissingProjectNameException,
            ProjectNotFound,
        )

        settings = self.settings
        try:
            yield
        except NeptuneProviderError:
            raise
        except (NeptuneInvalidApiTokenException, Unauthorized) as exc:
            raise NeptuneAuthError(
                f"{what}: the server at {settings.api_address} rejected the API token (HTTP 401); check the "
                f"password of connection {self.neptune_conn_id!r}"
            ) from exc
        except Forbidden as exc:
            raise NeptuneAuthError(
                f"{what}: access denied (HTTP 403); check that the token may access "
                f"project {settings.project!r}"
            ) from exc
        except (ProjectNotFound, NeptuneMissingProjectNameException) as exc:
            raise NeptuneProjectNotFoundError(
                f"{what}: project {settings.project!r} not found at {settings.api_address} (HTTP 404); "
                f"check the project name (workspace/project) and that the token can see it"
            ) from exc
        except MetadataContainerNotFound as exc:
            raise NeptuneRunNotFoundError(f"{what}: {exc}".strip()) from exc
        except (NeptuneConnectionLostException, CannotResolveHostname) as exc:
            raise NeptuneConnectionError(
                f"{what}: cannot reach the Neptune server at {settings.api_address} ({type(exc).__name__})"
            ) from exc

    # ------------------------------------------------------------------ runs

    def _init_run(self, mode: str, **kwargs: Any) -> neptune.Run:
        import neptune

        settings = self.settings
        if mode in _SERVER_MODES:
            _ = self.policy
        options = {**RUN_DEFAULTS, **kwargs} if mode != "read-only" else kwargs
        with self._translate_errors("Opening a Neptune run"):
            return neptune.init_run(
                project=settings.project,
                api_token=settings.api_token,
                mode=mode,  # type: ignore[arg-type]
                **options,
            )

    @staticmethod
    def _sys_id(run: Any) -> str:
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
            known_name: str | None = None
            if custom_run_id and mode in ("async", "sync"):
                # Reopen an existing run by its sys/id: reopening by custom id makes the client
                # overwrite sys/description (and sys/name) with defaults.
                found = self._existing_run(custom_run_id=custom_run_id)
                if found is not None:
                    target, known_name = found
            elif (
                run_id
                and mode in ("async", "sync")
                and "name" not in kwargs
                and not self._server_sets_names()
            ):
                found = self._existing_run(run_id=run_id)
                if found is not None:
                    known_name = found[1]
            if target:
                kwargs["with_id"] = target
                if "name" not in kwargs and known_name is not None and not self._server_sets_names():
                    kwargs["name"] = known_name  # else the client writes "Untitled" over it
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

    def _server_sets_names(self) -> bool:
        """Whether the server names new runs itself (else the client writes a default name on every open)."""
        info = self._server_info
        if info is None:
            try:
                info = self.server_info()
            except Exception:
                return False
        return bool(info.get("sys_name_set_by_backend"))

    def _existing_run(
        self, *, run_id: str | None = None, custom_run_id: str | None = None
    ) -> tuple[str, str | None] | None:
        """(sys/id, sys/name) of an existing run by sys/id or custom run id; None when there is none."""
        from neptune.exceptions import NeptuneException

        from airflow_provider_neptune.nql_text import condition

        try:
            with self.get_project() as project:
                if custom_run_id is not None:
                    table = project.fetch_runs_table(
                        query=condition("sys/custom_run_id", "string", "=", custom_run_id, "custom_run_id"),
                        columns=["sys/id", "sys/custom_run_id", "sys/name"],
                        sort_by="sys/id",  # the client's default sort fails on a project without runs
                        progress_bar=False,
                    ).to_pandas()
                    if not table.empty and "sys/custom_run_id" in table:
                        table = table[table["sys/custom_run_id"] == custom_run_id]
                else:
                    # Not the client's id= filter: it pastes the id into the query unescaped.
                    table = project.fetch_runs_table(
                        query=condition("sys/id", "string", "=", run_id or "", "run_id"),
                        columns=["sys/id", "sys/name", "sys/creation_time"],
                        progress_bar=False,
                    ).to_pandas()
        except (NeptuneException, NeptuneProviderError) as exc:
            self.log.warning("Could not look up the existing run (%s); opening it directly", exc)
            return None
        if table.empty:
            return None
        row = table.iloc[0]
        name = row.get("sys/name")
        return str(row["sys/id"]), (str(name) if isinstance(name, str) else None)

    def _find_by_custom_id(self, custom_run_id: str) -> str:
        """The sys/id of the run with this custom run id (for read-only access)."""
        for mode in ("async", "sync"):
            pooled = POOL.get((*self._scope(), mode, "custom", custom_run_id))
            if pooled is not None:
                return self._sys_id(pooled)
        found = self._existing_run(custom_run_id=custom_run_id)
        if found is None:
            raise NeptuneRunNotFoundError(
                f"no run with custom run id {custom_run_id!r} in project {self.settings.project!r}"
            )
        return found[0]

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

    # ------------------------------------------------------------------ metrics

    def _default_delivery_timeout(self, points: int) -> float:
        rate = self.settings.rate_limit_per_second or 50.0
        return 60.0 + 2.0 * math.ceil(points / 100) / max(rate, 1.0)

    def _last_steps_on(self, run: Any, paths: Iterable[str]) -> dict[str, float | None]:
        """Last step per float series, read from the server through a run handle (None: no points).

        One request for all series: the run's attribute list carries ``floatSeriesProperties.lastStep``.
        A series without it there (an older server) is read point-wise: its count, then its last point.
        """
        from neptune.common.backends.utils import with_api_exceptions_handler
        from neptune.internal.backends.hosted_client import DEFAULT_REQUEST_KWARGS

        wanted = list(paths)
        result: dict[str, float | None] = {}
        if not wanted:
            return result

        @with_api_exceptions_handler
        def attributes() -> Any:
            api = run._backend.leaderboard_client.api
            return (
                api.getExperimentAttributes(experimentId=run._id, **DEFAULT_REQUEST_KWARGS).response().result
            )

        with self._translate_errors("Reading series from Neptune"):
            listed = {a.name: a for a in (getattr(attributes(), "attributes", None) or [])}
            for path in wanted:
                attribute = listed.get(path)
                if attribute is None or getattr(attribute, "type", None) != "floatSeries":
                    result[path] = None
                    continue
                properties = getattr(attribute, "floatSeriesProperties", None)
                last_step = getattr(properties, "lastStep", None) if properties is not None else None
                result[path] = (
                    float(last_step) if last_step is not None else self._last_step_by_points(run, path)
                )
        return result

    def _last_step_by_points(self, run: Any, path: str) -> float | None:
        """The last step of one series from its points (two small reads)."""
        from neptune.exceptions import FetchAttributeNotFoundException
        from neptune.internal.container_type import ContainerType
        from neptune.internal.utils.paths import parse_path

        parsed = parse_path(path)
        try:
            head = run._backend.get_float_series_values(run._id, ContainerType.RUN, parsed, 0, 1)
            total = int(head.totalItemCount)
            if total == 0:
                return None
            if total == 1:
                return float(head.values[0].step)
            tail = run._backend.get_float_series_values(run._id, ContainerType.RUN, parsed, total - 1, 1)
            return float(tail.values[-1].step)
        except FetchAttributeNotFoundException:
            return None

    def last_steps(self, run_id: str, paths: Iterable[str]) -> dict[str, float | None]:
        """The server's last step of each float series (None when the series has no points)."""
        with self.get_run(run_id, mode="read-only") as run:
            return self._last_steps_on(run, list(paths))

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, Sequence[float]],
        steps: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
        timestamps: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
        *,
        resume: bool = True,
        progress: Callable[[int, int], None] | None = None,
        delivery_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Append float series to a run, skipping points the server already holds, and verify delivery.

        ``steps`` default to 0..n-1 per series. With ``resume`` a point at or below its series' last
        step on the server counts as delivered only when the server holds that step with the same
        value (so a retried task sends nothing twice); any other such point fails the call before
        anything is sent (NeptuneStepConflictError: Neptune series only grow). After sending, every
        point is read back and compared by step and value. Raises ValueError for bad input (see
        :func:`bound_problem` for the step and timestamp bounds) and NeptuneDeliveryError when
        anything did not arrive.
        """
        plan: dict[str, tuple[list[float], list[float], list[float] | None]] = {}
        for path, raw_values in metrics.items():
            values = _as_float_list(path, "value", raw_values)
            raw_steps = _per_series(steps, path)
            step_list = (
                _as_float_list(path, "step", raw_steps)
                if raw_steps is not None
                else [float(i) for i in range(len(values))]
            )
            raw_ts = _per_series(timestamps, path)
            ts_list = _as_float_list(path, "timestamp", raw_ts) if raw_ts is not None else None
            if len(step_list) != len(values):
                raise ValueError(f"series {path!r}: {len(values)} values but {len(step_list)} steps")
            if ts_list is not None and len(ts_list) != len(values):
                raise ValueError(f"series {path!r}: {len(values)} values but {len(ts_list)} timestamps")
            for index in range(1, len(step_list)):
                if step_list[index] <= step_list[index - 1]:
                    raise ValueError(
                        f"series {path!r}: step at index {index} ({step_list[index]:g}) is not greater "
                        f"than the previous step ({step_list[index - 1]:g}); steps must strictly increase"
                    )
            plan[path] = (values, step_list, ts_list)

        settings = self.settings
        before = self.counters
        total_points = sum(len(v) for v, _, _ in plan.values())
        timeout = (
            delivery_timeout if delivery_timeout is not None else self._default_delivery_timeout(total_points)
        )
        server_side = settings.mode in ("async", "sync")
        skipped = 0
        sent = 0
        reads = 0
        sync_errors: list[str] = []
        expected: dict[str, float] = {}
        with self.get_run(run_id) as run:
            known: dict[str, float | None] = {}
            counts: dict[str, int] = {}
            if server_side:
                # Earlier operations of this handle first, so the server's series are current.
                self.wait_for_delivery(run, timeout=timeout)
                if resume:
                    known, counts, skipped, reads = self._resume_plan(run, run_id, plan)
            to_send = sum(len(v) for v, _, _ in plan.values())
            if progress is not None:
                progress(0, to_send)
            from neptune.common.exceptions import NeptuneException

            for path, (values, step_list, ts_list) in plan.items():
                for start in range(0, len(values), EXTEND_BATCH):
                    end = min(start + EXTEND_BATCH, len(values))
                    try:
                        with self._translate_errors(f"Logging {path!r} to run {run_id}"):
                            run[path].extend(
                                values[start:end],
                                steps=step_list[start:end],
                                timestamps=ts_list[start:end] if ts_list is not None else None,
                            )
                    except NeptuneException as exc:  # sync mode reports operation errors here
                        sync_errors.append(f"{path}: {delivery.short_error(exc)}")
                        break
                    sent += end - start
                    expected[path] = step_list[end - 1]
                    if progress is not None:
                        progress(sent, to_send)
            if self.policy is not None:
                self.policy.counters.add(points=sent)
            last_steps: dict[str, float | None] = dict(expected)
            if server_side:
                planned = {path: step_list[-1] for path, (_, step_list, _) in plan.items() if step_list}
                read_back_requests: list[int] = []

                def read_back() -> tuple[dict[str, float | None], dict[str, delivery.Shortfall]]:
                    return self._read_back(run, plan, counts, known, read_back_requests)

                server = self._verify(
                    run,
                    run_id=run_id,
                    timeout=timeout,
                    expected_last_steps=planned,
                    read_last_steps=lambda paths: self._last_steps_on(run, paths),
                    extra_errors=sync_errors,
                    read_back=read_back,
                )
                reads += sum(read_back_requests)
                last_steps = {path: server.get(path, known.get(path)) for path in plan}
            elif sync_errors:
                raise NeptuneDeliveryError(
                    f"Neptune rejected data for run {run_id}: " + "; ".join(sync_errors), run_id=run_id
                )
        after = self.counters
        summary: dict[str, Any] = {
            "points_sent": sent,
            "points_skipped": skipped,
            "requests": after["requests"] - before["requests"],
            "retries": after["retries"] - before["retries"],
            "throttled": after["throttled"] - before["throttled"],
            "last_steps": last_steps,
            "read_requests": reads,
        }
        self._report(f"log_metrics run {run_id}", counter_delta(before, after))
        return summary

    def _resume_plan(
        self,
        run: Any,
        run_id: str,
        plan: dict[str, tuple[list[float], list[float], list[float] | None]],
    ) -> tuple[dict[str, float | None], dict[str, int], int, int]:
        """Before sending: each series' last step and point count on the server.

        The points at or below a series' last step are dropped from ``plan`` when the server holds each
        of them (same step, same value); otherwise NeptuneStepConflictError names the series and the
        first such steps, and nothing is sent. Costs one request for all series, plus
        per existing series one small read, or (when the points overlap) one per READ_PAGE points of
        the overlap and a few to find it. Returns (last steps, counts, points skipped, requests).
        """
        known = self._last_steps_on(run, list(plan))
        requests = 1
        counts: dict[str, int] = {}
        skipped = 0
        conflicts: dict[str, tuple[float, delivery.Shortfall]] = {}
        for path, (values, step_list, ts_list) in list(plan.items()):
            last = known.get(path)
            if last is None:
                counts[path] = 0
                continue
            reader = _SeriesReader(run, path)
            with self._translate_errors(f"Reading {path!r} of run {run_id}"):
                overlap = sum(1 for step in step_list if step <= last)  # a prefix: steps increase
                if overlap:
                    held = dict(reader.between(step_list[0], step_list[overlap - 1]))
                    sent_before = list(zip(step_list[:overlap], values[:overlap], strict=True))
                    lacking = delivery.shortfall(sent_before, held, last)
                    if lacking is not None:
                        conflicts[path] = (last, lacking)
                    skipped += overlap
                    plan[path] = (
                        values[overlap:],
                        step_list[overlap:],
                        ts_list[overlap:] if ts_list is not None else None,
                    )
                    counts[path] = reader.total or 0
                else:
                    counts[path] = reader.count()
            requests += reader.requests
        if conflicts:
            described = "; ".join(
                f"series {path!r} holds points up to step {last:g}: {lacking.describe()}"
                for path, (last, lacking) in sorted(conflicts.items())
            )
            raise NeptuneStepConflictError(
                f"Neptune run {run_id}: nothing was sent; points at or below a series' last step count as "
                f"delivered only when the server holds the same step with the same value, and Neptune "
                f"series only grow, so these can never be delivered: {described}. Log them with steps "
                "above the last step, or to another series or run",
                run_id=run_id,
                missing={path: (last, lacking.sent_last_step) for path, (last, lacking) in conflicts.items()},
            )
        return known, counts, skipped, requests

    def _read_back(
        self,
        run: Any,
        plan: Mapping[str, tuple[list[float], list[float], list[float] | None]],
        counts: Mapping[str, int],
        known: Mapping[str, float | None],
        requests: list[int],
    ) -> tuple[dict[str, float | None], dict[str, delivery.Shortfall]]:
        """Compare every point meant to be sent with the server's points added since :meth:`_resume_plan`.

        One request per READ_PAGE points added to a series (at least one per series sent to); without
        counts from before sending (``resume=False``) the steps sent are found by a binary search.
        Returns the server's last step per series and what each series lacks.
        """
        last_steps: dict[str, float | None] = {}
        shortfalls: dict[str, delivery.Shortfall] = {}
        for path, (values, step_list, _) in plan.items():
            if not step_list:
                last_steps[path] = known.get(path)
                continue
            reader = _SeriesReader(run, path)
            with self._translate_errors(f"Reading {path!r} back"):
                if path in counts:
                    added = reader.after(counts[path])
                    last_steps[path] = added[-1][0] if added else known.get(path)
                else:  # no count from before sending (resume=False): find the steps sent
                    added = reader.between(step_list[0], step_list[-1])
                    last_steps[path] = reader.last_step()
            requests.append(reader.requests)
            lacking = delivery.shortfall(
                list(zip(step_list, values, strict=True)), dict(added), last_steps[path]
            )
            if lacking is not None:
                shortfalls[path] = lacking
        return last_steps, shortfalls

    def _verify(self, run: Any, **kwargs: Any) -> dict[str, float | None]:
        """verify_delivery, dropping a handle whose async thread died so it is never reused."""
        try:
            return delivery.verify_delivery(run, **kwargs)
        except NeptuneDeliveryError:
            consumer = delivery.consumer_of(run)
            if consumer is not None and not consumer.is_alive() and POOL.remove(run):
                # Its queue stays on disk (named in the error); a later call opens a fresh handle.
                try:
                    run.stop(seconds=1)
                except Exception:
                    self.log.debug("stopping a broken run handle failed", exc_info=True)
            raise

    def _report(self, what: str, counts: Mapping[str, int]) -> None:
        self.log.info(
            "Neptune %s: %s",
            what,
            ", ".join(f"{key}={counts.get(key, 0)}" for key in COUNTER_KEYS),
        )
        _emit_stats(counts)

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

    # ------------------------------------------------------------------ reads

    def fetch_series(self, run_id: str, path: str) -> list[tuple[float, float]]:
        """All (step, value) points of a float series; empty when it does not exist."""
        from neptune.exceptions import FetchAttributeNotFoundException
        from neptune.internal.container_type import ContainerType
        from neptune.internal.utils.paths import parse_path

        points: list[tuple[float, float]] = []
        with self.get_run(run_id, mode="read-only") as run, self._translate_errors("Reading a series"):
            offset, limit = 0, 1000
            while True:
                try:
                    page = run._backend.get_float_series_values(
                        run._id, ContainerType.RUN, parse_path(path), offset, limit
                    )
                except FetchAttributeNotFoundException:
                    return []
                points.extend((float(p.step), float(p.value)) for p in page.values)
                offset += limit
                if offset >= int(page.totalItemCount) or not page.values:
                    return points

    def fetch_field(self, run_id: str, path: str) -> Any:
        """Current value of a field (last value for a series, dict for a namespace); None when missing."""
        with self.get_run(run_id, mode="read-only") as run, self._translate_errors("Reading a field"):
            run.sync(wait=False)
            if not run.exists(path):
                return None
            handler = run[path]
            attribute = run.get_attribute(path)
            target = attribute if attribute is not None else handler
            if hasattr(target, "fetch"):
                return target.fetch()
            if hasattr(target, "fetch_last"):
                return target.fetch_last()
            return None

    @contextmanager
    def get_project(self, mode: str = "read-only") -> Iterator[neptune.Project]:
        """A project handle (e.g. for ``fetch_runs_table``), stopped after the block."""
        import neptune

        settings = self.settings
        _ = self.policy
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

    # ------------------------------------------------------------------ server checks

    def _api_base(self) -> str:
        address = self.settings.api_address
        if not address:
            raise NeptuneSettingsError(
                "api_token", None, f"mode {self.settings.mode!r} has no server address"
            )
        return (address if "://" in address else "https://" + address).rstrip("/")

    def server_info(self) -> dict[str, Any]:
        """Server facts from its client config: API URL, client-version bounds, server time, round trip."""
        import requests
        from neptune.version import version as client_version

        base = self._api_base()
        policy = self.policy
        assert policy is not None
        started = time.monotonic()
        with requests.Session() as session, transport.single_try():
            response = session.get(
                f"{base}/api/backend/v1/clients/config",
                params={"alpha": "true"},
                headers={"X-Neptune-Api-Token": self.settings.api_token or ""},
                timeout=self.settings.request_timeout,
            )
        rtt = time.monotonic() - started
        if response.status_code in (401, 403):
            raise NeptuneAuthError(
                f"the server at {self.settings.api_address} rejected the API token "
                f"(HTTP {response.status_code}); check the password of connection {self.neptune_conn_id!r}"
            )
        if response.status_code != 200:
            raise NeptuneConnectionError(
                f"the server at {self.settings.api_address} answered HTTP {response.status_code} "
                "for its client config"
            )
        try:
            config = response.json()
        except ValueError as exc:
            raise NeptuneConnectionError(
                f"the server at {self.settings.api_address} did not answer with JSON: "
                "is this a Neptune server?"
            ) from exc
        versions = config.get("pyLibVersions") or {}
        server_time: datetime | None = None
        if response.headers.get("Date"):
            try:
                server_time = parsedate_to_datetime(response.headers["Date"])
            except (TypeError, ValueError):
                server_time = None
        info = {
            "api_url": config.get("apiUrl"),
            "app_url": config.get("applicationUrl"),
            "min_compatible_version": versions.get("minCompatibleVersion"),
            "max_compatible_version": versions.get("maxCompatibleVersion"),
            "min_recommended_version": versions.get("minRecommendedVersion"),
            "client_version": str(client_version),
            "sys_name_set_by_backend": bool(config.get("sysNameSetByBackend", False)),
            "server_time": server_time,
            "round_trip_seconds": rtt,
        }
        if info["api_url"]:
            # Same address rule as the configured address (the transport checked it on the way in too).
            transport.add_origin(policy, str(info["api_url"]), announced_by=policy.origin)
        self._server_info = info
        return info

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: the token is accepted, the project reachable; reports round trip."""
        import requests
        from packaging.version import InvalidVersion, Version

        try:
            settings = self.settings
        except NeptuneSettingsError as exc:
            return False, redact_url(str(exc))
        if not settings.api_token or not settings.api_address:
            return False, f"mode {settings.mode!r} without an API token: no server to test"
        try:
            info = self.server_info()
        except (requests.exceptions.RequestException, transport.retries_exhausted_class()) as exc:
            return False, redact_url(
                f"cannot reach the Neptune server at {settings.api_address}: {type(exc).__name__}: {exc}"
            )
        except NeptuneProviderError as exc:
            return False, redact_url(str(exc))
        try:
            client = Version(info["client_version"])
            low, high = info["min_compatible_version"], info["max_compatible_version"]
            if low and client < Version(str(low)):
                return False, f"neptune client {client} is older than the server's minimum {low}"
            if high and Version(str(high)) < Version(f"{client.major}.{client.minor}.0"):
                return False, f"neptune client {client} is newer than the server's maximum {high}"
        except InvalidVersion:
            self.log.warning("could not compare client and server versions: %s", info)
        try:
            self._check_project()
        except NeptuneProviderError as exc:
            return False, redact_url(str(exc))
        except Exception as exc:
            return False, redact_url(f"project check failed: {type(exc).__name__}: {exc}")
        message = (
            f"Connected to {settings.api_address}: token accepted, project {settings.project} reachable, "
            f"round trip {info['round_trip_seconds'] * 1000:.0f} ms, neptune client {info['client_version']}"
        )
        policy = self.policy
        if policy is not None and policy.budget is not None:
            ok, budget_message = policy.budget.check()
            if not ok:
                return False, budget_message
            message += f"; {budget_message}"
        return True, message

    def _check_project(self) -> None:
        from neptune.internal.backends.hosted_neptune_backend import HostedNeptuneBackend
        from neptune.internal.credentials import Credentials
        from neptune.internal.id_formats import QualifiedName

        settings = self.settings
        with self._translate_errors("Checking the Neptune project"):
            backend = HostedNeptuneBackend(Credentials.from_token(settings.api_token))
            try:
                backend.get_project(QualifiedName(settings.project or ""))
            finally:
                backend.close()

    def run_url(self, run_id: str) -> str:
        """The web page of a run (the server's application URL, else the API address)."""
        settings = self.settings
        base: str | None = (self._server_info or {}).get("app_url")
        if base is None and settings.api_address:
            try:
                base = self.server_info().get("app_url")
            except Exception:
                base = None
        base = (base or self._api_base()).rstrip("/")
        workspace, _, project = (settings.project or "/").partition("/")
        return f"{base}/{workspace}/{project}/e/{run_id}"

    def close(self) -> None:
        """Stop the idle pooled handles of this hook's server, token and project.

        Resolves the settings when this hook has not yet done so: a fresh hook for the same connection
        must close the handles an earlier hook (or task) opened.
        """
        try:
            scope = self._scope()
        except NeptuneSettingsError:
            return  # no usable connection: nothing of it can be in the pool
        POOL.close_where(lambda key: tuple(key[:3]) == scope)

    # ------------------------------------------------------------------ connection form (older 3.x UIs)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field relabeling and hiding, the same as the provider metadata's ``ui-field-behaviour``."""
        from airflow_provider_neptune import get_provider_info

        for conn in get_provider_info()["connection-types"]:
            if conn["connection-type"] == cls.conn_type:
                return dict(conn["ui-field-behaviour"])
        return {}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields for UIs still on WTForms; the same fields as the metadata's ``conn-fields``."""
        try:
            from wtforms import StringField
        except ImportError:  # Airflow 3.3's UI reads conn-fields from the provider metadata instead
            return {}
        from airflow_provider_neptune import get_provider_info

        widgets: dict[str, Any] = {}
        for conn in get_provider_info()["connection-types"]:
            if conn["connection-type"] == cls.conn_type:
                for name, spec in conn["conn-fields"].items():
                    widgets[name] = StringField(spec["label"], description=spec.get("description", ""))
        return widgets


__all__ = ["NeptuneHook", "NeptuneSettings", "is_loopback_host"]
