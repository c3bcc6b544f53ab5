"""Metric logging of a Neptune hook: validation, the resume plan, batching, delivery and read-back.

A retried task sends only what the server lacks (same step and value counts as held), and every point
sent is read back and compared by step and value before ``log_metrics`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_provider_neptune.exceptions import NeptuneDeliveryError, NeptuneStepConflictError
from airflow_provider_neptune.hooks import delivery
from airflow_provider_neptune.hooks.points import as_float_list, strictly_increasing
from airflow_provider_neptune.hooks.reads import SeriesReads
from airflow_provider_neptune.hooks.series import SeriesReader
from airflow_provider_neptune.hooks.server_rules import counter_delta

#: Points per ``extend()`` call (the client splits them into operations of 100 points).
EXTEND_BATCH = 1000
#: Series read back at once after sending, when there is much to read.
READ_BACK_THREADS = 4
#: Fewer points sent than this are read back in the caller's thread: parallel reads save little on a
#: page or two per series, and every call that starts threads grows the process (each thread gets a
#: malloc arena; a 20 MB metric file logged in 46 chunks peaked 12 MB higher with threads).
PARALLEL_READ_POINTS = 50_000
#: Per series: (values, steps, timestamps or None), validated.
Plan = dict[str, tuple[list[float], list[float], list[float] | None]]


def _per_series(
    spec: Mapping[str, Sequence[float]] | Sequence[float] | None, path: str
) -> Sequence[float] | None:
    """The steps (or timestamps) of one series: its own from a mapping, else the shared sequence."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(path)
    return spec


