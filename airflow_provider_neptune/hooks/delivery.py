"""Verified delivery: proof that what a run handle logged reached the server.

The neptune client can lose data silently: in async mode an operation error is only logged by the
background thread (``ConsumerThread._handle_errors``), and a single HTTP 400 kills that thread, after
which operations pile up in the disk queue while user code sees no exception. This module

* captures the operation errors of a handle (async: a wrapper around the consumer's error handler
  and around its work loop, which also records what killed the thread; sync: the exception the
  call raises, recorded by the hook),
* waits, with a deadline, until the async queue is drained (polling the processor's consumed
  version, never the client's unbounded ``wait()``),
* and reads back what was sent: either the server's last step of each series, or (metric logging)
  every point a call sent, compared step by step and value by value (see :class:`Shortfall`).

Anything wrong raises :class:`NeptuneDeliveryError` naming the run, the series and steps lost, the
operation errors, and where the unsent queue lies on disk (for ``neptune sync``).

It relies on these client internals (neptune 1.x): ``Run._op_processor``, the async processor's
``_consumer``, ``_last_version``, ``_consumed_version``, ``_queue`` and ``data_path``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_neptune.exceptions import NeptuneDeliveryError

log = logging.getLogger(__name__)

_TRACKER_ATTR = "_neptune_provider_tracker"
_POLL_SECONDS = 0.05
_STEP_TOLERANCE = 1e-9
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MAX_ERROR_CHARS = 300


def short_error(error: Any) -> str:
    """One line of an error (the client formats its exceptions with colours and banners)."""
    text = _ANSI.sub("", str(error))
    text = " ".join(re.sub(r"-{3,}", " ", text).split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return f"{type(error).__name__}: {text}" if not isinstance(error, str) else text


@dataclass
class DeliveryTracker:
    """Operation errors and a fatal background-thread error captured for one run handle."""

    errors: list[str] = field(default_factory=list)
    fatal: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    hooked_consumer: int | None = None
    #: (when, float series -> last step) from the attribute list the client read opening the handle.
    opening_series: tuple[float, dict[str, float | None]] | None = None
    #: ``time.monotonic()`` when the hook opened the handle (its field list is that moment's).
    opened_at: float = 0.0

    def take_opening_series(self, since: float) -> dict[str, float | None] | None:
        """The series read when the handle opened, once, and only if it opened after ``since``
        (``time.monotonic()``): nothing this process sends through the handle can be missing from it."""
        with self.lock:
            kept, self.opening_series = self.opening_series, None
        return kept[1] if kept is not None and kept[0] >= since else None

    def add_errors(self, errors: list[Any]) -> None:
        """Record operation errors (messages only)."""
        with self.lock:
            self.errors.extend(short_error(e) for e in errors)

    def take_errors(self) -> list[str]:
        """Return and forget the recorded operation errors."""
        with self.lock:
            taken, self.errors = self.errors, []
            return taken


def real_processor(run: Any) -> Any:
    """The run's operation processor, unwrapping the lazy wrapper used after a fork."""
    processor = getattr(run, "_op_processor", None)
    inner = getattr(processor, "_operation_processor", None)
    if inner is not None:
        return inner
    if processor is not None and type(processor).__name__ == "LazyOperationProcessorWrapper":
        return None  # not started yet: nothing queued
    return processor


def consumer_of(run: Any) -> Any:
    """The async background thread of a run handle, or None in other modes."""
    return getattr(real_processor(run), "_consumer", None)


def consumer_alive(consumer: Any) -> bool:
    """Whether an async thread still sends: alive and in its working loop.

    The thread marks itself stopped just before it ends, so ``is_alive()`` alone can still be True
    for a thread that has died of an error.
    """
    return bool(consumer.is_alive() and consumer.is_running())


def tracker_of(run: Any) -> DeliveryTracker:
    """The tracker of a run handle, attached (and the async consumer wrapped) on first use."""
    tracker: DeliveryTracker | None = getattr(run, _TRACKER_ATTR, None)
    if tracker is None:
        tracker = DeliveryTracker()
        object.__setattr__(run, _TRACKER_ATTR, tracker)
    consumer = consumer_of(run)
    if consumer is not None and tracker.hooked_consumer != id(consumer):
        _wrap_consumer(consumer, tracker)
        tracker.hooked_consumer = id(consumer)
    return tracker


