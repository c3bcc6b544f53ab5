"""The shared request budget: one sliding-window limit per Neptune server and workspace.

Built on pyrate-limiter (a maintained limiter library), with its sliding-window log algorithm, which
matches how a server counts requests in any one-second window. Where the budget lives decides who
shares it (``rate_limit_storage``):

* ``memory`` - every thread of one process (``InMemoryBucket``);
* an absolute file path - every process on one host (``SQLiteBucket`` with a file lock);
* ``redis://...`` - every host (``RedisBucket``, atomic Lua script; hosts need synchronised clocks).

Permits are spaced, not handed out in bursts: ``rate`` permits per second become one permit (or a
small group, for high rates) every ``(1 s + margin) / rate``, plus a cap of ``floor(rate)`` per
(1 s + margin). Spacing keeps every second of a busy budget equally full, so a server counting any
one-second window sees a steady rate instead of a burst of ``rate`` followed by an idle gap. The
margin (:data:`WINDOW_MARGIN_MS`) absorbs the jitter between taking a permit and the request
reaching the server: 21 requests of a 20/s budget span at least 1.1 s when granted, so the server's
count goes over its limit only if one of them is delayed by 100 ms more than another.

A waiting caller re-reads the store with a fresh timestamp each time it wakes, so a sleep that
overran (a busy host) never makes a permit look older than it is.
If the store itself fails (Redis down, disk full) the request goes ahead - Neptune's own 429 and the
retry policy still protect the server - and a warning is logged, at most once a minute.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from pyrate_limiter import AbstractBucket, Limiter, Rate, RateItem

from airflow_provider_neptune.hooks.redaction import redact_url

log = logging.getLogger(__name__)

#: Extra milliseconds added to the one-second window, absorbing latency jitter.
WINDOW_MARGIN_MS = 100
#: Spacing target: at high rates permits come in groups of ``rate * SLOT_MS / 1000`` per slot.
SLOT_MS = 250
#: Smallest spacing group: the budgeted requests one task sends in its first 0.3 s (client
#: config, project, run creation, attribute reads, first operations: 13 measured with neptune
#: 1.14). A smaller group makes a lone task queue behind its own start-up.
START_BURST = 13
#: Longest random extra sleep of a waiter, so waiters on one store do not all wake at once.
WAKE_SPREAD_SECONDS = 0.005
#: How long a caller keeps retrying past its timeout while the store's lock is merely busy.
LOCK_GRACE_SECONDS = 0.25
#: Longest wait for a permit before the request is refused with BudgetTimeout.
DEFAULT_ACQUIRE_TIMEOUT = 300.0
_WARN_EVERY_SECONDS = 60.0


class BudgetTimeout(Exception):
    """No permit within the acquire timeout (the budget is exhausted by other tasks)."""


def rates_for(rate_per_second: float, margin_ms: int = WINDOW_MARGIN_MS) -> list[Rate]:
    """pyrate-limiter rates for a per-second budget, tightest interval first.

    Below one request per second: one per ``1/rate`` seconds (+ margin). From two: a group of
    ``rate * SLOT_MS / 1000`` permits, at least START_BURST where the budget holds more, per
    ``group * (1000 + margin) / rate`` ms (spacing), then the cap ``floor(rate)`` per (1 s + margin).
    Between one and two only the cap applies (a spacing shorter than a second would let two
    requests into one second).
    """
    if rate_per_second <= 0:
        raise ValueError("rate_per_second must be > 0")
    if rate_per_second < 1:
        return [Rate(1, math.ceil(1000 / rate_per_second) + margin_ms)]
    cap = Rate(math.floor(rate_per_second), 1000 + margin_ms)
    group = max(1, math.floor(rate_per_second * SLOT_MS / 1000))
    if cap.limit > START_BURST:  # a smaller budget delays a task's start-up whatever the spacing
        group = max(group, START_BURST)
    if group >= cap.limit:
        return [cap]
    spacing = Rate(group, math.ceil(group * (1000 + margin_ms) / rate_per_second))
    return [spacing, cap]


def redis_put_script() -> str:
    """pyrate-limiter's Redis check-and-insert script, counting every entry from the window start on.

    The stock script counts entries between the window start and the caller's own timestamp. A
    caller's timestamp is taken before its script runs, so a process delayed between the two (a busy
    host, a slow network) does not see permits granted meanwhile with later timestamps, and two
    permits can land where one should. Measured with 12 processes on 2 busy cores: 7-9 permits stored
    in a 275 ms window that allows 5 (and 21 in a 1.1 s window that allows 20) with the stock script,
    never more than 5 and 20 with this one. The file store's query already counts this way.
    """
    from pyrate_limiter.buckets.redis_bucket import LuaScript

    stock = "redis.call('ZCOUNT', bucket, window_start, now)"
    if stock not in LuaScript.PUT_ITEM:
        raise RuntimeError("pyrate-limiter's Redis script changed; the request budget cannot use it")
    return LuaScript.PUT_ITEM.replace(stock, "redis.call('ZCOUNT', bucket, window_start, '+inf')")


def storage_kind(storage: str) -> str:
    """'memory', 'redis' or 'file' for a validated ``rate_limit_storage`` value."""
    if storage == "memory":
        return "memory"
    if storage.lower().startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    return "file"


def _table_name(key: str) -> str:
    return "budget_" + "".join(ch if ch.isalnum() else "_" for ch in key)


class RequestBudget:
    """One budget, usable from any thread: :meth:`acquire` blocks until a request may be sent."""

    def __init__(self, key: str, rate_per_second: float, storage: str, *, margin_ms: int = WINDOW_MARGIN_MS):
        self.key = key
        self.pid = os.getpid()
        self.rate_per_second = rate_per_second
        self.storage = storage
        self.kind = storage_kind(storage)
        self.rates = rates_for(rate_per_second, margin_ms)
        self.waited_seconds = 0.0
        self.store_errors = 0
        self._last_warning = 0.0
        self._lock = threading.Lock()
        self._limiter: Limiter | None = None
        self._next_connect = 0.0

    def _get_limiter(self) -> Limiter | None:
        """The limiter, connecting to its store on first use (and again at most every 5 s after a failure)."""
        if self._limiter is not None:
            return self._limiter
        with self._lock:
            if self._limiter is None:
                if time.monotonic() < self._next_connect:
                    return None  # store recently unreachable: fail open without hammering it
                try:
                    self._limiter = Limiter(self._make_bucket())
                except Exception:
                    self._next_connect = time.monotonic() + 5.0
                    raise
            return self._limiter

    def _make_bucket(self) -> Any:
        if self.kind == "memory":
            from pyrate_limiter import InMemoryBucket

            return InMemoryBucket(self.rates)
        if self.kind == "file":
            from pyrate_limiter import SQLiteBucket

            Path(self.storage).parent.mkdir(parents=True, exist_ok=True)
            return SQLiteBucket.init_from_file(
                self.rates,
                table=_table_name(self.key),
                db_path=self.storage,
                create_new_table=True,
                use_file_lock=True,
            )
        import redis
        from pyrate_limiter import RedisBucket

        client = redis.Redis.from_url(self.storage, socket_timeout=5, socket_connect_timeout=5)
        return RedisBucket(self.rates, client, self.key, client.script_load(redis_put_script()))

    def describe(self) -> str:
        """Human-readable summary without secrets (a Redis URL's credentials are masked)."""
        return f"{self.rate_per_second:g} req/s in {self.kind} ({redact_url(self.storage)}), key {self.key}"

    def acquire(self, timeout: float = DEFAULT_ACQUIRE_TIMEOUT) -> float:
        """Block until a permit is granted; returns the seconds waited. Raises BudgetTimeout.

        Each try asks the store with the current time and, when refused, sleeps until the store says
        the next permit frees up (plus a few random milliseconds).
        """
        start = time.monotonic()
        deadline = start + max(0.0, timeout)
        try:
            limiter = self._get_limiter()
            if limiter is None:
                raise ConnectionError("store unreachable a moment ago; reconnecting shortly")
            while not limiter.try_acquire(self.key, 1, blocking=True, timeout=0):
                pause = self._time_to_next_permit(limiter)
                now = time.monotonic()
                # A refusal with nothing to wait for means the store's lock was busy: try again
                # shortly, even a little past the timeout.
                if now + pause > (deadline if pause > 0 else deadline + LOCK_GRACE_SECONDS):
                    raise BudgetTimeout(
                        f"no request permit within {timeout:g} s from budget {self.describe()}"
                    )
                time.sleep(pause + random.uniform(0.0, WAKE_SPREAD_SECONDS))
        except BudgetTimeout:
            raise
        except Exception as exc:  # store failure: fail open, loudly
            self._store_failed(exc)
            return time.monotonic() - start
        waited = time.monotonic() - start
        with self._lock:
            self.waited_seconds += waited
        return waited

    def _time_to_next_permit(self, limiter: Limiter) -> float:
        """Seconds until the store has room for one more permit, read with a fresh timestamp."""
        factory = limiter.bucket_factory
        item = factory.wrap_item(self.key, 1)
        if not isinstance(item, RateItem):
            raise TypeError("request budget stores must be synchronous")
        bucket = factory.get(item)
        if not isinstance(bucket, AbstractBucket):
            raise TypeError("request budget stores must be synchronous")
        wait_ms = bucket.waiting(item)
        if not isinstance(wait_ms, int):
            raise TypeError("request budget stores must be synchronous")
        return max(0, wait_ms) / 1000.0

    def _store_failed(self, exc: Exception) -> None:
        with self._lock:
            self.store_errors += 1
            now = time.monotonic()
            warn = now - self._last_warning >= _WARN_EVERY_SECONDS
            if warn:
                self._last_warning = now
        if warn:
            log.warning(
                "Neptune request budget store failed (%s: %s); sending without the shared limit. Budget: %s",
                type(exc).__name__,
                redact_url(str(exc)),
                self.describe(),
            )

    def check(self) -> tuple[bool, str]:
        """Is the store reachable? (for test_connection)."""
        try:
            limiter = self._get_limiter()
            buckets: list[Any] = list(limiter.buckets()) if limiter is not None else []
            if limiter is None:
                raise ConnectionError("store unreachable a moment ago")
            for bucket in buckets:
                if self.kind == "redis":
                    bucket.redis.ping()
                elif self.kind == "file":
                    bucket.count()
        except Exception as exc:
            return False, redact_url(
                f"request budget store {self.describe()} unreachable ({type(exc).__name__}: {exc})"
            )
        return True, f"request budget {self.describe()}"

    def close(self) -> None:
        """Stop the limiter's background leaker and close the store."""
        try:
            if self._limiter is not None:
                self._limiter.close()
        except Exception:  # closing must never fail a task
            log.debug("closing budget %s failed", self.key, exc_info=True)


_BUDGETS: dict[tuple[int, str, float, str], RequestBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def get_budget(key: str, rate_per_second: float, storage: str) -> RequestBudget | None:
    """The process-wide budget for this key, rate and store (None when the rate is 0: no limit).

    Budgets are per process id, so a forked worker never reuses its parent's connections.
    """
    if rate_per_second <= 0:
        return None
    ident = (os.getpid(), key, rate_per_second, storage)
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(ident)
        if budget is None:
            budget = RequestBudget(key, rate_per_second, storage)
            _BUDGETS[ident] = budget
        return budget


def close_budgets() -> None:
    """Close every budget of this process (tests and interpreter exit)."""
    with _BUDGETS_LOCK:
        budgets = [b for (pid, *_), b in _BUDGETS.items() if pid == os.getpid()]
        _BUDGETS.clear()
    for budget in budgets:
        budget.close()
