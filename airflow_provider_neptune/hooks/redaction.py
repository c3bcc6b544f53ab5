"""The one helper that masks credentials in URLs before they reach a message or a log line.

Kept apart from :mod:`.settings` so that modules used without Airflow loaded (the request budget in
a bare worker process) can use it without importing Airflow.
"""

from __future__ import annotations

import re

#: Query parameters whose values are credentials (redis-py reads ``password`` from the query).
_SECRET_QUERY_KEYS = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:pass|pwd|secret|token|api[_-]?key|auth)[\w.-]*)=)[^&;#\s'\"]*"
)
#: ``scheme://user:password@`` - the user-info of any URL; greedy up to the last ``@`` before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*(?:@[^/\s@'\"]*)*@")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (user-info and password-like query values).

    The one helper for every message and log line that may carry a URL: settings errors, budget-store
    errors, connection-test messages and the transport's request log.
    """
    masked = _USERINFO.sub(r"\1***@", str(text))
    return _SECRET_QUERY_KEYS.sub(r"\1***", masked)
