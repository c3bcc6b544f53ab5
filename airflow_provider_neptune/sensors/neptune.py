"""Sensors that wait on a Neptune run: a metric meeting a threshold, or the run's own state.

Both poke, reschedule or defer (``deferrable=True``, polled by ``NeptuneConditionTrigger``), read the
run in read-only mode, and fail fast, saying why, when the awaited condition can no longer happen.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_neptune.condition_params import check_metric_condition, check_run_condition
from airflow_provider_neptune.exceptions import NeptuneConditionError, NeptuneTriggerError
from airflow_provider_neptune.links import NeptuneRunLink, record_run_link
from airflow_provider_neptune.operators.base import DEFAULT_CONN_ID, NeptuneHookMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_neptune.core.run_conditions import MetricCondition, Outcome, RunCondition

# run_conditions and the trigger are imported where they are used (on the worker), not at module
# level: a DAG file that only builds the sensors does not pay for them at parse time.


class _NeptuneConditionSensor(NeptuneHookMixin, BaseSensorOperator):
    """Shared poke / defer machinery; subclasses say which condition they wait for.

    The hook, its close policy and ``neptune_conn_id`` / ``project`` mean what they mean on
    :class:`~airflow_provider_neptune.operators.base.NeptuneBaseOperator`; the sensors always read in
    ``read-only`` mode, and their ``mode`` is Airflow's sensor mode (``poke`` or ``reschedule``).
    """

    operator_extra_links = (NeptuneRunLink(),)
    ui_color = "#d6e6f5"

    def __init__(
        self,
        *,
        run_id: str,
        neptune_conn_id: str = DEFAULT_CONN_ID,
        project: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.neptune_conn_id = neptune_conn_id
        self.project = project
        self.deferrable = deferrable

    def build_condition(self) -> MetricCondition | RunCondition:
        """Return the condition from the (rendered) parameters."""
        raise NotImplementedError

    def _hook_mode(self) -> str | None:
        """Sensors only read: their hook is always read-only."""
        return "read-only"

    def _settle(self, outcome: Outcome) -> PokeReturnValue | bool:
        if outcome.status == "failed":
            raise NeptuneConditionError(outcome.message)
        if outcome.status == "met":
            self.log.info("%s", outcome.message)
            return PokeReturnValue(is_done=True, xcom_value=outcome.to_event())
        self.log.info("%s", outcome.message)
        return False

    def poke(self, context: Context) -> PokeReturnValue | bool:
        """Evaluate the condition once; fail (without retries) when it can never be met."""
        return self._settle(self.build_condition().evaluate(self.hook))

    def _record_link(self, context: Context) -> None:
        try:
            record_run_link(self, context, self.hook.run_url(str(self.run_id)))
        except Exception as exc:  # the link is a convenience: never fail the sensor for it
            self.log.warning("No Neptune run link: %s", exc)

    def execute(self, context: Context) -> Any:
        """Poke / reschedule as usual, or check once and defer to the trigger when ``deferrable``."""
        condition = self.build_condition()  # validate rendered parameters before anything else
        self._record_link(context)
        try:
            if not self.deferrable:
                return super().execute(context)
            settled = self._settle(condition.evaluate(self.hook))
            if isinstance(settled, PokeReturnValue):
                return settled.xcom_value
        finally:
            self.close_hook()
        from airflow_provider_neptune.triggers.neptune import NeptuneConditionTrigger

        self.defer(
            trigger=NeptuneConditionTrigger(
                condition=condition.to_dict(),
                neptune_conn_id=self.neptune_conn_id,
                project=self.project,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return what was observed, or fail with the trigger's reason."""
        self._record_link(context)
        status = event.get("status")
        message = str(event.get("message", ""))
        if status == "met":
            self.log.info("%s", message)
            return event
        if status == "failed":
            raise NeptuneConditionError(message)
        raise NeptuneTriggerError(f"Neptune trigger failed: {message}")


