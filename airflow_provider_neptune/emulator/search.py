"""NQL in SQL: the conditions SQLite can answer become a WHERE clause over `runs AS r`.

`narrowing(query)` gives SQL that every run matching the query satisfies. When it is `exact`, the SQL
matches exactly the runs the query does (so counting, sorting and paging can run in SQLite too);
otherwise the caller evaluates the whole query in Python, but only over the runs the SQL let through.
Semantics are those of nql.matches over the fields api.fields_of shows (sys fields come from `runs`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from airflow_provider_neptune.emulator import nql
from airflow_provider_neptune.emulator.fields import plain_value
from airflow_provider_neptune.emulator.storage import Attr, Storage

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
# sys fields that are columns of `runs` on every row (runs, models, versions and project containers).
TIME_COLUMNS = {
    "sys/creation_time": "r.created_ms",
    "sys/modification_time": "r.modified_ms",
    "sys/ping_time": "r.ping_ms",
}
# Columns the runs table can be sorted by in SQL (each present on every row, so none sorts last).
SQL_SORT_COLUMNS = {"sys/id": "r.short_id", **TIME_COLUMNS}
SET_PATHS = ("sys/tags", "sys/group_tags")


@dataclass(frozen=True)
class Where:
    """A WHERE fragment over `runs AS r` with its arguments; exact when it decides the query alone."""

    sql: str
    args: tuple[Any, ...]
    exact: bool


EVERYTHING = Where("1", (), True)
UNKNOWN = Where("1", (), False)  # nothing SQL can say: every run stays a candidate
NOTHING = Where("0", (), True)


def narrowing(query: nql.Query) -> Where:
    """SQL every run matching `query` satisfies (exact when nothing is left to check in Python)."""
    if isinstance(query, nql.Everything):
        return EVERYTHING
    if isinstance(query, nql.Condition):
        return _condition(query) or UNKNOWN
    if isinstance(query, nql.And):
        parts = [narrowing(item) for item in query.items]
        useful = [p for p in parts if p.sql != "1"]
        exact = all(p.exact for p in parts)
        if not useful:
            return Where("1", (), exact)
        return Where(
            " AND ".join(f"({p.sql})" for p in useful), tuple(a for p in useful for a in p.args), exact
        )
    if isinstance(query, nql.Or):
        parts = [narrowing(item) for item in query.items]
        if any(p.sql == "1" for p in parts):
            return Where("1", (), all(p.exact for p in parts))
        return Where(
            " OR ".join(f"({p.sql})" for p in parts),
            tuple(a for p in parts for a in p.args),
            all(p.exact for p in parts),
        )
    inner = narrowing(query.item)
    if not inner.exact:
        return UNKNOWN
    # SQL NULL stands for "does not hold" everywhere above; NOT must not turn it into "unknown".
    return Where(f"NOT COALESCE(({inner.sql}), 0)", inner.args, True)


def paths_of(query: nql.Query) -> set[str]:
    """Every field path a query's conditions read."""
    if isinstance(query, nql.Condition):
        return {query.attribute}
    if isinstance(query, nql.And | nql.Or):
        return set().union(*(paths_of(item) for item in query.items))
    if isinstance(query, nql.Not):
        return paths_of(query.item)
    return set()


def _condition(cond: nql.Condition) -> Where | None:
    path, kind, op, value = cond.attribute, cond.type, cond.operator, cond.value
    if path == "sys/id" and kind in (None, "string") and op in COMPARISONS and isinstance(value, str):
        return Where(f"r.short_id {_sql_op(op)} ?", (value,), True)
    if path == "sys/custom_run_id":
        # The field exists only on runs created with a (non-empty) custom id.
        if op == "EXISTS":
            return Where("COALESCE(r.custom_id, '') <> ''", (), True)
        if op == "NOT EXISTS":
            return Where("COALESCE(r.custom_id, '') = ''", (), True)
        if kind in (None, "string") and op in COMPARISONS and isinstance(value, str):
            return Where(f"r.custom_id {_sql_op(op)} ? AND r.custom_id <> ''", (value,), True)
        return Where("COALESCE(r.custom_id, '') <> ''", (), False)
    if path == "sys/trashed" and kind in (None, "bool") and op in ("=", "!="):
        flag = value if isinstance(value, bool) else str(value).lower() == "true"
        # A project container has no sys/trashed field.
        return Where(f"r.type <> 'project' AND r.trashed {_sql_op(op)} ?", (int(flag),), True)
    if path in TIME_COLUMNS and kind in (None, "datetime") and op in COMPARISONS:
        millis = nql.to_millis(value)
        if millis is None:
            return NOTHING
        return Where(f"{TIME_COLUMNS[path]} {_sql_op(op)} ?", (millis,), True)
    if (
        path in SET_PATHS
        and kind in (None, "stringSet")
        and op in ("CONTAINS", "=")
        and isinstance(value, str)
    ):
        return Where(
            "r.id IN (SELECT run_id FROM set_members WHERE path = ? AND member = ?)", (path, value), True
        )
    if path.startswith("sys/"):
        return None
    # Any other field exists only where it is stored; every operator but NOT EXISTS needs it to exist.
    stored = "EXISTS (SELECT 1 FROM attrs AS a WHERE a.run_id = r.id AND a.path = ?"
    if op == "NOT EXISTS":
        return Where(f"NOT {stored})", (path,), True)
    if op == "EXISTS":
        return Where(f"{stored})", (path,), True)
    value_test = _value_test(kind, op, value)
    if value_test is not None:
        sql, args = value_test
        return Where(f"{stored} AND ({sql}))", (path, *args), False)
    return Where(f"{stored})", (path,), False)


