"""Safe NQL text: quoted string literals and checks on user-written query fragments.

Every value the provider pastes into a Neptune Query Language string goes through
:func:`quote_string`, so a tag, id or custom run id can never change the query's structure. The rule
is the one Neptune's own query library applies (neptune-fetcher: ``escape_nql_criterion`` and
``_right_query`` in ``src/neptune_fetcher/alpha/filters.py``): inside a double-quoted literal a
backslash is written ``\\\\`` and a double quote ``\\"``; nothing else is escaped. Neptune's NQL docs
only say to quote values with double quotes; they document no escape for control characters or for a
backtick inside a backquoted attribute name, so values needing those are refused. No ``neptune``
import: DAG files may use it.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote_string(value: object, what: str) -> str:
    """``value`` as an NQL double-quoted literal; ValueError naming ``what`` when it cannot be one."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string to go into an NQL query, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} is empty; an empty value cannot select anything in an NQL query")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(
            f"{what} {value!r} contains the control character {bad.group()!r}, which Neptune's query "
            "language has no documented way to express; remove it"
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def quote_attribute(path: str, what: str) -> str:
    """``path`` as a backquoted NQL attribute name; refused when it holds a backtick or control char."""
    if not path or "`" in path or _CONTROL.search(path):
        raise ValueError(
            f"{what} {path!r} cannot be written as an NQL attribute name (empty, or holds a backtick or "
            "a control character)"
        )
    return f"`{path}`"


def condition(path: str, kind: str, operator: str, value: str, what: str) -> str:
    """One parenthesised NQL condition ``(`path`:kind OPERATOR "value")`` with ``value`` quoted."""
    return f"({quote_attribute(path, what)}:{kind} {operator} {quote_string(value, what)})"


def check_fragment(query: str, what: str) -> str:
    """Refuse a user-written NQL fragment that could escape the parentheses it is wrapped in.

    Scans outside string literals and backquoted names: every ``(`` must be closed, no ``)`` may close
    more than was opened, and every literal must be terminated. A fragment passing this check stays
    one operand of the AND it is combined into, whatever it says.
    """
    depth = 0
    index = 0
    length = len(query)
    while index < length:
        char = query[index]
        if char in ('"', "'", "`"):
            end = _literal_end(query, index)
            if end < 0:
                raise ValueError(f"{what} {query!r}: the literal starting at character {index} is not closed")
            index = end + 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(
                    f"{what} {query!r}: the ')' at character {index} closes a parenthesis it did not open"
                )
        index += 1
    if depth:
        raise ValueError(f"{what} {query!r}: {depth} '(' not closed")
    return query


def _literal_end(text: str, start: int) -> int:
    """Index of the character closing the literal opened at ``start`` (-1 when it is never closed)."""
    quote = text[start]
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and quote != "`":
            index += 2
            continue
        if char == quote:
            return index
        index += 1
    return -1