def _wrap_consumer(consumer: Any, tracker: DeliveryTracker) -> None:
    original_handle = consumer._handle_errors
    original_work = consumer.work

    def handle_errors(errors: list[Any]) -> None:
        tracker.add_errors(errors)
        original_handle(errors)

    def work() -> None:
        try:
            original_work()
        except BaseException as exc:
            tracker.fatal = short_error(exc)
            raise

    # Instance attributes shadow the class methods the thread calls as self.work()/self._handle_errors().
    consumer._handle_errors = handle_errors
    consumer.work = work


def queue_path(run: Any) -> str | None:
    """Where the run's operation queue lies on disk (async/offline), or None."""
    processor = real_processor(run)
    path = getattr(processor, "data_path", None) if processor is not None else None
    return str(Path(path).resolve()) if path is not None else None


def sync_hint(path: str | None) -> str:
    """How to upload a left-over queue with the neptune CLI."""
    if not path:
        return ""
    data_dir = Path(path).parent.parent
    if data_dir.name == ".neptune":
        return f"; upload it with `neptune sync --path {data_dir.parent}`"
    return f"; upload it with `neptune sync` from a directory whose .neptune folder holds {data_dir}"


def pending_operations(run: Any) -> int:
    """Operations queued but not yet acknowledged by the server (0 outside async mode)."""
    processor = real_processor(run)
    if processor is None or not hasattr(processor, "_consumed_version"):
        return 0
    return max(0, int(processor._last_version) - int(processor._consumed_version))


def defer_close(run: Any) -> None:
    """Make the client's ``stop()`` close the async queue only once its thread has ended.

    A bounded ``stop(seconds=...)`` closes the queue files even when the background thread is still
    inside a request; when that request then succeeds, the thread writes its acknowledgement to a
    closed file and dies with ``ValueError`` (and the queue on disk no longer says what was sent).
    Deferring the close to a small watcher thread keeps the files consistent for ``neptune sync``.
    """
    processor = real_processor(run)
    consumer = getattr(processor, "_consumer", None)
    if processor is None or consumer is None or not consumer.is_alive():
        return
    if getattr(processor, "_neptune_provider_close_deferred", False):
        return
    original_close = processor.close

    def close_when_thread_ends() -> None:
        def wait_then_close() -> None:
            consumer.join()
            original_close()

        threading.Thread(target=wait_then_close, name="NeptuneProviderDeferredClose", daemon=True).start()

    processor.close = close_when_thread_ends
    processor._neptune_provider_close_deferred = True


def prepare_stop(run: Any, seconds: float) -> DrainResult:
    """Before a bounded stop: wait (bounded) for the queue, and defer closing it behind the thread."""
    result = wait_drained(run, seconds)
    defer_close(run)
    return result


@dataclass
class DrainResult:
    """Outcome of waiting for the async queue."""

    drained: bool
    pending: int
    thread_alive: bool
    waited: float


def wait_drained(run: Any, timeout: float) -> DrainResult:
    """Wait until every queued operation is acknowledged, the thread dies, or the timeout passes."""
    start = time.monotonic()
    processor = real_processor(run)
    consumer = getattr(processor, "_consumer", None)
    if processor is None or consumer is None:
        return DrainResult(True, 0, True, 0.0)
    tracker_of(run)
    with run._lock:
        processor.flush()
    consumer.wake_up()
    deadline = start + max(0.0, timeout)
    woke = time.monotonic()
    while True:
        pending = pending_operations(run)
        alive = consumer_alive(consumer)
        if pending == 0:
            return DrainResult(True, 0, alive, time.monotonic() - start)
        if not alive or time.monotonic() >= deadline:
            return DrainResult(False, pending, alive, time.monotonic() - start)
        if time.monotonic() - woke > 1.0:
            consumer.wake_up()  # the thread sleeps flush_period between batches; keep it busy
            woke = time.monotonic()
        _wait_for_ack(run, processor)


def _wait_for_ack(run: Any, processor: Any) -> None:
    """Sleep until the client's thread acknowledges its whole queue, or at most ``_POLL_SECONDS``.

    The thread notifies the processor's condition (which shares the run's lock) when it has sent
    everything queued; waiting on it ends the wait as the last batch lands instead of up to a poll
    interval later. A client without that condition is polled.
    """
    condition = getattr(processor, "_waiting_cond", None)
    if condition is None:
        time.sleep(_POLL_SECONDS)
        return
    with condition:
        if pending_operations(run):  # checked under the lock the thread acknowledges under
            condition.wait(_POLL_SECONDS)