class NeptuneMetricSensor(_NeptuneConditionSensor):
    """Wait until a run's metric meets a threshold; fail fast once the run finished without meeting it.

    The observed value is the series' last value (``value_mode="last"``), the best of its last
    ``window`` points (``"best"``: max for ``>``/``>=``, min for ``<``/``<=``), or a plain field
    (``"field"``). A missing series counts as "not yet met" until the run is finished.

    :param run_id: the run's ``sys/id`` (templated), e.g. ``"{{ ti.xcom_pull('create_run') }}"``.
    :param path: series or field path, e.g. ``"val/accuracy"`` (templated).
    :param condition: one of ``>``, ``>=``, ``<``, ``<=``, ``==``.
    :param threshold: value to compare with (templated; numeric unless the condition is ``==``).
    :param value_mode: ``"last"``, ``"best"`` or ``"field"``.
    :param window: number of most recent points ``"best"`` looks at.
    :param finished_when: when the run counts as finished, ending the wait with a failure:
        ``"stopped"`` (``NeptuneStopRunOperator`` wrote ``airflow/state``), ``"inactive"``
        (``sys/state`` is Inactive: for runs written by one process outside Airflow; between
        Airflow tasks a run is inactive too) or None (only the sensor timeout ends the wait).
        ``sys/failed=True`` (a crashed script) counts as finished in both modes.
    :param neptune_conn_id: Airflow connection of type ``neptune``.
    :param project: Neptune project ``workspace/name``; overrides the connection's.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields = ("run_id", "path", "threshold", "project")

    def __init__(
        self,
        *,
        run_id: str,
        path: str,
        condition: str,
        threshold: float | int | str | bool,
        value_mode: str = "last",
        window: int = 1,
        finished_when: str | None = "stopped",
        **kwargs: Any,
    ) -> None:
        super().__init__(run_id=run_id, **kwargs)
        self.path = path
        self.condition = condition
        self.threshold = threshold
        self.value_mode = value_mode
        self.window = window
        self.finished_when = finished_when
        # Catch typos at DAG parse time; templated values are checked again once rendered.
        check_metric_condition(
            run_id="parse-check",
            path="parse/check",
            condition=condition,
            threshold=0.0 if condition != "==" else threshold,
            value_mode=value_mode,
            window=window,
            finished_when=finished_when,
        )

    def _threshold(self) -> Any:
        threshold = self.threshold
        if isinstance(threshold, str) and self.condition != "==":
            try:
                return float(threshold)
            except ValueError:
                raise NeptuneConditionError(
                    f"threshold rendered to {threshold!r}, which is not a number"
                ) from None
        return threshold

    def build_condition(self) -> MetricCondition:
        """Return the metric condition from the rendered parameters."""
        from airflow_provider_neptune.core.run_conditions import MetricCondition

        return MetricCondition(
            run_id=str(self.run_id),
            path=str(self.path),
            condition=self.condition,
            threshold=self._threshold(),
            value_mode=self.value_mode,
            window=self.window,
            finished_when=self.finished_when,
        )


class NeptuneRunSensor(_NeptuneConditionSensor):
    """Wait until a run exists, is inactive (no client holds it open), or has a given field.

    :param run_id: the run's ``sys/id`` (templated).
    :param wait_for: ``"exists"``, ``"inactive"`` or ``"field"``.
    :param field: the field path when ``wait_for="field"`` (templated).
    :param neptune_conn_id: Airflow connection of type ``neptune``.
    :param project: Neptune project ``workspace/name``; overrides the connection's.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields = ("run_id", "field", "project")

    def __init__(
        self, *, run_id: str, wait_for: str = "exists", field: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(run_id=run_id, **kwargs)
        self.wait_for = wait_for
        self.field = field
        check_run_condition(run_id="parse-check", wait_for=wait_for, field=field)

    def build_condition(self) -> RunCondition:
        """Return the run condition from the rendered parameters."""
        from airflow_provider_neptune.core.run_conditions import RunCondition

        return RunCondition(run_id=str(self.run_id), wait_for=self.wait_for, field=self.field)
