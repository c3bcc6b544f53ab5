"""NeptuneHook: the one way the provider's operators and sensors reach Neptune.

It resolves the connection's settings once, hands out pooled run handles, sends every request of the
``neptune`` client through one shared request budget and one retry policy (see :mod:`.transport`),
and verifies that logged metrics reached the server (see :mod:`.delivery`). The class is composed of
one layer per job, each in its own module: :mod:`.base` (settings, transport, counters, errors, the
connection form), :mod:`.server` (server checks), :mod:`.runs` (run handles), :mod:`.reads` (series
and field reads) and :mod:`.metrics` (metric logging). ``neptune`` itself is imported only inside
methods, so importing this module (and the operators) stays cheap.
"""

from __future__ import annotations

from airflow_provider_neptune.hooks.metrics import EXTEND_BATCH, MetricLogging
from airflow_provider_neptune.hooks.runs import RUN_DEFAULTS
from airflow_provider_neptune.hooks.series import READ_PAGE
from airflow_provider_neptune.hooks.settings import NeptuneSettings, is_loopback_host


class NeptuneHook(MetricLogging):
    """Settings, pooled runs, a shared request budget, one retry policy and verified delivery for Neptune.

    :param neptune_conn_id: Airflow connection of type ``neptune`` (token in the password).
    :param project: ``workspace/project``; overrides the connection and NEPTUNE_PROJECT.
    :param mode: client mode (async, sync, offline, read-only, debug).
    :param api_token: API token; overrides the connection's password and NEPTUNE_API_TOKEN.
    :param rate_limit_per_second: shared request budget (0 disables it).
    :param rate_limit_storage: ``memory``, an absolute file path, or ``redis://...``.
    :param retry_count: retries per request after the first try.
    :param retry_backoff: base of the exponential backoff, in seconds.
    :param request_timeout: timeout of one HTTP request, in seconds.
    :param logging_level: level of the neptune and provider loggers; DEBUG logs every request.
    """


__all__ = ["EXTEND_BATCH", "READ_PAGE", "RUN_DEFAULTS", "NeptuneHook", "NeptuneSettings", "is_loopback_host"]
