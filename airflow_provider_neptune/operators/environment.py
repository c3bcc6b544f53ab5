"""NeptuneValidateEnvironmentOperator: fail early, on the worker itself, when its Neptune set-up is off.

A worker with another ``neptune`` version, a missing variable, a full disk or a skewed clock loses
metrics silently; this task runs every check (:mod:`airflow_provider_neptune.core.environment`),
reports all failures at once and returns a fingerprint of the worker that
:mod:`airflow_provider_neptune.operators.fingerprints` compares across workers.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.exceptions import NeptuneEnvironmentError, NeptuneEnvironmentMismatchError
from airflow_provider_neptune.operators.base import NeptuneBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

# The checks (core.environment, and through it `packaging`) are imported inside execute, on the
# worker: a DAG file that only builds the operator does not pay for them at parse time.

__all__ = [
    "FINGERPRINT_XCOM_KEY",
    "NeptuneEnvironmentError",
    "NeptuneEnvironmentMismatchError",
    "NeptuneValidateEnvironmentOperator",
    "plainly_valid_requirements",
]

FINGERPRINT_XCOM_KEY = "fingerprint"
"""XCom key under which the fingerprint is pushed even when the task then fails."""

# Requirements packaging certainly accepts: a distribution name, then comparisons with plain release
# versions and no spaces (``neptune>=1.14,<2``). The operator's parse-time check passes these without
# importing packaging; anything else goes through normalize_requirements, which names the problem.
_PLAIN_CLAUSE = r"(?:(?:==|!=|<=|>=|<|>)[0-9]+(?:\.[0-9]+)*|~=[0-9]+(?:\.[0-9]+)+)"
_PLAIN_SPECIFIER = re.compile(rf"(?:{_PLAIN_CLAUSE}(?:,{_PLAIN_CLAUSE})*)?")
_PLAIN_REQUIREMENT = re.compile(rf"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?{_PLAIN_SPECIFIER.pattern}")


def plainly_valid_requirements(requirements: object) -> bool:
    """Tell whether ``requirements`` certainly pass ``normalize_requirements`` (no packaging needed).

    True only for the simple forms (``"numpy>=1.26,<2"``, ``{"neptune": "1.14.0"}``, ``None`` as
    specifier); False means "not decided here", not "invalid".
    """
    if isinstance(requirements, Mapping):
        for name, spec in requirements.items():
            if not isinstance(name, str) or not (spec is None or isinstance(spec, str)):
                return False
            text = (spec or "").strip()
            if text and text[0].isdigit():
                text = f"=={text}"
            if not _PLAIN_SPECIFIER.fullmatch(text):
                return False
        return True
    if isinstance(requirements, str):
        lines: list[object] = [p for p in requirements.replace(";", "\n").splitlines() if p.strip()]
    elif isinstance(requirements, list | tuple):
        lines = list(requirements)
    else:
        return False
    return all(isinstance(line, str) and _PLAIN_REQUIREMENT.fullmatch(line.strip()) for line in lines)


class NeptuneValidateEnvironmentOperator(NeptuneBaseOperator):
    """Check this worker's Neptune environment; return its fingerprint; fail listing every problem.

    Checks installed versions (``neptune``, ``apache-airflow``, this provider, Python and any named
    package) against PEP 440 specifiers, required environment variables (names only), the connection
    (token, project, round trip, the server's supported client versions), the client's data
    directory (writable, free space) and clock skew against the server's ``Date``. The fingerprint is
    pushed to XCom under ``fingerprint`` even on failure, and is the task's return value on success.

    :param requirements: extra or overriding requirements: ``{"numpy": ">=1.26", "neptune": "==1.14.*"}``
        or ``["numpy>=1.26", "python>=3.11"]``; ``None`` as specifier only requires the package.
    :param required_env: names of environment variables that must be set (``NEPTUNE_API_TOKEN`` and
        ``NEPTUNE_PROJECT`` also count as set when the connection supplies them): a list, or a string
        rendered from a template (``"A, B"`` or a list literal). Values never reach logs or XCom.
    :param check_connection: also check the connection, server client range, round trip and clock.
    :param min_free_disk_mb: free space the data directory must have (the async queue lives there).
    :param run_id: the run's ``sys/id`` (templated); when set, the fingerprint is also logged to this
        run under ``<run_namespace>/<hostname>/<worker>``. None, ``""`` or ``"None"`` mean no run.
    :param max_clock_skew_seconds: allowed local-vs-server clock offset; ``None`` skips the check.
    :param max_round_trip_seconds: optional bound on one round trip to the server.
    :param data_directory: overrides the client's data directory (``NEPTUNE_DATA_DIRECTORY`` or
        ``./.neptune``) for the disk check.
    :param include_default_requirements: check the provider's declared ``neptune``, ``apache-airflow``
        and Python ranges too.
    :param worker_label: how this worker is named in comparisons (default: the task's queue).
    :param run_namespace: namespace in the run under which the fingerprints go.
    :param log_timeout: seconds to wait for the fingerprint to reach the run.
    :param neptune_conn_id: see :class:`~airflow_provider_neptune.operators.base.NeptuneBaseOperator`,
        like ``project`` and ``mode``.
    """

    template_fields: Sequence[str] = ("requirements", "required_env", "run_id", "data_directory", "project")
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        requirements: Mapping[str, str | None] | Sequence[str] | str | None = None,
        required_env: Sequence[str] | str = (),
        check_connection: bool = True,
        min_free_disk_mb: float = 0.0,
        run_id: str | None = None,
        max_clock_skew_seconds: float | None = 30.0,
        max_round_trip_seconds: float | None = None,
        data_directory: str | None = None,
        include_default_requirements: bool = True,
        worker_label: str | None = None,
        run_namespace: str = "environment",
        log_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.requirements = requirements
        self.required_env = required_env
        self.check_connection = check_connection
        self.min_free_disk_mb = min_free_disk_mb
        self.run_id = run_id
        self.max_clock_skew_seconds = max_clock_skew_seconds
        self.max_round_trip_seconds = max_round_trip_seconds
        self.data_directory = data_directory
        self.include_default_requirements = include_default_requirements
        self.worker_label = worker_label
        self.run_namespace = run_namespace
        self.log_timeout = log_timeout
        # Fail at parse time on a malformed literal requirement; templated ones are checked at run time.
        if requirements and "{{" not in str(requirements) and not plainly_valid_requirements(requirements):
            from airflow_provider_neptune.core.environment_checks import normalize_requirements

            normalize_requirements(requirements)

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the checks, push the fingerprint, log it to the run if asked, fail on any problem."""
        with self.closing_hook():
            return self._validate(context)

    def _validate(self, context: Context) -> dict[str, Any]:
        from airflow_provider_neptune.core.environment import collect_environment, log_to_run, variable_names

        ti = context["ti"]
        hostname = getattr(ti, "hostname", None) or socket.getfqdn()
        worker = self.worker_label or self.queue
        report = collect_environment(
            requirements=self.requirements,
            include_default_requirements=self.include_default_requirements,
            required_env=variable_names(self.required_env),
            hook=self.hook,
            check_connection=self.check_connection,
            min_free_disk_mb=float(self.min_free_disk_mb or 0.0),
            max_clock_skew_seconds=self.max_clock_skew_seconds,
            max_round_trip_seconds=self.max_round_trip_seconds,
            data_directory=self.data_directory or None,
            hostname=hostname,
            worker=worker,
            queue=self.queue,
            pool=self.pool,
        )
        run_id = (self.run_id or "").strip()
        if run_id and run_id != "None":
            report.results.append(
                log_to_run(self.hook, run_id, self.run_namespace, report.fingerprint, self.log_timeout)
            )
            report.fingerprint["failed"] = [r.message for r in report.failures]
            report.fingerprint["checks"] = [r.as_dict() for r in report.results]
        for result in report.results:
            self.log.log(
                logging.INFO if result.ok else logging.ERROR,
                "%s %s",
                "PASS" if result.ok else "FAIL",
                result.message,
            )
        self.log.info(
            "Environment fingerprint of %s: %s",
            worker,
            json.dumps(report.fingerprint, sort_keys=True, default=str),
        )
        ti.xcom_push(key=FINGERPRINT_XCOM_KEY, value=report.fingerprint)
        error = report.error(f"{worker} ({hostname})")
        if error is not None:
            raise error
        return report.fingerprint
