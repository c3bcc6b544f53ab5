"""Apache Airflow provider for Neptune experiment tracking.

Importing this package (or its operators and sensors) must stay cheap: ``neptune`` itself is
imported lazily inside the hook, never at DAG parse time.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_INTEGRATION = "Neptune"
_MODULE = "airflow_provider_neptune"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-neptune",
        "name": "Neptune",
        "description": "Reliable Neptune experiment tracking in Airflow: pooled, rate-limited, "
        "retrying connections, batched metrics, checkpoint retention, environment checks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://github.com/neptune-ai/neptune-client",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": [f"{_MODULE}.hooks.neptune"]}],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    f"{_MODULE}.operators.run",
                    f"{_MODULE}.operators.metrics",
                    f"{_MODULE}.operators.artifacts",
                    f"{_MODULE}.operators.environment",
                    f"{_MODULE}.operators.fingerprints",
                    f"{_MODULE}.operators.sync",
                ],
            }
        ],
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": [f"{_MODULE}.sensors.neptune"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": [f"{_MODULE}.triggers.neptune"]}],
        "extra-links": [f"{_MODULE}.links.NeptuneRunLink"],
        "connection-types": [
            {
                "hook-class-name": f"{_MODULE}.hooks.neptune.NeptuneHook",
                "hook-name": "Neptune",
                "connection-type": "neptune",
                "conn-fields": _CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"password": "API token", "host": "API address (optional)"},
                    "placeholders": {
                        "password": "base64 API token (holds the server address)",
                        "host": "taken from the token when empty",
                        "project": "workspace/project",
                        "mode": "async",
                        "rate_limit_storage": "memory | /path/to/file.sqlite | redis://host:6379/0",
                    },
                },
            }
        ],
    }


def _field(label: str, kind: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": [kind, "null"], **schema}}


_CONN_FIELDS: dict[str, Any] = {
    "project": _field("Project", "string", "Neptune project as workspace/project."),
    "mode": _field(
        "Mode",
        "string",
        "Client mode: async (queue on disk, background sender), sync, offline or read-only.",
        enum=["async", "sync", "offline", "read-only", None],
    ),
    "rate_limit_per_second": _field(
        "Requests per second",
        "number",
        "Request budget shared by every task using this connection (0 disables the limiter).",
    ),
    "rate_limit_storage": _field(
        "Rate limit storage",
        "string",
        "Where the shared budget lives: memory (one process), an absolute file path (one host) "
        "or redis://... (all hosts).",
    ),
    "retry_count": _field(
        "Retry count",
        "integer",
        "Retries per request after the first try (connection errors, 408, 429, 5xx).",
    ),
    "retry_backoff": _field("Retry backoff (s)", "number", "Base of the exponential backoff, in seconds."),
    "request_timeout": _field("Request timeout (s)", "number", "Timeout of one HTTP request, in seconds."),
    "logging_level": _field(
        "Logging level",
        "string",
        "Level of the neptune and HTTP loggers; DEBUG shows every request with its status.",
        enum=["DEBUG", "INFO", "WARNING", "ERROR", None],
    ),
}