def _value_test(kind: str | None, op: str, value: Any) -> tuple[str, tuple[Any, ...]] | None:
    """SQL on a stored field `a` that every field nql.matches could accept satisfies (a superset).

    Fields whose value SQL cannot read as nql does (malformed JSON, a number kept as text) stay
    candidates; Python decides them.
    """
    unreadable = "NOT json_valid(a.value)"
    if kind in nql.NUMERIC and op in COMPARISONS and not isinstance(value, bool):
        number = _number(value)
        if number is None or math.isnan(number):
            # nql compares NaN as unequal to everything; SQLite would read it as NULL.
            return None
        sql_op = _sql_op(op)
        # Numbers and datetimes compare as numbers, series by their last value; a bool as 0 or 1.
        return (
            f"{unreadable} OR a.type = 'bool'"
            " OR (a.type IN ('float', 'int', 'datetime') AND (json_type(a.value, '$.v') NOT IN"
            f" ('real', 'integer') OR json_extract(a.value, '$.v') {sql_op} ?))"
            " OR (a.type = 'floatSeries' AND (json_type(a.value, '$.last') NOT IN ('real', 'integer')"
            f" OR json_extract(a.value, '$.last') {sql_op} ?))",
            (number, number),
        )
    if kind in (None, "string") and op == "=" and isinstance(value, str):
        # Only a String field is decided here (equal text); other types compare in their own way.
        return f"{unreadable} OR a.type <> 'string' OR json_extract(a.value, '$.v') = ?", (value,)
    return None


_number = nql._as_float  # the same numeric reading as the Python evaluator


def _sql_op(op: str) -> str:
    return "<>" if op == "!=" else op


SortKey = tuple[str, int, int, Any]


def sort_keys(storage: Storage, where: str, args: tuple[Any, ...], path: str) -> list[SortKey]:
    """(run id, created_ms, seq, value of the field at `path` or None) of the runs `r` matching `where`.

    The value is what nql and the runs table sort by (fields.plain_value), read in SQL from that one
    field instead of decoding every field whole; oldest run first.
    """
    rows = storage.rows(
        "SELECT r.id, r.created_ms, r.seq, a.type,"
        " CASE WHEN a.value IS NULL OR NOT json_valid(a.value) OR a.type = 'stringSet' THEN NULL"
        "  WHEN a.type IN ('floatSeries', 'stringSeries') THEN json_extract(a.value, '$.last')"
        "  WHEN a.type = 'gitRef' THEN json_extract(a.value, '$.commit.commitId')"
        "  WHEN a.type IN ('file', 'fileSet', 'imageSeries') THEN NULL"
        "  ELSE json_extract(a.value, '$.v') END,"
        " CASE WHEN a.value IS NOT NULL AND (NOT json_valid(a.value) OR a.type = 'stringSet')"
        "  THEN a.value END"
        f" FROM runs AS r LEFT JOIN attrs AS a ON a.run_id = r.id AND a.path = ? WHERE {where}"
        " ORDER BY r.created_ms, r.seq, r.rowid",
        (path, *args),
    )
    out: list[SortKey] = []
    for run_id, created, seq, kind, value, raw in rows:
        if raw is not None:  # JSON SQLite does not read (NaN) or a list: decoded the way nql does
            value = plain_value(Attr(path, kind, json.loads(raw)))
        elif kind == "bool" and value is not None:
            value = bool(value)
        out.append((run_id, created, seq, value))
    return out


def ordered_ids(keys: list[SortKey], descending: bool, *, web: bool) -> list[str]:
    """Run ids sorted by value, ties by creation; runs without a value last in either direction.

    Numbers sort as numbers when every value is one, else everything as text; a list (tags) is joined
    with commas. The API (web=False) counts booleans as numbers and keeps runs without a value oldest
    first; the web view (web=True) sorts booleans as text and those runs by creation in the direction.
    """
    present = [(",".join(v) if isinstance(v, list) else v, c, s, i) for i, c, s, v in keys if v is not None]
    missing = [(c, s, i) for i, c, s, v in keys if v is None]
    numeric = all(isinstance(v, int | float) and not (web and isinstance(v, bool)) for v, _, _, _ in present)
    present.sort(key=lambda k: (k[0] if numeric else str(k[0]), k[1], k[2]), reverse=descending)
    if web:
        missing.sort(key=lambda k: (k[0], k[1]), reverse=descending)
    return [i for _, _, _, i in present] + [i for _, _, i in missing]
