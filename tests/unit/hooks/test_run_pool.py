"""The run pool: one handle per run, aliases, LRU eviction that stops handles, thread safety."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_provider_neptune.hooks.run_pool import RunPool


class FakeRun:
    """Stands in for a neptune Run: the pool only opens, keeps and stops handles."""

    def __init__(self, sys_id: str, fail_stop: bool = False) -> None:
        self.sys_id = sys_id
        self.stopped_with: float | None = None
        self.fail_stop = fail_stop

    def stop(self, *, seconds: float | None = None) -> None:
        self.stopped_with = seconds
        if self.fail_stop:
            raise RuntimeError("stop failed")


def _aliases(run: FakeRun) -> list[tuple[str, ...]]:
    return [("id", run.sys_id)]


def test_same_key_reuses_one_handle() -> None:
    pool = RunPool(capacity=4)
    opened: list[FakeRun] = []

    def opener() -> FakeRun:
        opened.append(FakeRun("RUN-1"))
        return opened[-1]

    a = pool.acquire(("id", "RUN-1"), opener, _aliases)
    pool.release(a)
    b = pool.acquire(("id", "RUN-1"), opener, _aliases)
    pool.release(b)
    assert a is b
    assert len(opened) == 1
    assert (pool.opened, pool.reused) == (1, 1)


def test_custom_id_and_sys_id_find_the_same_handle() -> None:
    pool = RunPool()
    run = pool.acquire(("custom", "my-id"), lambda: FakeRun("RUN-7"), _aliases)
    pool.release(run)
    assert pool.get(("id", "RUN-7")) is run
    again = pool.acquire(("id", "RUN-7"), lambda: pytest.fail("must not open again"), _aliases)
    assert again is run


def test_new_runs_without_key_are_pooled_by_alias() -> None:
    pool = RunPool()
    run = pool.acquire(None, lambda: FakeRun("RUN-9"), _aliases)
    pool.release(run)
    assert pool.get(("id", "RUN-9")) is run


def test_lru_eviction_stops_the_least_recently_used_idle_handle() -> None:
    pool = RunPool(capacity=2, stop_seconds=7)
    runs = {}
    for name in ("A", "B"):
        runs[name] = pool.acquire(("id", name), lambda n=name: FakeRun(n), _aliases)
        pool.release(runs[name])
    pool.release(pool.acquire(("id", "A"), lambda: pytest.fail("reuse"), _aliases))  # A is now most recent
    runs["C"] = pool.acquire(("id", "C"), lambda: FakeRun("C"), _aliases)
    pool.release(runs["C"])
    assert runs["B"].stopped_with == 7  # evicted with the time bound
    assert runs["A"].stopped_with is None
    assert pool.get(("id", "B")) is None
    assert len(pool) == 2
    assert pool.closed == 1


def test_handles_in_use_are_never_evicted() -> None:
    pool = RunPool(capacity=1)
    busy = pool.acquire(("id", "BUSY"), lambda: FakeRun("BUSY"), _aliases)
    other = pool.acquire(("id", "OTHER"), lambda: FakeRun("OTHER"), _aliases)
    assert busy.stopped_with is None  # still in use: kept although the pool is over capacity
    pool.release(other)
    assert other.stopped_with is not None  # the idle one goes first
    assert busy.stopped_with is None
    pool.release(busy)
    assert len(pool) == 1


def test_concurrent_opens_of_one_run_open_it_once() -> None:
    pool = RunPool()
    opened: list[int] = []
    gate = threading.Event()

    def opener() -> FakeRun:
        opened.append(1)
        gate.wait(5)
        return FakeRun("SAME")

    def use() -> FakeRun:
        run = pool.acquire(("id", "SAME"), opener, _aliases)
        pool.release(run)
        return run

    with ThreadPoolExecutor(8) as executor:
        futures = [executor.submit(use) for _ in range(8)]
        while not opened:
            threading.Event().wait(0.01)
        gate.set()
        results = {id(f.result(timeout=10)) for f in futures}
    assert len(opened) == 1
    assert len(results) == 1


def test_close_all_and_close_where_stop_handles() -> None:
    pool = RunPool()
    a = pool.acquire(("s1", "id", "A"), lambda: FakeRun("A"), lambda r: [])
    b = pool.acquire(("s2", "id", "B"), lambda: FakeRun("B", fail_stop=True), lambda r: [])
    pool.release(a)
    pool.release(b)
    assert pool.close_where(lambda key: key[0] == "s1", seconds=3) == 1
    assert a.stopped_with == 3
    assert b.stopped_with is None
    pool.close_all(seconds=2)  # a failing stop does not prevent closing
    assert b.stopped_with == 2
    assert len(pool) == 0


def test_remove_takes_a_handle_out_without_stopping() -> None:
    pool = RunPool()
    run = pool.acquire(("id", "R"), lambda: FakeRun("R"), _aliases)
    assert pool.remove(run)
    assert not pool.remove(run)
    assert run.stopped_with is None
    assert pool.get(("id", "R")) is None


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RunPool(capacity=0)


def test_handles_are_drained_before_they_are_stopped() -> None:
    pool = RunPool()
    order: list[str] = []

    class Recorded(FakeRun):
        def stop(self, *, seconds: float | None = None) -> None:
            order.append(f"stop {seconds is not None and seconds >= 1.0}")

    pool.drain = lambda run, seconds: order.append(f"drain {seconds:.1f}")
    pool.release(pool.acquire(("id", "D"), lambda: Recorded("D"), _aliases))
    pool.close_all(seconds=10)
    assert order == ["drain 7.0", "stop True"]
