"""NeptuneHookBase: settings and masking, transport registration, counters, error translation, the form.

What every part of :class:`~airflow_provider_neptune.hooks.neptune.NeptuneHook` needs before it talks to
a server; no ``neptune`` import at module level.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_neptune.exceptions import (
    NeptuneAuthError,
    NeptuneConnectionError,
    NeptuneProjectNotFoundError,
    NeptuneProviderError,
    NeptuneRunNotFoundError,
    NeptuneSettingsError,
)
from airflow_provider_neptune.hooks import transport
from airflow_provider_neptune.hooks.limiter import get_budget
from airflow_provider_neptune.hooks.retry import RetryPolicy
from airflow_provider_neptune.hooks.run_pool import POOL
from airflow_provider_neptune.hooks.server_rules import COUNTER_KEYS
from airflow_provider_neptune.hooks.settings import NeptuneSettings, resolve_settings


def emit_stats(counts: Mapping[str, int]) -> None:
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


class NeptuneHookBase(BaseHook):
    """Connection settings, the shared transport policy, counters and error translation of a Neptune hook.

    Its arguments are :class:`~airflow_provider_neptune.hooks.neptune.NeptuneHook`'s (documented there).
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

    # ------------------------------------------------------------------ settings

    @property
    def settings(self) -> NeptuneSettings:
        """Settings resolved once: argument > connection > environment > default (validated)."""
        if self._settings is None:
            with self._init_lock:
                if self._settings is None:
                    self._settings = self._resolve_settings()
        return self._settings

    def _resolve_settings(self) -> NeptuneSettings:
        """Read the connection, resolve every setting, mask the token and set the loggers' level."""
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

    def _scope(self) -> tuple[str, str, str]:
        """(server, token fingerprint, project): the part of a pool key that names this connection."""
        s = self.settings
        return (s.api_address or "", s.token_fingerprint, s.project or "")

    # ------------------------------------------------------------------ transport and counters

    def register_transport(self) -> transport.OriginPolicy | None:
        """Route this hook's server through the shared budget, retries and counters; returns the policy.

        Idempotent (the same settings share one policy per process); None without a server address.
        Every hook method that sends a request calls it first.
        """
        settings = self.settings
        if self._policy is None and settings.api_address:
            with self._init_lock:
                if self._policy is None:
                    budget = get_budget(
                        settings.budget_key, settings.rate_limit_per_second, settings.rate_limit_storage
                    )
                    # oauthlib accepts plain http for these origins only when they are loopback
                    # (transport patches its check narrowly; no process-wide OAUTHLIB_INSECURE_TRANSPORT).
                    self._policy = transport.register(
                        settings.origins,
                        budget=budget,
                        retry=RetryPolicy(settings.retry_count, settings.retry_backoff),
                        request_timeout=settings.request_timeout,
                        log_requests=settings.logging_level == "DEBUG",
                        api_token=settings.api_token,
                    )
        return self._policy

    @property
    def policy(self) -> transport.OriginPolicy | None:
        """The policy :meth:`register_transport` registered; None before that or without a server."""
        return self._policy

    @property
    def counters(self) -> dict[str, int]:
        """Requests, 429s, retries, points and bytes sent to this hook's server by this process.

        Registers the transport first, so a count taken before a hook's first request is a baseline.
        """
        policy = self.register_transport()
        if policy is None:
            return dict.fromkeys(COUNTER_KEYS, 0)
        snapshot = policy.counters.snapshot()
        return {key: snapshot.get(key, 0) for key in COUNTER_KEYS}

    def _report(self, what: str, counts: Mapping[str, int]) -> None:
        """Log one call's counters and send them to Airflow's metrics."""
        self.log.info(
            "Neptune %s: %s",
            what,
            ", ".join(f"{key}={counts.get(key, 0)}" for key in COUNTER_KEYS),
        )
        emit_stats(counts)

    # ------------------------------------------------------------------ errors

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

    # ------------------------------------------------------------------ closing

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
    def _connection_type(cls) -> dict[str, Any]:
        """This hook's entry in the provider metadata's ``connection-types``."""
        from airflow_provider_neptune import get_provider_info

        for conn in get_provider_info()["connection-types"]:
            if conn["connection-type"] == cls.conn_type:
                return dict(conn)
        return {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field relabeling and hiding, the same as the provider metadata's ``ui-field-behaviour``."""
        return dict(cls._connection_type().get("ui-field-behaviour") or {})

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields for UIs still on WTForms; the same fields as the metadata's ``conn-fields``."""
        try:
            from wtforms import StringField
        except ImportError:  # Airflow 3.3's UI reads conn-fields from the provider metadata instead
            return {}
        fields = cls._connection_type().get("conn-fields") or {}
        return {
            name: StringField(spec["label"], description=spec.get("description", ""))
            for name, spec in fields.items()
        }
