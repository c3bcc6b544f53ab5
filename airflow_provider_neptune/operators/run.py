"""Operators that open and close a Neptune run for a DAG run.

NeptuneCreateRunOperator gives each DAG run (and each ``name``) its own run through a deterministic
custom run id, so a task retry reopens the run instead of creating a second one;
NeptuneStopRunOperator stops it within a time bound and fails if data would be left unsent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.condition_params import STATE_FIELD
from airflow_provider_neptune.hooks.server_rules import MAX_CUSTOM_RUN_ID_LENGTH, check_custom_run_id
from airflow_provider_neptune.links import NeptuneRunLink, record_run_link
from airflow_provider_neptune.operators.base import NeptuneBaseOperator, normalize_tags

if TYPE_CHECKING:
    from airflow.sdk import Context

CUSTOM_RUN_ID_XCOM_KEY = "custom_run_id"
"""XCom key under which NeptuneCreateRunOperator pushes the run's custom id."""

_CUSTOM_ID_PREFIX = "airflow-"


def derive_custom_run_id(dag_id: str, dag_run_id: str, name: str | None = None, map_index: int = -1) -> str:
    """Return the deterministic custom run id (36 characters) of (dag, DAG run, name, map index).

    The same inputs always give the same id, so a task retry reopens the same run; any other dag id,
    run id, name or map index gives another id, so two DAGs with the same run id never share a run.
    """
    key = "\x1f".join((dag_id, dag_run_id, name or "", str(map_index)))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return _CUSTOM_ID_PREFIX + digest[: MAX_CUSTOM_RUN_ID_LENGTH - len(_CUSTOM_ID_PREFIX)]


def _field_value(value: Any) -> bool | int | float | str:
    """Convert a parameter value to a type a Neptune field holds (bool, int, float or string)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def flatten_fields(values: Mapping[str, Any], namespace: str = "") -> dict[str, bool | int | float | str]:
    """Flatten nested mappings to ``{"ns/a/b": value}`` with values Neptune fields can hold."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        path = f"{namespace.rstrip('/')}/{key}" if namespace else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_fields(value, path))
        elif value is not None:
            flat[path] = _field_value(value)
    return flat


class _NeptuneRunOperator(NeptuneBaseOperator):
    """The run link and colour shared by the run operators."""

    operator_extra_links = (NeptuneRunLink(),)
    ui_color = "#cfe3f7"


class NeptuneCreateRunOperator(_NeptuneRunOperator):
    """Create the Neptune run of this DAG run, or reopen it when the task is retried.

    Returns the run's ``sys/id`` (XCom ``return_value``) and pushes the custom run id to XCom key
    ``custom_run_id``. Also records ``airflow/dag_id`` and ``airflow/dag_run_id`` on the run.

    :param name: run name (``sys/name``; templated); part of the custom run id, so several runs per
        DAG run are possible. Defaults to ``"<dag_id> <run_id>"`` for the name only.
    :param tags: tags to add (templated): a string is one tag (tags may contain commas), a list or
        tuple several.
    :param description: run description (templated).
    :param params: Airflow params of the task (merged with the DAG's, overridable by the run conf as
        usual); their resolved values are assigned under ``params_namespace`` (nested -> paths).
    :param params_namespace: namespace of the params on the run; empty to not record them.
    :param custom_run_id: explicit custom run id (at most 36 characters) instead of the derived one.
    :param timeout: seconds to wait for the fields to reach the server.
    :param neptune_conn_id: see :class:`~airflow_provider_neptune.operators.base.NeptuneBaseOperator`,
        like ``project`` and ``mode``.
    """

    template_fields = ("name", "tags", "description", "custom_run_id", "project")

    def __init__(
        self,
        *,
        name: str | None = None,
        tags: Sequence[str] | str = (),
        description: str | None = None,
        params_namespace: str = "parameters",
        custom_run_id: str | None = None,
        timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.tags = tags
        self.description = description
        self.params_namespace = params_namespace
        self.custom_run_id = custom_run_id
        self.timeout = timeout
        if custom_run_id and "{{" not in custom_run_id:
            check_custom_run_id(custom_run_id)

    def execute(self, context: Context) -> str:
        """Create (or reopen) the run, assign its fields, wait for delivery; return its ``sys/id``."""
        ti = context["ti"]
        dag_id, dag_run_id = ti.dag_id, ti.run_id
        custom_run_id = self.custom_run_id or derive_custom_run_id(
            dag_id, dag_run_id, self.name, getattr(ti, "map_index", -1)
        )
        check_custom_run_id(custom_run_id)
        fields: dict[str, bool | int | float | str] = {
            "airflow/dag_id": dag_id,
            "airflow/dag_run_id": dag_run_id,
        }
        run_params = context.get("params") or {}
        if run_params and self.params_namespace:
            fields.update(flatten_fields(dict(run_params), self.params_namespace))
        tags = normalize_tags(self.tags)
        with self.closing_hook() as hook:
            sys_id = hook.create_run(
                custom_run_id=custom_run_id,
                name=self.name or f"{dag_id} {dag_run_id}",
                tags=tags,
                description=self.description,
            )
            self.log.info("Neptune run %s (custom run id %s)", sys_id, custom_run_id)
            with hook.get_run(run_id=sys_id) as run:
                for path, value in fields.items():
                    run[path] = value
                hook.wait_for_delivery(run, timeout=self.timeout)
            record_run_link(self, context, hook.run_url(sys_id))
        ti.xcom_push(key=CUSTOM_RUN_ID_XCOM_KEY, value=custom_run_id)
        return sys_id


class NeptuneStopRunOperator(_NeptuneRunOperator):
    """Assign final fields, then stop the run within ``timeout``; fail if data would be left unsent.

    The final state (default ``"finished"``) goes to ``airflow/state``: NeptuneMetricSensor treats a
    run carrying it as finished. ``state="failed"`` also sets ``sys/failed``.

    :param run_id: the run's ``sys/id`` (templated), e.g. ``"{{ ti.xcom_pull('create_run') }}"``.
    :param timeout: seconds the stop may wait for queued data to reach the server.
    :param state: final state written to ``airflow/state`` (templated); None writes nothing.
    :param final_fields: mapping of fields to assign before stopping (templated; nested -> paths).
    :param neptune_conn_id: see :class:`~airflow_provider_neptune.operators.base.NeptuneBaseOperator`,
        like ``project`` and ``mode``.
    """

    template_fields = ("run_id", "state", "final_fields", "project")

    def __init__(
        self,
        *,
        run_id: str,
        timeout: float = 60.0,
        state: str | None = "finished",
        final_fields: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.timeout = timeout
        self.state = state
        self.final_fields = final_fields

    def execute(self, context: Context) -> str:
        """Assign the final fields and stop the run; return its ``sys/id``."""
        run_id = str(self.run_id)
        fields = flatten_fields(self.final_fields or {})
        if self.state:
            fields[STATE_FIELD] = str(self.state)
            if str(self.state).lower() == "failed":
                fields["sys/failed"] = True
        with self.closing_hook() as hook:
            record_run_link(self, context, hook.run_url(run_id))
            if fields:
                with hook.get_run(run_id=run_id) as run:
                    for path, value in fields.items():
                        run[path] = value
            hook.stop_run(run_id, timeout=self.timeout)
            self.log.info("Stopped Neptune run %s; every queued operation reached the server", run_id)
        return run_id
