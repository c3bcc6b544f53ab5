"""The one retry policy of the provider, built on tenacity.

Exponential backoff with full jitter, a bounded number of retries, and the whole ``Retry-After``
value honoured (seconds or an HTTP date; the neptune client's own handler reads only its first
digit, so ``Retry-After: 30`` would wait 3 s there). Only what can succeed on a second try is
retried: connection errors, timeouts, 408, 429 and 5xx (except 501/505, which will not change).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import tenacity
from tenacity import RetryCallState

#: Statuses that a retry can fix.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524, 529})
#: Statuses that a retry cannot fix and that mean "check the token or the project".
AUTH_STATUSES = frozenset({401, 403})
NOT_FOUND_STATUS = 404
#: A server asking for longer than this is waited for this long at most, so a task never hangs.
MAX_RETRY_AFTER_SECONDS = 120.0
#: Upper bound of one exponential-backoff sleep.
MAX_BACKOFF_SECONDS = 30.0


def is_retryable_status(status: int) -> bool:
    """True for 408, 429 and the 5xx statuses that may succeed on retry."""
    return status in RETRYABLE_STATUSES or (500 <= status < 600 and status not in (501, 505))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` value (delta-seconds or HTTP date); None if absent/invalid."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait: ``retry_count`` retries after the first try.

    With the transport's timeout cap T, one failing request takes at most
    ``(retry_count + 1) * (permit wait + 2T) + sum of the retry sleeps`` (README, "Worst-case time
    of a failing call"); the client's own retry loop adds nothing on top for registered servers.
    """

    retry_count: int
    backoff: float
    max_backoff: float = MAX_BACKOFF_SECONDS
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS

    @property
    def attempts(self) -> int:
        """Total tries per request (the first one plus the retries)."""
        return self.retry_count + 1

    def backoff_seconds(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff for the n-th retry (1-based): U(0, min(cap, base*2**(n-1)))."""
        ceiling = min(self.max_backoff, self.backoff * (2 ** max(0, retry_number - 1)))
        # Never less than a tenth of the base so a retry is not instantaneous.
        return max(self.backoff / 10, (rng or random).uniform(0, ceiling))

    def wait_seconds(
        self, retry_number: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The whole Retry-After (bounded) when the server sent one, else the jittered backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff_seconds(retry_number, rng)


class _WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    """tenacity wait strategy: the server's Retry-After when present, else jittered backoff."""

    def __init__(self, policy: RetryPolicy, retry_after_of: Callable[[Any], float | None]) -> None:
        self.policy = policy
        self.retry_after_of = retry_after_of

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after = None
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            retry_after = self.retry_after_of(outcome.result())
        return self.policy.wait_seconds(retry_state.attempt_number, retry_after)


def build_retrying(
    policy: RetryPolicy,
    *,
    retry_on_result: Callable[[Any], bool],
    retry_on_exception: Callable[[BaseException], bool],
    retry_after_of: Callable[[Any], float | None],
    before_sleep: Callable[[RetryCallState], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for one request; when tries run out the last result is returned as is
    (so the caller sees the real response) and the last exception is re-raised unchanged."""

    def _give_up(retry_state: RetryCallState) -> Any:
        assert retry_state.outcome is not None
        return retry_state.outcome.result()  # re-raises when the last try raised

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=_WaitRetryAfterOrBackoff(policy, retry_after_of),
        retry=tenacity.retry_if_result(retry_on_result) | tenacity.retry_if_exception(retry_on_exception),
        before_sleep=before_sleep,
        retry_error_callback=_give_up,
        sleep=sleep,
        reraise=True,
    )
