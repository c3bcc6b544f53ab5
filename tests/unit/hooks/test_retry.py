"""The tenacity retry policy: what is retried, how long it waits, Retry-After honoured whole."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_provider_neptune.hooks.retry import (
    MAX_RETRY_AFTER_SECONDS,
    RetryPolicy,
    build_retrying,
    is_retryable_status,
    parse_retry_after,
)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 201, 204, 400, 401, 403, 404, 409, 422, 501, 505])
def test_not_retryable_statuses(status: int) -> None:
    assert not is_retryable_status(status)


def test_retry_after_seconds_are_read_whole() -> None:
    # The neptune client reads only the first character: "30" would wait 3 s there.
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("-4") == 0.0


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=45), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(45.0)
    past = format_datetime(now - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_retry_after_invalid_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(retry_count=10, backoff=0.5, max_backoff=4.0)
    rng = random.Random(1)
    samples = {n: [policy.backoff_seconds(n, rng) for _ in range(200)] for n in (1, 2, 3, 6)}
    assert all(0.05 <= s <= 0.5 for s in samples[1])
    assert all(0.05 <= s <= 1.0 for s in samples[2])
    assert max(samples[3]) > 1.0  # grows
    assert all(s <= 4.0 for s in samples[6])  # capped
    assert len({round(s, 6) for s in samples[6]}) > 100  # jittered, not constant


def test_wait_prefers_retry_after_and_bounds_it() -> None:
    policy = RetryPolicy(retry_count=3, backoff=0.5)
    assert policy.wait_seconds(1, 30.0) == 30.0
    assert policy.wait_seconds(1, 10_000.0) == MAX_RETRY_AFTER_SECONDS
    assert policy.wait_seconds(1, None) <= 0.5


class Response:
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status = status
        self.retry_after = retry_after


def _retrying(policy: RetryPolicy, sleeps: list[float]):  # type: ignore[no-untyped-def]
    return build_retrying(
        policy,
        retry_on_result=lambda r: is_retryable_status(r.status),
        retry_on_exception=lambda e: isinstance(e, ConnectionError),
        retry_after_of=lambda r: parse_retry_after(r.retry_after),
        sleep=sleeps.append,
    )


def test_retries_until_success_and_sleeps_retry_after() -> None:
    sleeps: list[float] = []
    script = [Response(429, "7"), Response(503), Response(200)]
    result = _retrying(RetryPolicy(retry_count=5, backoff=0.2), sleeps)(lambda: script.pop(0))
    assert result.status == 200
    assert len(sleeps) == 2
    assert sleeps[0] == 7.0
    assert 0.02 <= sleeps[1] <= 0.4


def test_gives_up_after_retry_count_and_returns_last_response() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def attempt() -> Response:
        calls.append(1)
        return Response(500)

    result = _retrying(RetryPolicy(retry_count=2, backoff=0.1), sleeps)(attempt)
    assert result.status == 500
    assert len(calls) == 3  # first try + 2 retries
    assert len(sleeps) == 2


def test_connection_errors_are_retried_then_reraised() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def attempt() -> Response:
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        _retrying(RetryPolicy(retry_count=3, backoff=0.1), sleeps)(attempt)
    assert len(calls) == 4


def test_client_errors_are_not_retried() -> None:
    sleeps: list[float] = []
    for status in (400, 401, 403, 404):
        calls: list[int] = []

        def attempt(status: int = status, calls: list[int] = calls) -> Response:
            calls.append(1)
            return Response(status)

        assert _retrying(RetryPolicy(retry_count=5, backoff=0.1), sleeps)(attempt).status == status
        assert len(calls) == 1
    assert sleeps == []


def test_other_exceptions_are_not_retried() -> None:
    calls: list[int] = []

    def attempt() -> Response:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        _retrying(RetryPolicy(retry_count=5, backoff=0.1), [])(attempt)
    assert len(calls) == 1


def test_zero_retries_means_one_try() -> None:
    calls: list[int] = []

    def attempt() -> Response:
        calls.append(1)
        return Response(503)

    assert _retrying(RetryPolicy(retry_count=0, backoff=0.1), [])(attempt).status == 503
    assert len(calls) == 1
