"""Cross-worker consistency: the compare operator and the fan-out pattern (comparison in core.fingerprints).

The pattern: one :class:`~airflow_provider_neptune.operators.environment.NeptuneValidateEnvironmentOperator`
per Celery queue (so each runs on a worker of that queue) or per pool, then one compare task that
fails naming the workers and the packages (or variables, or modes) that differ::

    with DAG(...):
        checks = environment_check_group(queues=["default", "gpu"], required_env=["NEPTUNE_PROJECT"])
        checks >> train

Executors that ignore queues (LocalExecutor) run every check on the local host: the pattern still
works, it just compares the host with itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context, TaskGroup, TriggerRule

from airflow_provider_neptune.exceptions import NeptuneEnvironmentMismatchError
from airflow_provider_neptune.operators.environment import (
    FINGERPRINT_XCOM_KEY,
    NeptuneValidateEnvironmentOperator,
)

_TASK_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class NeptuneCompareEnvironmentsOperator(BaseOperator):
    """Pull the fingerprints of the given check tasks and fail if the workers' environments differ.

    Runs even when a check failed (trigger rule ``all_done`` by default) and then fails too, so one
    report shows each worker's own problems and what differs between workers, and tasks placed
    after the group (downstream of this task) never run on an inconsistent fleet.

    :param check_task_ids: task ids of the NeptuneValidateEnvironmentOperator tasks to compare.
    :param ignore_packages: package names whose versions may differ.
    :param compare_env: also compare which environment variables are set.
    :param compare_mode: also compare the client mode (async, sync, offline...).
    """

    template_fields: Sequence[str] = ("check_task_ids",)
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        check_task_ids: Sequence[str],
        ignore_packages: Sequence[str] = (),
        compare_env: bool = True,
        compare_mode: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.check_task_ids = list(check_task_ids)
        self.ignore_packages = list(ignore_packages)
        self.compare_env = compare_env
        self.compare_mode = compare_mode

    def execute(self, context: Context) -> dict[str, Any]:
        """Compare; return ``{"workers": [...], "versions": {...}}`` or fail listing every difference."""
        from airflow_provider_neptune.core.fingerprints import compare_fingerprints, worker_name

        ti = context["ti"]
        fingerprints = {
            task_id: ti.xcom_pull(task_ids=task_id, key=FINGERPRINT_XCOM_KEY)
            for task_id in self.check_task_ids
        }
        for task_id, fp in fingerprints.items():
            if fp:
                self.log.info(
                    "%s: %s", worker_name(task_id, fp), json.dumps(fp.get("versions", {}), sort_keys=True)
                )
        # The compare task is the group's only exit: it also fails when a worker failed its own checks.
        problems = [
            f"{worker_name(task_id, fp)} failed its checks: {message}"
            for task_id, fp in fingerprints.items()
            if fp
            for message in fp.get("failed", [])
        ]
        problems += compare_fingerprints(
            fingerprints,
            ignore_packages=self.ignore_packages,
            compare_env=self.compare_env,
            compare_mode=self.compare_mode,
        )
        if problems:
            lines = "\n".join(f"  - {line}" for line in problems)
            raise NeptuneEnvironmentMismatchError(
                f"Neptune environment check found {len(problems)} problem(s) across "
                f"{len(fingerprints)} worker(s):\n{lines}",
                [],
            )
        present = [fp for fp in fingerprints.values() if fp]
        summary = {
            "workers": [worker_name(task_id, fp) for task_id, fp in fingerprints.items()],
            "versions": dict(present[0].get("versions", {})) if present else {},
        }
        self.log.info("All %d worker(s) report the same environment", len(present))
        return summary


def environment_check_group(
    *,
    queues: Sequence[str] = (),
    pools: Sequence[str] = (),
    group_id: str = "neptune_environment",
    compare_task_id: str = "compare",
    ignore_packages: Sequence[str] = (),
    compare_env: bool = True,
    compare_mode: bool = True,
    **validate_kwargs: Any,
) -> TaskGroup:
    """Build a TaskGroup: one validate task per queue (or per pool) and a compare task after them.

    Call it inside a DAG context. ``validate_kwargs`` go to every
    NeptuneValidateEnvironmentOperator (``requirements``, ``required_env``, ``run_id``,
    ``retries``...); each task gets ``queue=<queue>`` (or ``pool=<pool>``) and that name as its
    ``worker_label``. Task ids are ``<group_id>.check_<name>`` and ``<group_id>.<compare_task_id>``.
    Give queues or pools, not both.
    """
    if bool(queues) == bool(pools):
        raise ValueError("environment_check_group needs either queues or pools (one of them, non-empty)")
    targets, attribute = (list(queues), "queue") if queues else (list(pools), "pool")
    slugs = [_TASK_ID_UNSAFE.sub("_", name).strip("_") or "unnamed" for name in targets]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"{attribute} names must be distinct after making them task ids: {targets}")
    if attribute in validate_kwargs or "worker_label" in validate_kwargs:
        raise ValueError(f"{attribute} and worker_label are set per task by environment_check_group")
    compare_kwargs = {
        key: validate_kwargs[key]
        for key in ("pool", "owner", "retries", "retry_delay")
        if key in validate_kwargs
    }
    with TaskGroup(group_id=group_id, tooltip="Neptune environment check on every worker") as group:
        checks = [
            NeptuneValidateEnvironmentOperator(
                task_id=f"check_{slug}", worker_label=name, **{attribute: name, **validate_kwargs}
            )
            for name, slug in zip(targets, slugs, strict=True)
        ]
        compare = NeptuneCompareEnvironmentsOperator(
            task_id=compare_task_id,
            check_task_ids=[check.task_id for check in checks],
            ignore_packages=ignore_packages,
            compare_env=compare_env,
            compare_mode=compare_mode,
            **compare_kwargs,
        )
        for check in checks:
            check >> compare
    return group
