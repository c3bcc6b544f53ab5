"""NeptuneLogMetricsOperator: validate many metric series, then log them through the hook.

Validation runs before anything is sent (NaN and infinities right after rendering); the hook batches,
resumes by skipping the points the server holds with the same step and value (a retried task adds no
duplicate and leaves no gap) and reads back every point it sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.exceptions import NeptuneSettingsError, NeptuneStepConflictError
from airflow_provider_neptune.links import NeptuneRunLink, record_run_link

if TYPE_CHECKING:
    import logging

    import jinja2
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


def _non_finite(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """(location, number) of every NaN or infinity inside lists and mappings of ``value``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{where} index {index}")


def _as_text(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by its text ("nan", "inf"), which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {key: _as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_text(item) for item in value]
    return value


def rendered_problems(metrics: Any, steps: Any, timestamps: Any) -> list[str]:
    """Every NaN or infinity in rendered metrics, steps and timestamps, named by series and index."""
    found: list[tuple[str, float]] = []
    if isinstance(metrics, Mapping):
        for path, entry in metrics.items():
            if isinstance(entry, Mapping):
                for key, column in entry.items():
                    found.extend(_non_finite(column, f"series {path!r} {key}"))
            else:
                found.extend(_non_finite(entry, f"series {path!r}"))
    for name, field in (("steps", steps), ("timestamps", timestamps)):
        if isinstance(field, Mapping):
            for path, column in field.items():
                found.extend(_non_finite(column, f"series {path!r} {name}"))
        else:
            found.extend(_non_finite(field, name))
    return [f"{where}: {number!r} is not finite" for where, number in found]


class NeptuneLogMetricsOperator(BaseOperator):
    """Log many metric series to a run at once, from a mapping, XCom, or a JSON / CSV / Parquet file.

    NaN, Inf, non-numeric values and steps that do not strictly increase fail the task before anything
    is sent, with a message naming the series, the index and the value; with ``skip_invalid=True``
    they are skipped and counted. Returns the hook's summary (``points_sent``, ``points_skipped``,
    ``requests``, ``retries``, ``throttled``, ``last_steps``, ``read_requests``) plus ``points_invalid``
    and ``series``.

    :param run_id: the run's ``sys/id`` (templated), e.g. ``"{{ ti.xcom_pull('create_run') }}"``.
    :param metrics: ``{"train/loss": [0.9, 0.7], ...}`` or ``{"train/loss": {"values": [...],
        "steps": [...], "timestamps": [...]}}`` (templated; JSON or Python-literal text such as a
        rendered ``{{ ti.xcom_pull('train') }}`` is parsed back, and an XComArg works directly).
    :param metrics_path: path of a .json, .csv or .parquet file instead of ``metrics`` (templated).
    :param steps: one shared step sequence or ``{path: steps}`` (templated); without steps the point
        at index i gets step i, so give steps when appending to a series that already has points.
    :param timestamps: unix seconds or ISO-8601 strings, shared or ``{path: timestamps}`` (templated).
    :param skip_invalid: skip and count invalid points instead of failing.
    :param resume: skip points the server already holds with the same step and value (what makes
        retries safe); other points at or below a series' last step fail the task, nothing sent.
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

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then check for NaN and infinities before Airflow stores the rendered fields.

        Airflow's upload of rendered fields would fail on them ("Out of range float values are not JSON
        compliant") without naming a series. They fail the task here naming series and index; with
        ``skip_invalid`` they become text ("nan"), skipped and counted like any invalid point.
        """
        super().render_template_fields(context, jinja_env)
        problems = rendered_problems(self.metrics, self.steps, self.timestamps)
        if not problems:
            return
        if self.skip_invalid:
            self.metrics = _as_text(self.metrics)
            self.steps = _as_text(self.steps)
            self.timestamps = _as_text(self.timestamps)
            return
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise AirflowFailException(
            f"{len(problems)} invalid metric point(s) in the rendered input; nothing was sent "
            f"(set skip_invalid=True to skip them):\n  {shown}{more}"
        )

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
            try:
                summary = dict(
                    hook.log_metrics(
                        run_id, metrics, steps, timestamps, resume=self.resume, progress=progress
                    )
                )
            except NeptuneSettingsError:
                raise
            except (ValueError, NeptuneStepConflictError) as exc:  # a retry would fail the same way
                raise AirflowFailException(str(exc)) from exc
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
