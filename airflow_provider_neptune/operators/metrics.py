"""NeptuneLogMetricsOperator: validate many metric series, then log them through the hook.

Validation runs before anything is sent (NaN and infinities right after rendering); the hook batches,
resumes by skipping the points the server holds with the same step and value (a retried task adds no
duplicate and leaves no gap) and reads back every point it sent. A CSV or Parquet file is read twice
as a stream (validate, then send chunk by chunk), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.exceptions import MetricInputError, NeptuneSettingsError
from airflow_provider_neptune.links import NeptuneRunLink, record_run_link
from airflow_provider_neptune.operators.base import NeptuneBaseOperator

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_provider_neptune.core.metric_inputs import MetricBatch, MetricScan, MetricSource

PROGRESS_MIN_POINTS = 1000
"""Inputs with at least this many points get progress lines in the task log."""

DEFAULT_CHUNK_POINTS = 10_000
"""Points of a file handed to the hook per call: bounds the memory a large file takes while it is
logged (the neptune client holds about 1 KB per point of a request it builds; benchmark 7)."""

_SUMMED = ("points_sent", "points_skipped", "requests", "retries", "throttled", "read_requests")


class NeptuneLogMetricsOperator(NeptuneBaseOperator):
    """Log many metric series to a run at once, from a mapping, XCom, or a JSON / CSV / Parquet file.

    NaN, Inf, non-numeric values and steps that do not strictly increase fail the task before anything
    is sent, with a message naming the series, the index and the value (and, for a file, the line
    or row and the column); with ``skip_invalid=True`` they are skipped and counted. Points from a
    file go to the hook in chunks of ``chunk_points``. Returns the hook's summary summed over the
    chunks (``points_sent``, ``points_skipped``, ``requests``, ``retries``, ``throttled``,
    ``read_requests``, ``last_steps``) plus ``points_invalid``, ``series`` and ``chunks``.

    :param run_id: the run's ``sys/id`` (templated), e.g. ``"{{ ti.xcom_pull('create_run') }}"``.
    :param metrics: ``{"train/loss": [0.9, 0.7], ...}`` or ``{"train/loss": {"values": [...],
        "steps": [...], "timestamps": [...]}}`` (templated; JSON or Python-literal text such as a
        rendered ``{{ ti.xcom_pull('train') }}`` is parsed back, and an XComArg works directly).
    :param metrics_path: path of a .json, .csv or .parquet file instead of ``metrics`` (templated).
        CSV and Parquet are streamed; JSON is parsed whole and limited to 64 MiB.
    :param steps: one shared step sequence or ``{path: steps}`` (templated); without steps the point
        at index i gets step i, so give steps when appending to a series that already has points.
    :param timestamps: unix seconds or ISO-8601 strings, shared or ``{path: timestamps}`` (templated).
    :param skip_invalid: skip and count invalid points instead of failing.
    :param resume: skip points the server already holds with the same step and value (what makes
        retries safe); other points at or below a series' last step fail the task, nothing sent.
    :param chunk_points: points of a file per call to the hook (default 10,000): a file is read,
        validated and sent a chunk at a time; each call resumes and verifies, so a retried task stays
        idempotent. A mapping (already in memory) goes in one call.
    :param neptune_conn_id: see :class:`~airflow_provider_neptune.operators.base.NeptuneBaseOperator`,
        like ``project`` and ``mode``.
    """

    template_fields = ("run_id", "metrics", "metrics_path", "steps", "timestamps", "project")
    operator_extra_links = (NeptuneRunLink(),)
    ui_color = "#cfe3f7"

    def __init__(
        self,
        *,
        run_id: str,
        metrics: Any = None,
        metrics_path: str | None = None,
        steps: Any = None,
        timestamps: Any = None,
        skip_invalid: bool = False,
        resume: bool = True,
        chunk_points: int = DEFAULT_CHUNK_POINTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(chunk_points, bool) or not isinstance(chunk_points, int) or chunk_points < 1:
            raise ValueError(f"chunk_points must be a positive integer, got {chunk_points!r}")
        if metrics is None and not metrics_path:
            raise ValueError("NeptuneLogMetricsOperator needs metrics or metrics_path")
        if metrics is not None and metrics_path:
            raise ValueError("NeptuneLogMetricsOperator takes metrics or metrics_path, not both")
        self.run_id = run_id
        self.metrics = metrics
        self.metrics_path = metrics_path
        self.steps = steps
        self.timestamps = timestamps
        self.skip_invalid = skip_invalid
        self.resume = resume
        self.chunk_points = chunk_points

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then check for NaN and infinities before Airflow stores the rendered fields.

        Airflow's upload of rendered fields would fail on them ("Out of range float values are not JSON
        compliant") without naming a series. They fail the task here naming series and index; with
        ``skip_invalid`` they become text ("nan"), skipped and counted like any invalid point.
        """
        from airflow_provider_neptune.core.rendered_metrics import as_text, rendered_problems

        super().render_template_fields(context, jinja_env)
        problems = rendered_problems(self.metrics, self.steps, self.timestamps)
        if not problems:
            return
        if self.skip_invalid:
            self.metrics = as_text(self.metrics)
            self.steps = as_text(self.steps)
            self.timestamps = as_text(self.timestamps)
            return
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise MetricInputError(
            f"{len(problems)} invalid metric point(s) in the rendered input; nothing was sent "
            f"(set skip_invalid=True to skip them):\n  {shown}{more}"
        )

    def load(self) -> tuple[MetricSource, MetricScan]:
        """Open and validate the (rendered) input; an invalid input fails the task without retries.

        A mapping or JSON file is validated whole; a CSV or Parquet file is read once through here
        (nothing kept but per-series state) and read again, chunk by chunk, while it is sent.
        """
        # Imported here, on the worker: parsing a DAG file that builds this operator does not need it.
        from airflow_provider_neptune.core.metric_inputs import open_metric_source

        # A MetricInputError fails the task without retries (it is an AirflowFailException).
        source = open_metric_source(
            self.metrics,
            self.metrics_path or None,
            self.steps,
            self.timestamps,
            skip_invalid=self.skip_invalid,
        )
        scan = source.scan()
        for problem in scan.problems[:20]:
            self.log.warning("Skipped invalid point: %s", problem)
        if scan.invalid:
            self.log.warning("Skipped %d invalid point(s) in total", scan.invalid)
        if scan.points == 0:
            raise MetricInputError(f"No valid metric point to log in {source.description}")
        self.log.info(
            "Validated %d point(s) in %d series of %s", scan.points, scan.series, source.description
        )
        return source, scan

    def _chunks(self, source: MetricSource, scan: MetricScan) -> Iterator[MetricBatch]:
        """The source's chunks; a file that turns bad while it is read again fails the task."""
        return source.chunks(self.chunk_points if source.from_file else max(1, scan.points))

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate the input, log it through the hook chunk by chunk, and return the total summary."""
        from airflow_provider_neptune.core.progress import offset_progress, progress_logger

        source, scan = self.load()
        run_id = str(self.run_id)
        report = (
            progress_logger(self.log, scan.points, f"Logging to {run_id}")
            if scan.points >= PROGRESS_MIN_POINTS
            else None
        )
        summary: dict[str, Any] = dict.fromkeys(_SUMMED, 0)
        last_steps: dict[str, float | None] = {}
        chunks = 0
        done = 0
        with self.closing_hook() as hook:
            record_run_link(self, context, hook.run_url(run_id))
            for chunk in self._chunks(source, scan):
                series = {path: item for path, item in chunk.series.items() if item.values}
                metrics = {path: item.values for path, item in series.items()}
                steps = {path: item.steps for path, item in series.items()}
                timestamps: dict[str, list[float]] | None = None
                if all(item.timestamps is not None for item in series.values()):
                    timestamps = {path: list(item.timestamps or ()) for path, item in series.items()}
                progress = None
                if report is not None:
                    progress = offset_progress(report, done, scan.points)
                try:
                    part = hook.log_metrics(
                        run_id, metrics, steps, timestamps, resume=self.resume, progress=progress
                    )
                except NeptuneSettingsError:
                    raise
                except ValueError as exc:  # a retry would fail the same way
                    raise MetricInputError(str(exc)) from exc
                for key in _SUMMED:
                    summary[key] += int(part.get(key) or 0)
                for path, step in dict(part.get("last_steps") or {}).items():
                    if step is not None or path not in last_steps:
                        last_steps[path] = step
                done += chunk.points
                chunks += 1
        summary["last_steps"] = last_steps
        summary["points_invalid"] = scan.invalid
        summary["series"] = scan.series
        summary["chunks"] = chunks
        self.log.info(
            "Logged to %s: %s point(s) sent, %s already on the server, %s invalid, %s request(s), "
            "%s retr(y/ies), %s throttled, in %d chunk(s)",
            run_id,
            summary["points_sent"],
            summary["points_skipped"],
            scan.invalid,
            summary["requests"],
            summary["retries"],
            summary["throttled"],
            chunks,
        )
        return summary
