"""Errors raised by the Neptune provider.

All derive from :class:`NeptuneProviderError`, itself an ``AirflowException``, so a task fails with
a message that says what went wrong and what to do. None of them ever carries the API token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class NeptuneProviderError(AirflowException):
    """Base class of every error raised by airflow-provider-neptune."""


class NeptuneSettingsError(NeptuneProviderError, ValueError):
    """A connection, environment or argument setting is invalid; names the field and the bad value."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"Invalid Neptune setting {field}={value!r}: {reason}")


class NeptuneAuthError(NeptuneProviderError):
    """The server refused the API token (401/403): check the connection's token."""


class NeptuneProjectNotFoundError(NeptuneProviderError):
    """The project does not exist or the token cannot see it (404): check the project name."""


class NeptuneRunNotFoundError(NeptuneProviderError):
    """No run with the given sys/id or custom run id exists in the project."""


class NeptuneConnectionError(NeptuneProviderError):
    """The Neptune server could not be reached after all retries."""


class NeptuneDeliveryError(NeptuneProviderError):
    """Logged data did not reach the server: says what was lost and where the unsent queue lies."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        queue_path: str | None = None,
        missing: Mapping[str, tuple[float | None, float | None]] | None = None,
        errors: list[str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.queue_path = queue_path
        self.missing = dict(missing or {})
        self.errors = list(errors or [])
        super().__init__(message)


class NeptuneStepConflictError(NeptuneDeliveryError):
    """Points at or below a series' last step on the server that it does not hold with the same value.

    Neptune series only grow, so they can never be delivered; retrying does not help.
    """


class NeptuneRetentionRefusedError(NeptuneProviderError, AirflowFailException):
    """The clean-up plan breaks a safety limit; retrying cannot help, the limit must be raised."""
