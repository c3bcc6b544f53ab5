"""Old import path of :mod:`airflow_provider_neptune.hooks.nql_text` (safe NQL text), kept for callers."""

from __future__ import annotations

from airflow_provider_neptune.hooks.nql_text import check_fragment, condition, quote_attribute, quote_string

__all__ = ["check_fragment", "condition", "quote_attribute", "quote_string"]
