"""Errors raised by the Neptune provider: the one error module (the emulator has its own).

All derive from :class:`NeptuneProviderError`, itself an ``AirflowException``, so a task fails with
a message that says what went wrong and what to do; those a retry cannot help are also
``AirflowFailException`` (the task fails without retries). None of them ever carries the API token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_neptune.core.environment_checks import CheckResult


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


class NeptuneStepConflictError(NeptuneDeliveryError, AirflowFailException):
    """Points at or below a series' last step on the server that it does not hold with the same value.

    Neptune series only grow, so they can never be delivered; retrying does not help.
    """


class NeptuneSyncError(NeptuneProviderError, AirflowFailException):
    """The server rejected some synced operations; the data they carried is lost (listed).

    A retry cannot resend it (the client acknowledged those operations). ``report`` holds the full
    sync report (what was synced, the errors, what is left).
    """

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class NeptuneEnvironmentError(NeptuneProviderError):
    """Some environment checks failed, at least one of which may pass on retry (connection, clock).

    ``failures`` holds the failed checks of the worker (empty when workers were compared).
    """

    def __init__(self, message: str, failures: Sequence[CheckResult]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class NeptuneEnvironmentMismatchError(NeptuneEnvironmentError, AirflowFailException):
    """Only deterministic checks failed (versions, variables, disk): retrying the task cannot help."""


class MetricInputError(NeptuneProviderError, AirflowFailException, ValueError):
    """The metrics input cannot be logged as given; the message says where and why (no retry helps)."""


class NeptuneConditionError(NeptuneProviderError, AirflowFailException):
    """A sensor's awaited condition can no longer be met (or its rendered parameters are invalid)."""


class NeptuneTriggerError(NeptuneProviderError):
    """The deferred sensor's trigger failed (e.g. the server could not be read); a retry may help."""


class MetricFileError(MetricInputError):
    """A metric file cannot be read as given; ``where`` is the file plus line/row and column."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class NeptuneRetentionRefusedError(NeptuneProviderError, AirflowFailException):
    """The clean-up plan breaks a safety limit; retrying cannot help, the limit must be raised."""