@dataclass
class Shortfall:
    """The points of one series the server does not hold with the value sent."""

    server_last_step: float | None
    sent_last_step: float
    count: int
    first: list[tuple[float, float, float | None]]
    """Up to :data:`SHOWN_POINTS` of them: (step, value sent, value the server holds or None)."""

    def describe(self) -> str:
        """``3 point(s) not on the server with the value sent (first: step 0 (server has none), ...)``."""
        shown = ", ".join(
            f"step {step:g} (server has {'none' if held is None else f'{held!r} instead of {sent!r}'})"
            for step, sent, held in self.first
        )
        more = f", ... {self.count - len(self.first)} more" if self.count > len(self.first) else ""
        return f"{self.count} point(s) not on the server with the value sent (first: {shown}{more})"


SHOWN_POINTS = 5


def shortfall(
    sent: list[tuple[float, float]], held: Mapping[float, float], server_last_step: float | None
) -> Shortfall | None:
    """Compare points sent with the server's (step -> value); None when every step holds the value sent.

    Values compare exactly: a float64 sent as JSON comes back as the same float64.
    """
    bad = [(step, value, held.get(step)) for step, value in sent if held.get(step) != value]
    if not bad:
        return None
    return Shortfall(server_last_step, sent[-1][0], len(bad), bad[:SHOWN_POINTS])


ReadBack = Callable[[], tuple[dict[str, float | None], dict[str, Shortfall]]]
"""Reads back what a call sent: (server last step per series, shortfall per series that lacks points)."""


def verify_delivery(
    run: Any,
    *,
    run_id: str,
    timeout: float,
    expected_last_steps: Mapping[str, float] | None,
    read_last_steps: Callable[[list[str]], dict[str, float | None]],
    extra_errors: list[str] | None = None,
    read_back: ReadBack | None = None,
) -> dict[str, float | None]:
    """Drain, check errors and the server's copy; raise NeptuneDeliveryError on any loss.

    With ``read_back`` the points sent are compared one by one; otherwise only each series' last step
    is compared with ``expected_last_steps``.
    """
    result = wait_drained(run, timeout)
    tracker = tracker_of(run)
    errors = [*(extra_errors or []), *tracker.take_errors()]
    problems: list[str] = []
    if not result.thread_alive:
        why = f" ({tracker.fatal})" if tracker.fatal else ""
        problems.append(f"the neptune async thread is dead{why}, {result.pending} operation(s) unsent")
    elif not result.drained:
        problems.append(f"{result.pending} operation(s) still unsent after {timeout:g} s")
    if errors:
        shown = "; ".join(errors[:5]) + (f"; ... {len(errors) - 5} more" if len(errors) > 5 else "")
        problems.append(f"the server rejected {len(errors)} operation(s): {shown}")

    server_steps: dict[str, float | None] = {}
    missing: dict[str, tuple[float | None, float | None]] = {}
    if expected_last_steps:
        # Read back unless the server is unreachable (queue stuck while the thread is alive).
        read = False
        shortfalls: dict[str, Shortfall] = {}
        if result.drained or not result.thread_alive:
            try:
                if read_back is not None:
                    server_steps, shortfalls = read_back()
                else:
                    server_steps = read_last_steps(list(expected_last_steps))
                read = True
            except Exception as exc:
                problems.append(f"could not read the series back ({type(exc).__name__}: {exc})")
        described: list[str] = []
        for series, expected in sorted(expected_last_steps.items()):
            got = server_steps.get(series)
            lacking = shortfalls.get(series)
            if lacking is not None:
                missing[series] = (got, float(expected))
                described.append(
                    f"{series}: {lacking.describe()}; server last step "
                    f"{got if got is not None else 'none'}, sent up to {float(expected):g}"
                )
            elif (read_back is None or not read) and (got is None or got + _STEP_TOLERANCE < float(expected)):
                missing[series] = (got, float(expected))
                described.append(
                    f"{series} (server last step {got if got is not None else 'none'}, "
                    f"sent up to {float(expected):g})"
                )
        if described:
            problems.append("not on the server: " + "; ".join(described))

    if problems:
        left_at = queue_path(run) if result.pending else None
        where = f". Unsent data lies on disk at {left_at}{sync_hint(left_at)}" if left_at else ""
        message = f"Neptune delivery failed for run {run_id}: " + "; ".join(problems) + where
        raise NeptuneDeliveryError(message, run_id=run_id, queue_path=left_at, missing=missing, errors=errors)
    return server_steps