class MetricLogging(SeriesReads):
    """``log_metrics``: validate, skip what the server holds, send in batches, verify every point."""

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, Sequence[float]],
        steps: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
        timestamps: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
        *,
        resume: bool = True,
        progress: Callable[[int, int], None] | None = None,
        delivery_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Append float series to a run, skipping points the server already holds, and verify delivery.

        ``steps`` default to 0..n-1 per series. With ``resume`` a point at or below its series' last
        step on the server counts as delivered only when the server holds that step with the same
        value (so a retried task sends nothing twice); any other such point fails the call before
        anything is sent (NeptuneStepConflictError: Neptune series only grow). After sending, every
        point is read back and compared by step and value. Raises ValueError for bad input (see
        :func:`bound_problem` for the step and timestamp bounds) and NeptuneDeliveryError when
        anything did not arrive.
        """
        started = time.monotonic()
        plan: Plan = {}
        for path, raw_values in metrics.items():
            values = as_float_list(path, "value", raw_values)
            raw_steps = _per_series(steps, path)
            step_list = (
                as_float_list(path, "step", raw_steps)
                if raw_steps is not None
                else [float(i) for i in range(len(values))]
            )
            raw_ts = _per_series(timestamps, path)
            ts_list = as_float_list(path, "timestamp", raw_ts) if raw_ts is not None else None
            if len(step_list) != len(values):
                raise ValueError(f"series {path!r}: {len(values)} values but {len(step_list)} steps")
            if ts_list is not None and len(ts_list) != len(values):
                raise ValueError(f"series {path!r}: {len(values)} values but {len(ts_list)} timestamps")
            if not strictly_increasing(step_list):
                index = next(i for i in range(1, len(step_list)) if step_list[i] <= step_list[i - 1])
                raise ValueError(
                    f"series {path!r}: step at index {index} ({step_list[index]:g}) is not greater "
                    f"than the previous step ({step_list[index - 1]:g}); steps must strictly increase"
                )
            plan[path] = (values, step_list, ts_list)

        settings = self.settings
        before = self.counters
        total_points = sum(len(v) for v, _, _ in plan.values())
        timeout = (
            delivery_timeout if delivery_timeout is not None else self._default_delivery_timeout(total_points)
        )
        server_side = settings.mode in ("async", "sync")
        skipped = 0
        sent = 0
        reads = 0
        sync_errors: list[str] = []
        expected: dict[str, float] = {}
        with self.get_run(run_id) as run:
            known: dict[str, float | None] = {}
            counts: dict[str, int] = {}
            if server_side:
                # Earlier operations of this handle first, so the server's series are current.
                self.wait_for_delivery(run, timeout=timeout)
                if resume:
                    known, counts, skipped, reads = self._resume_plan(run, run_id, plan, started)
            to_send = sum(len(v) for v, _, _ in plan.values())
            if progress is not None:
                progress(0, to_send)
            from neptune.common.exceptions import NeptuneException

            for path, (values, step_list, ts_list) in plan.items():
                for start in range(0, len(values), EXTEND_BATCH):
                    end = min(start + EXTEND_BATCH, len(values))
                    try:
                        with self._translate_errors(f"Logging {path!r} to run {run_id}"):
                            run[path].extend(
                                values[start:end],
                                steps=step_list[start:end],
                                timestamps=ts_list[start:end] if ts_list is not None else None,
                            )
                    except NeptuneException as exc:  # sync mode reports operation errors here
                        sync_errors.append(f"{path}: {delivery.short_error(exc)}")
                        break
                    sent += end - start
                    expected[path] = step_list[end - 1]
                    if progress is not None:
                        progress(sent, to_send)
            policy = self.register_transport()
            if policy is not None:
                policy.counters.add(points=sent)
            last_steps: dict[str, float | None] = dict(expected)
            if server_side:
                planned = {path: step_list[-1] for path, (_, step_list, _) in plan.items() if step_list}
                read_back_requests: list[int] = []

                def read_back() -> tuple[dict[str, float | None], dict[str, delivery.Shortfall]]:
                    return self._read_back(run, plan, counts, known, read_back_requests)

                server = self._verify(
                    run,
                    run_id=run_id,
                    timeout=timeout,
                    expected_last_steps=planned,
                    read_last_steps=lambda paths: self._last_steps_on(run, paths),
                    extra_errors=sync_errors,
                    read_back=read_back,
                )
                reads += sum(read_back_requests)
                last_steps = {path: server.get(path, known.get(path)) for path in plan}
            elif sync_errors:
                raise NeptuneDeliveryError(
                    f"Neptune rejected data for run {run_id}: " + "; ".join(sync_errors), run_id=run_id
                )
        after = self.counters
        summary: dict[str, Any] = {
            "points_sent": sent,
            "points_skipped": skipped,
            "requests": after["requests"] - before["requests"],
            "retries": after["retries"] - before["retries"],
            "throttled": after["throttled"] - before["throttled"],
            "last_steps": last_steps,
            "read_requests": reads,
        }
        self._report(f"log_metrics run {run_id}", counter_delta(before, after))
        return summary

    def _resume_plan(
        self,
        run: Any,
        run_id: str,
        plan: Plan,
        since: float,
    ) -> tuple[dict[str, float | None], dict[str, int], int, int]:
        """Before sending: each series' last step and point count on the server.

        The points at or below a series' last step are dropped from ``plan`` when the server holds each
        of them (same step, same value); otherwise NeptuneStepConflictError names the series and the
        first such steps, and nothing is sent. Costs one request for all series (none when the handle
        was opened by this call after ``since``: the client's own read of the run's attributes then
        holds every last step), plus per series whose points overlap the server's one per READ_PAGE
        points of the overlap and a few to find it; a series without overlap costs nothing here.
        Returns (last steps, counts, points skipped, requests).
        """
        listed = delivery.tracker_of(run).take_opening_series(since)
        known = self._last_steps_on(run, list(plan), listed)
        requests = 0 if listed is not None else 1
        counts: dict[str, int] = {}
        skipped = 0
        conflicts: dict[str, tuple[float, delivery.Shortfall]] = {}
        for path, (values, step_list, ts_list) in list(plan.items()):
            last = known.get(path)
            if last is None:
                counts[path] = 0
                continue
            reader = SeriesReader(run, path)
            with self._translate_errors(f"Reading {path!r} of run {run_id}"):
                overlap = sum(1 for step in step_list if step <= last)  # a prefix: steps increase
                if overlap:
                    held = dict(reader.between(step_list[0], step_list[overlap - 1]))
                    sent_before = list(zip(step_list[:overlap], values[:overlap], strict=True))
                    lacking = delivery.shortfall(sent_before, held, last)
                    if lacking is not None:
                        conflicts[path] = (last, lacking)
                    skipped += overlap
                    plan[path] = (
                        values[overlap:],
                        step_list[overlap:],
                        ts_list[overlap:] if ts_list is not None else None,
                    )
                    counts[path] = reader.total or 0
                # No overlap: no read now; the read-back finds the steps sent (one read while the
                # series fits in one page).
            requests += reader.requests
        if conflicts:
            described = "; ".join(
                f"series {path!r} holds points up to step {last:g}: {lacking.describe()}"
                for path, (last, lacking) in sorted(conflicts.items())
            )
            raise NeptuneStepConflictError(
                f"Neptune run {run_id}: nothing was sent; points at or below a series' last step count as "
                f"delivered only when the server holds the same step with the same value, and Neptune "
                f"series only grow, so these can never be delivered: {described}. Log them with steps "
                "above the last step, or to another series or run",
                run_id=run_id,
                missing={path: (last, lacking.sent_last_step) for path, (last, lacking) in conflicts.items()},
            )
        return known, counts, skipped, requests

    def _read_back(
        self,
        run: Any,
        plan: Mapping[str, tuple[list[float], list[float], list[float] | None]],
        counts: Mapping[str, int],
        known: Mapping[str, float | None],
        requests: list[int],
    ) -> tuple[dict[str, float | None], dict[str, delivery.Shortfall]]:
        """Compare every point meant to be sent with the server's points added since :meth:`_resume_plan`.

        One request per READ_PAGE points added to a series (at least one per series sent to); without
        counts from before sending (``resume=False``) the steps sent are found by a binary search.
        Up to READ_BACK_THREADS series are read at once (the server's work and the decoding overlap)
        when PARALLEL_READ_POINTS or more were sent.
        Returns the server's last step per series and what each series lacks.
        """

        def read(path: str, step_list: list[float]) -> tuple[list[tuple[float, float]], float | None, int]:
            reader = SeriesReader(run, path)
            with self._translate_errors(f"Reading {path!r} back"):
                if path in counts:
                    added = reader.after(counts[path])
                    return added, (added[-1][0] if added else known.get(path)), reader.requests
                # no count from before sending (resume=False): find the steps sent
                added = reader.between(step_list[0], step_list[-1])
                return added, reader.last_step(), reader.requests

        sent = [(path, values, step_list) for path, (values, step_list, _) in plan.items() if step_list]
        threads = min(READ_BACK_THREADS, len(sent))
        if threads > 1 and sum(len(step_list) for _, _, step_list in sent) >= PARALLEL_READ_POINTS:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                reads = [pool.submit(read, path, step_list) for path, _, step_list in sent]
                results = [future.result() for future in reads]
        else:
            results = [read(path, step_list) for path, _, step_list in sent]
        last_steps: dict[str, float | None] = {path: known.get(path) for path in plan}
        shortfalls: dict[str, delivery.Shortfall] = {}
        for (path, values, step_list), (added, last_step, used) in zip(sent, results, strict=True):
            last_steps[path] = last_step
            requests.append(used)
            lacking = delivery.shortfall(list(zip(step_list, values, strict=True)), dict(added), last_step)
            if lacking is not None:
                shortfalls[path] = lacking
        return last_steps, shortfalls
