"""The "Neptune run" extra link shown on tasks that touch a run.

An operator calls :func:`record_run_link` once it knows the run; the link then resolves from the
operator instance (right after execution, when Airflow stores extra links) or from XCom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

RUN_URL_XCOM_KEY = "neptune_run_url"
"""XCom key under which operators store the URL of the run they touched."""

_RUN_URL_ATTRIBUTE = "neptune_run_url"


class NeptuneRunLink(BaseOperatorLink):
    """Extra link to the page of the Neptune run a task created, logged to, stopped or watched."""

    name = "Neptune run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the run page URL recorded by the task, or an empty string when it recorded none."""
        url = getattr(operator, _RUN_URL_ATTRIBUTE, None)
        if url:
            return str(url)
        from airflow.sdk.bases.xcom import BaseXCom

        stored: Any = BaseXCom.get_value(ti_key=cast(Any, ti_key), key=RUN_URL_XCOM_KEY)
        return str(stored) if stored else ""


def record_run_link(operator: BaseOperator, context: Context, url: str | None) -> None:
    """Remember ``url`` as the task's run link: on the operator and in XCom (``neptune_run_url``)."""
    if not url:
        return
    setattr(operator, _RUN_URL_ATTRIBUTE, url)
    context["ti"].xcom_push(key=RUN_URL_XCOM_KEY, value=url)
