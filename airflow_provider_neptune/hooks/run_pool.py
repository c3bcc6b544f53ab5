"""A per-process pool of open neptune run handles (least recently used evicted first).

Opening a run costs several requests (bootstrap, project lookup, create/get, attributes) and, in
async mode, a background thread and a disk queue. Opening the same run twice in one process would
double all of that and give two independent queues for one run. The pool hands out one handle per
(server, token, project, mode, run), found by ``sys/id`` or by custom run id, keeps at most
``capacity`` idle handles, stops evicted handles with a time bound, and stops everything at
interpreter exit (registered after each open, so it runs before neptune's own unbounded exit hook).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_neptune.hooks.delivery import prepare_stop

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 8
DEFAULT_STOP_SECONDS = 30.0

PoolKey = tuple[Hashable, ...]


@dataclass
class _Entry:
    run: Any
    keys: set[PoolKey] = field(default_factory=set)
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class RunPool:
    """Thread-safe LRU pool of run handles, keyed by several aliases per run."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        stop_seconds: float = DEFAULT_STOP_SECONDS,
        drain: Callable[[Any, float], Any] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.stop_seconds = stop_seconds
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # id(run) -> entry, LRU first
        self._aliases: dict[PoolKey, int] = {}
        self._lock = threading.RLock()
        self._opening: dict[PoolKey, threading.Lock] = {}
        self._pid = os.getpid()
        #: Called as ``drain(run, seconds)`` before a handle is stopped (the hook waits for its queue).
        self.drain = drain
        self.opened = 0
        self.reused = 0
        self.closed = 0

    def _check_fork(self) -> None:
        # A forked child must not stop (or use) its parent's handles.
        if os.getpid() != self._pid:
            self._entries.clear()
            self._aliases.clear()
            self._opening.clear()
            self._pid = os.getpid()

    def __len__(self) -> int:
        with self._lock:
            self._check_fork()
            return len(self._entries)

    def get(self, key: PoolKey) -> Any | None:
        """The pooled handle for a key without taking it, or None."""
        with self._lock:
            self._check_fork()
            ident = self._aliases.get(key)
            return self._entries[ident].run if ident is not None else None

    def acquire(
        self,
        key: PoolKey | None,
        opener: Callable[[], Any],
        aliases_of: Callable[[Any], Iterable[PoolKey]],
    ) -> Any:
        """Return the pooled handle for ``key`` or open one with ``opener`` (``key`` None: always open).

        ``aliases_of(run)`` gives every key the new handle is also known by (e.g. its sys/id).
        Call :meth:`release` when done.
        """
        if key is not None:
            run = self._take(key)
            if run is not None:
                return run
            with self._lock:
                gate = self._opening.setdefault(key, threading.Lock())
            with gate:  # one opener per key; others wait and reuse
                run = self._take(key)
                if run is not None:
                    return run
                run = opener()
                self._add(run, [key, *aliases_of(run)])
            with self._lock:
                self._opening.pop(key, None)
        else:
            run = opener()
            self._add(run, list(aliases_of(run)))
        self._evict_idle()
        return run

    def _take(self, key: PoolKey) -> Any | None:
        with self._lock:
            self._check_fork()
            ident = self._aliases.get(key)
            if ident is None:
                return None
            entry = self._entries[ident]
            entry.users += 1
            entry.last_used = time.monotonic()
            self._entries.move_to_end(ident)
            self.reused += 1
            return entry.run

    def _add(self, run: Any, keys: list[PoolKey]) -> None:
        with self._lock:
            self._check_fork()
            entry = _Entry(run=run, keys=set(keys), users=1)
            self._entries[id(run)] = entry
            for key in keys:
                self._aliases[key] = id(run)
            self.opened += 1
        # Re-register so this pool's exit hook runs before neptune's own (atexit is LIFO).
        atexit.unregister(self.close_all)
        atexit.register(self.close_all)

    def add_alias(self, run: Any, key: PoolKey) -> None:
        """Make a pooled handle findable by one more key."""
        with self._lock:
            entry = self._entries.get(id(run))
            if entry is not None:
                entry.keys.add(key)
                self._aliases[key] = id(run)

    def release(self, run: Any) -> None:
        """Give a handle back; it stays open for reuse until evicted or closed."""
        with self._lock:
            entry = self._entries.get(id(run))
            if entry is not None:
                entry.users = max(0, entry.users - 1)
                entry.last_used = time.monotonic()
        self._evict_idle()

    def _evict_idle(self) -> None:
        victims: list[Any] = []
        with self._lock:
            overflow = len(self._entries) - self.capacity
            for ident in list(self._entries):
                if overflow <= 0:
                    break
                entry = self._entries[ident]
                if entry.users == 0:
                    victims.append(self._remove(ident).run)
                    overflow -= 1
        for run in victims:
            log.info("Run pool full (%d): closing least recently used run handle", self.capacity)
            self._stop(run, self.stop_seconds)

    def _remove(self, ident: int) -> _Entry:
        entry = self._entries.pop(ident)
        for key in entry.keys:
            if self._aliases.get(key) == ident:
                del self._aliases[key]
        return entry

    def remove(self, run: Any) -> bool:
        """Take a handle out of the pool without stopping it (the caller stops it)."""
        with self._lock:
            if id(run) in self._entries:
                self._remove(id(run))
                return True
            return False

    def _stop(self, run: Any, seconds: float) -> None:
        try:
            if self.drain is not None:
                # Drain first, so stop() does not close the queue under a request still in flight.
                deadline = time.monotonic() + seconds
                self.drain(run, 0.7 * seconds)
                seconds = max(1.0, deadline - time.monotonic())
            run.stop(seconds=seconds)
        except Exception:  # stopping one handle must not prevent closing the others
            log.warning("Stopping a pooled Neptune run handle failed", exc_info=True)
        self.closed += 1

    def close_where(self, predicate: Callable[[PoolKey], bool], seconds: float | None = None) -> int:
        """Stop and drop idle handles having a key that matches ``predicate``; returns how many."""
        victims: list[Any] = []
        with self._lock:
            self._check_fork()
            for ident, entry in list(self._entries.items()):
                if entry.users == 0 and any(predicate(k) for k in entry.keys):
                    victims.append(self._remove(ident).run)
        for run in victims:
            self._stop(run, self.stop_seconds if seconds is None else seconds)
        return len(victims)

    def close_all(self, seconds: float | None = None) -> None:
        """Stop every handle of this process (interpreter exit, tests)."""
        with self._lock:
            self._check_fork()
            runs = [entry.run for entry in self._entries.values()]
            self._entries.clear()
            self._aliases.clear()
        for run in runs:
            self._stop(run, self.stop_seconds if seconds is None else seconds)


#: The pool shared by every hook of this process; it waits for a handle's queue before stopping it.
POOL = RunPool(drain=prepare_stop)
