"""Server checks of a Neptune hook: the client config (server_info), the UI's Test button, the project
check and run URLs; what the server announces about itself is cached per hook.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_neptune.exceptions import (
    NeptuneAuthError,
    NeptuneConnectionError,
    NeptuneProviderError,
    NeptuneSettingsError,
)
from airflow_provider_neptune.hooks import answers, transport
from airflow_provider_neptune.hooks.base import NeptuneHookBase
from airflow_provider_neptune.hooks.settings import redact_url


class ServerChecks(NeptuneHookBase):
    """Server facts and checks: client config, version bounds, token and project, run URLs."""

    def _api_base(self) -> str:
        """The API address with its scheme; NeptuneSettingsError in a mode without a server."""
        address = self.settings.api_address
        if not address:
            raise NeptuneSettingsError(
                "api_token", None, f"mode {self.settings.mode!r} has no server address"
            )
        return (address if "://" in address else "https://" + address).rstrip("/")

    def server_info(self, *, reuse: bool = False) -> dict[str, Any]:
        """Server facts from its client config: API URL, client-version bounds, server time, round trip.

        ``reuse`` accepts the config this process fetched in the last minutes (no request; then the
        server time and round trip are those of that earlier answer).
        """
        import requests
        from neptune.version import version as client_version

        base = self._api_base()
        policy = self.register_transport()
        assert policy is not None
        started = time.monotonic()
        fetch = contextlib.nullcontext() if reuse else answers.fresh_config()
        with requests.Session() as session, transport.single_try(), fetch:
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
        policy = self.register_transport()
        if policy is not None and policy.budget is not None:
            ok, budget_message = policy.budget.check()
            if not ok:
                return False, budget_message
            message += f"; {budget_message}"
        return True, message

    def _check_project(self) -> None:
        """Fetch the project once through the client's backend (translated errors when it is missing)."""
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
                base = self.server_info(reuse=True).get("app_url")
            except Exception:
                base = None
        base = (base or self._api_base()).rstrip("/")
        workspace, _, project = (settings.project or "/").partition("/")
        return f"{base}/{workspace}/{project}/e/{run_id}"
