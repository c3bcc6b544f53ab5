"""Request budget (sliding-log throttle), fault injection and counters of the emulator.

Everything here is used from the event loop only (one thread), so it needs no locks.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("500", "503", "drop")
RATE_HISTORY_SECONDS = 900


class SlidingWindowLimiter:
    """At most `rate` accepted requests in any window of `window` seconds (a sliding log).

    Unlike a token bucket it never allows a burst above the limit, so no interval of the given
    window length ever holds more accepted requests than the budget. Rejected requests are not
    logged, so they do not consume budget. A rate below 1 means one request per 1/rate seconds.
    """

    def __init__(self, rate: float, clock: Any = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        if rate >= 1:
            self.capacity = math.floor(rate)
            self.window = 1.0
        else:
            self.capacity = 1
            self.window = 1.0 / rate
        self._clock = clock
        self._log: deque[float] = deque()

    def try_acquire(self) -> float:
        """Record a request if the budget allows it: 0.0 when accepted, else seconds until it would be."""
        now = self._clock()
        while self._log and self._log[0] <= now - self.window:
            self._log.popleft()
        if len(self._log) < self.capacity:
            self._log.append(now)
            return 0.0
        return max(self._log[0] + self.window - now, 0.001)

    def in_window(self) -> int:
        """How many accepted requests are inside the current window."""
        now = self._clock()
        return sum(1 for t in self._log if t > now - self.window)


@dataclass
class FailNext:
    """The next `count` requests whose route matches `route` get `status`."""

    route: str
    status: int
    count: int

    def matches(self, route_name: str, path: str) -> bool:
        """True when the route's operationId equals the pattern or the path contains it."""
        return self.route == route_name or self.route in path


@dataclass
class Decision:
    """What the guard decided for one request."""

    kind: str  # "ok", "throttle", "fault", "fail_next"
    status: int = 200
    retry_after: int = 0
    fault: str = ""


@dataclass
class Stats:
    """Counters served by GET /_emulator/stats."""

    started_at: float = field(default_factory=time.time)
    requests_total: int = 0
    requests_by_route: Counter[str] = field(default_factory=Counter)
    requests_by_status: Counter[str] = field(default_factory=Counter)
    accepted_total: int = 0
    throttled_total: int = 0
    faults_injected_total: int = 0
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    fail_next_total: int = 0
    operations_total: int = 0
    operation_errors_total: int = 0
    points_total: int = 0
    runs_created_total: int = 0
    bytes_uploaded_total: int = 0
    per_second: dict[int, list[int]] = field(default_factory=dict)

    def record_second(self, accepted: bool) -> None:
        """Count a budgeted request in its wall-clock second (accepted or throttled)."""
        second = int(time.time())
        if accepted:
            self.accepted_total += 1
        row = self.per_second.setdefault(second, [0, 0])
        row[0 if accepted else 1] += 1
        if len(self.per_second) > RATE_HISTORY_SECONDS:
            for old in sorted(self.per_second)[: len(self.per_second) - RATE_HISTORY_SECONDS]:
                del self.per_second[old]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot."""
        return {
            "started_at": self.started_at,
            "requests_total": self.requests_total,
            "requests_by_route": dict(self.requests_by_route),
            "requests_by_status": dict(self.requests_by_status),
            "accepted_total": self.accepted_total,
            "throttled_total": self.throttled_total,
            "faults_injected_total": self.faults_injected_total,
            "faults_by_kind": dict(self.faults_by_kind),
            "fail_next_total": self.fail_next_total,
            "operations_total": self.operations_total,
            "operation_errors_total": self.operation_errors_total,
            "points_total": self.points_total,
            "runs_created_total": self.runs_created_total,
            "bytes_uploaded_total": self.bytes_uploaded_total,
            "requests_per_second": [[sec, acc, thr] for sec, (acc, thr) in sorted(self.per_second.items())],
        }


class Guard:
    """Decides, before a request is processed, whether it is throttled or fails on purpose.

    Order: an exhausted budget answers 429 (not counted against the budget); an accepted request
    may then hit a `fail_next` rule or a random fault drawn from a seeded RNG, so a run with the
    same seed and request sequence fails the same requests.
    """

    def __init__(self, rate_limit: float | None, fault_rate: float, seed: int | None) -> None:
        self.limiter: SlidingWindowLimiter | None = None
        self.fault_rate = 0.0
        self.rng = random.Random(seed)
        self.fail_next: list[FailNext] = []
        self.latency_ms = 0.0
        self.stats = Stats()
        self.configure(rate_limit=rate_limit, fault_rate=fault_rate)

    def configure(self, *, rate_limit: float | None, fault_rate: float) -> None:
        """Change the budget (None: unlimited) and the fault share (0..1)."""
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if rate_limit is None or rate_limit <= 0:
            self.limiter = None
        elif self.limiter is None or self.limiter.rate != rate_limit:
            self.limiter = SlidingWindowLimiter(rate_limit)
        self.fault_rate = fault_rate

    @property
    def rate_limit(self) -> float | None:
        """The current budget in requests per second, None when unlimited."""
        return self.limiter.rate if self.limiter else None

    def add_fail_next(self, rule: FailNext) -> None:
        """Queue a targeted failure rule."""
        self.fail_next.append(rule)

    def decide(self, route_name: str, path: str) -> Decision:
        """Decide the fate of one budgeted request and count it."""
        if self.limiter is not None:
            wait = self.limiter.try_acquire()
            if wait > 0:
                self.stats.throttled_total += 1
                self.stats.record_second(accepted=False)
                return Decision("throttle", status=429, retry_after=max(1, min(9, math.ceil(wait))))
        self.stats.record_second(accepted=True)
        for rule in self.fail_next:
            if rule.count > 0 and rule.matches(route_name, path):
                rule.count -= 1
                if rule.count <= 0:
                    self.fail_next.remove(rule)
                self.stats.fail_next_total += 1
                return Decision("fail_next", status=rule.status)
        if self.fault_rate > 0 and self.rng.random() < self.fault_rate:
            kind = self.rng.choice(FAULT_KINDS)
            self.stats.faults_injected_total += 1
            self.stats.faults_by_kind[kind] += 1
            return Decision("fault", status=0 if kind == "drop" else int(kind), fault=kind)
        return Decision("ok")

    def reset_stats(self) -> None:
        """Zero every counter."""
        self.stats = Stats()
