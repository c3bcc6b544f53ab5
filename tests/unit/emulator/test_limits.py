"""Unit tests of the emulator's sliding-window throttle, fault injection and counters."""

from __future__ import annotations

import pytest

from airflow_provider_neptune.emulator.auth import TokenIssuer, api_key_of, make_api_token
from airflow_provider_neptune.emulator.limits import FailNext, Guard, SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_never_exceeds_the_budget_in_any_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(5, clock=clock)
    accepted: list[float] = []
    # One attempt every 10 ms for 5 s: a token bucket would allow bursts, the sliding log must not.
    for _ in range(500):
        if limiter.try_acquire() == 0.0:
            accepted.append(clock.now)
        clock.now += 0.01
    assert len(accepted) == 25
    for start in accepted:
        in_window = [t for t in accepted if start <= t < start + 1.0]
        assert len(in_window) <= 5


def test_rejections_do_not_consume_budget_and_report_the_wait() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, clock=clock)
    assert limiter.try_acquire() == 0.0
    clock.now += 0.4
    assert limiter.try_acquire() == 0.0
    wait = limiter.try_acquire()
    assert wait == pytest.approx(0.6)
    for _ in range(10):
        assert limiter.try_acquire() > 0
    clock.now += 0.6
    assert limiter.try_acquire() == 0.0
    assert limiter.in_window() == 2


def test_fractional_rate_means_one_request_per_period() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(0.5, clock=clock)
    assert limiter.try_acquire() == 0.0
    clock.now += 1.9
    assert limiter.try_acquire() > 0
    clock.now += 0.1
    assert limiter.try_acquire() == 0.0


def test_guard_throttles_then_counts_per_second() -> None:
    guard = Guard(rate_limit=3, fault_rate=0.0, seed=None)
    kinds = [guard.decide("ping", "/api/x").kind for _ in range(5)]
    assert kinds == ["ok", "ok", "ok", "throttle", "throttle"]
    assert guard.decide("ping", "/api/x").retry_after == 1
    stats = guard.stats.as_dict()
    assert stats["throttled_total"] == 3
    assert sum(row[1] for row in stats["requests_per_second"]) == 3
    assert sum(row[2] for row in stats["requests_per_second"]) == 3


def test_faults_are_reproducible_with_a_seed() -> None:
    def pattern(seed: int) -> list[str]:
        guard = Guard(rate_limit=None, fault_rate=0.3, seed=seed)
        return [guard.decide("executeOperations", "/api/x").fault or "-" for _ in range(200)]

    first = pattern(7)
    assert first == pattern(7)
    assert first != pattern(8)
    injected = [k for k in first if k != "-"]
    assert 30 < len(injected) < 90
    assert set(injected) == {"500", "503", "drop"}


def test_fail_next_matches_route_or_path_and_runs_out() -> None:
    guard = Guard(rate_limit=None, fault_rate=0.0, seed=1)
    guard.add_fail_next(FailNext(route="executeOperations", status=400, count=2))
    guard.add_fail_next(FailNext(route="attributes/ping", status=503, count=1))
    assert guard.decide("getExperiment", "/api/leaderboard/v1/experiments").kind == "ok"
    assert guard.decide("ping", "/api/leaderboard/v1/attributes/ping").status == 503
    assert [guard.decide("executeOperations", "/x").status for _ in range(3)] == [400, 400, 200]
    assert guard.fail_next == []
    assert guard.stats.fail_next_total == 3


def test_configure_validates_and_removes_limits() -> None:
    guard = Guard(rate_limit=1, fault_rate=0.0, seed=None)
    with pytest.raises(ValueError, match="fault_rate"):
        guard.configure(rate_limit=None, fault_rate=1.5)
    guard.configure(rate_limit=None, fault_rate=0.0)
    assert guard.rate_limit is None
    assert all(guard.decide("r", "/p").kind == "ok" for _ in range(50))


def test_tokens_round_trip_and_reject_forgeries() -> None:
    token = make_api_token("http://127.0.0.1:1234", "key-1")
    assert api_key_of(token) == "key-1"
    assert api_key_of("not base64 json") is None
    issuer = TokenIssuer(b"secret", "key-1", "me")
    assert issuer.check_api_key(token)
    assert not issuer.check_api_key(make_api_token("http://x", "key-2"))
    pair = issuer.token_pair("http://127.0.0.1:1234/auth/realms/neptune")
    assert issuer.check_bearer(f"Bearer {pair['access_token']}")
    assert not issuer.check_bearer(f"Bearer {pair['refresh_token']}")
    other = TokenIssuer(b"another secret", "key-1", "me")
    assert not other.check_bearer(f"Bearer {pair['access_token']}")
    claims = issuer.verify(pair["refresh_token"], kind="Refresh")
    assert claims is not None
    assert claims["iss"].endswith("/auth/realms/neptune")
