"""NeptuneLogMetricsOperator: validate many metric series, then log them through the hook.

Validation runs before anything is sent; the hook batches, resumes after the last step the server
holds (a retried task adds no duplicate and leaves no gap) and verifies delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.links import NeptuneRunLink, record_run_link

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context

    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.operators.metric_inputs import MetricBatch

PROGRESS_MIN_POINTS = 1000
"""Inputs with at least this many points get progress lines in the task log."""

_PROGRESS_STEPS = 10


def progress_logger(log: logging.Logger | Any, total: int, label: str) -> Callable[[int, int], None]:
    """Return a callback ``(done, total)`` that logs at each tenth of the way (once per tenth)."""
    logged = {"tenth": 0}

    def report(done: int, total_points: int = total) -> None:
        if total_points <= 0:
            return
        tenth = min(_PROGRESS_STEPS, done * _PROGRESS_STEPS // total_points)
        if tenth > logged["tenth"]:
            logged["tenth"] = tenth
            log.info("%s: %d/%d points (%d%%)", label, done, total_points, 100 * done // total_points)

    return report


class NeptuneLogMetricsOperator(BaseOperator):
    """Log many metric series to a run at once, from a mapping, XCom, or a JSON / CSV / Parquet file.

    NaN, Inf, non-numeric values and steps that do not strictly increase fail the task before anything
    is sent, with a message naming the series, the index and the value; with ``skip_invalid=True``
    they are skipped and counted. Returns the hook's summary (``points_sent``, ``points_skipped``,
    ``requests``, ``retries``, ``throttled``, ``last_steps``) plus ``points_invalid`` and ``series``.

    :param run_id: the run's ``sys/id`` (templated), e.g. ``"{{ ti.xcom_pull('create_run') }}"``.
    :param metrics: ``{"train/loss": [0.9, 0.7], ...}`` or ``{"train/loss": {"values": [...],
        "steps": [...], "timestamps": [...]}}`` (templated; JSON or Python-literal text such as a
        rendered ``{{ ti.xcom_pull('train') }}`` is parsed back, and an XComArg works directly).
    :param metrics_path: path of a .json, .csv or .parquet file instead of ``metrics`` (templated).
    :param steps: one shared step sequence or ``{path: steps}`` (templated); without steps the point
        at index i gets step i, so give steps when appending to a series that already has points.
    :param timestamps: unix seconds or ISO-8601 strings, shared or ``{path: timestamps}`` (templated).
    :param skip_invalid: skip and count invalid points instead of failing.
    :param resume: skip points whose step the server already holds (what makes retries safe).
    :param neptune_conn_id: Airflow connection of type ``neptune``.
    :param project: Neptune project ``workspace/name``; overrides the connection's.
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
        neptune_conn_id: str = "neptune_default",
        project: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        self.neptune_conn_id = neptune_conn_id
        self.project = project

    def make_hook(self) -> NeptuneHook:
        """Return a hook on the operator's connection and project."""
        from airflow_provider_neptune.hooks.neptune import NeptuneHook

        return NeptuneHook(self.neptune_conn_id, project=self.project)

    def load(self) -> MetricBatch:
        """Load and validate the (rendered) input; an invalid input fails the task without retries."""
        # Imported here, on the worker: parsing a DAG file that builds this operator does not need it.
        from airflow_provider_neptune.operators.metric_inputs import MetricInputError, load_metrics

        try:
            batch = load_metrics(
                self.metrics,
                self.metrics_path or None,
                self.steps,
                self.timestamps,
                skip_invalid=self.skip_invalid,
            )
        except MetricInputError as exc:
            raise AirflowFailException(str(exc)) from None
        for problem in batch.problems[:20]:
            self.log.warning("Skipped invalid point: %s", problem)
        if batch.invalid:
            self.log.warning("Skipped %d invalid point(s) in total", batch.invalid)
        if batch.points == 0:
            raise AirflowFailException("No valid metric point to log")
        self.log.info("Validated %d point(s) in %d series", batch.points, len(batch.series))
        return batch

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate the input, log it through the hook, and return the delivery summary."""
        batch = self.load()
        run_id = str(self.run_id)
        series = {path: item for path, item in batch.series.items() if item.values}
        metrics = {path: item.values for path, item in series.items()}
        steps = {path: item.steps for path, item in series.items()}
        timestamps: dict[str, list[float]] | None = None
        if all(item.timestamps is not None for item in series.values()):
            timestamps = {path: list(item.timestamps or ()) for path, item in series.items()}
        progress = (
            progress_logger(self.log, batch.points, f"Logging to {run_id}")
            if batch.points >= PROGRESS_MIN_POINTS
            else None
        )
        hook = self.make_hook()
        try:
            record_run_link(self, context, hook.run_url(run_id))
            summary = dict(
                hook.log_metrics(run_id, metrics, steps, timestamps, resume=self.resume, progress=progress)
            )
        finally:
            hook.close()
        summary["points_invalid"] = batch.invalid
        summary["series"] = len(series)
        self.log.info(
            "Logged to %s: %s point(s) sent, %s already on the server, %s invalid, %s request(s), "
            "%s retr(y/ies), %s throttled",
            run_id,
            summary.get("points_sent"),
            summary.get("points_skipped"),
            batch.invalid,
            summary.get("requests"),
            summary.get("retries"),
            summary.get("throttled"),
        )
        return summary
