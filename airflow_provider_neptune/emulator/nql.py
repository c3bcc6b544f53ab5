"""Neptune Query Language (NQL) as used by fetch_runs_table: a lark parser and an evaluator.

Covers what the neptune client generates (`(`sys/tags`:stringSet CONTAINS "a")`, AND/OR groups,
`sys/trashed`, `sys/state`, paging conditions on the sort column) and the user-facing forms
(`(accuracy: float > 0.88) AND NOT (sys/name:string MATCHES "^x")`, EXISTS, !=, <=, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError

from airflow_provider_neptune.emulator.errors import NQLSyntaxError

GRAMMAR = r"""
start: expr?
?expr: and_expr
     | expr _OR and_expr -> or_
?and_expr: unary
     | and_expr _AND unary -> and_
?unary: _NOT unary -> not_
     | "(" expr ")"
     | condition
condition: attr [":" type] OP [value]
attr: BACKTICKED -> quoted_attr
    | NAME -> bare_attr
type: CNAME ["(" CNAME ")"]
?value: ESCAPED_STRING -> string
      | SINGLE_QUOTED -> single
      | SIGNED_NUMBER -> number
      | NAME -> bare

_OR.3: /OR\b/i
_AND.3: /AND\b/i
_NOT.3: /NOT\b(?!\s+(CONTAINS|MATCHES|EXISTS)\b)/i
OP.4: /NOT\s+CONTAINS\b|NOT\s+MATCHES\b|NOT\s+EXISTS\b|CONTAINS\b|MATCHES\b|EXISTS\b|!=|>=|<=|==|=|>|</i
BACKTICKED: /`[^`]*`/
SINGLE_QUOTED: /'(?:[^'\\]|\\.)*'/
NAME: /[A-Za-z0-9_][A-Za-z0-9_\/\-.+]*/

%import common.CNAME
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""


@dataclass(frozen=True)
class Condition:
    """`attribute:type OP value`."""

    attribute: str
    type: str | None
    operator: str
    value: Any = None


@dataclass(frozen=True)
class And:
    """All items hold."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class Or:
    """Any item holds."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    """The item does not hold."""

    item: Any


@dataclass(frozen=True)
class Everything:
    """The empty query: every entry matches."""


Query = Condition | And | Or | Not | Everything


def _unescape(text: str) -> str:
    """The value of a quoted literal's inside: a backslash makes the next character literal.

    Covers ``\\\\`` and ``\\"``, the only escapes Neptune's query libraries write (neptune-fetcher's
    ``escape_nql_criterion``); Neptune documents no others, so ``\\n`` is just ``n`` here.
    """
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


@v_args(inline=True)
class _Build(Transformer[Token, Query]):
    def start(self, expr: Query | None = None) -> Query:
        return expr if expr is not None else Everything()

    def or_(self, left: Query, right: Query) -> Query:
        items = (*left.items,) if isinstance(left, Or) else (left,)
        return Or((*items, right))

    def and_(self, left: Query, right: Query) -> Query:
        items = (*left.items,) if isinstance(left, And) else (left,)
        return And((*items, right))

    def not_(self, item: Query) -> Query:
        return Not(item)

    def quoted_attr(self, token: Token) -> str:
        return str(token)[1:-1]

    def bare_attr(self, token: Token) -> str:
        return str(token)

    def type(self, name: Token, aggregation: Token | None = None) -> str:
        return str(name)

    def string(self, token: Token) -> str:
        return _unescape(str(token)[1:-1])

    def single(self, token: Token) -> str:
        return _unescape(str(token)[1:-1])

    def number(self, token: Token) -> float:
        return float(token)

    def bare(self, token: Token) -> Any:
        text = str(token)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return text

    def condition(self, attribute: str, kind: str | None, op: Token, value: Any = None) -> Condition:
        operator = re.sub(r"\s+", " ", str(op).upper())
        if operator == "==":
            operator = "="
        if value is None and operator not in ("EXISTS", "NOT EXISTS"):
            raise NQLSyntaxError(f"operator {operator} needs a value")
        return Condition(attribute=attribute, type=kind, operator=operator, value=value)


_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=True)


def parse(text: str | None) -> Query:
    """Parse an NQL query; an empty one matches everything."""
    if text is None or not text.strip():
        return Everything()
    try:
        tree = _PARSER.parse(text)
        return _Build().transform(tree)
    except NQLSyntaxError:
        raise
    except LarkError as exc:
        raise NQLSyntaxError(str(exc).splitlines()[0] if str(exc) else "Syntax error") from exc


NUMERIC = {"float", "int", "integer", "floatSeries", "number", "double"}
STATE_ALIASES = {"active": "running", "inactive": "idle"}


def to_millis(value: Any) -> float | None:
    """A datetime given as ms, a datetime or an ISO-8601 text, in ms since the epoch."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp() * 1000
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            return to_millis(datetime.fromisoformat(text))
        except ValueError:
            return None
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    try:
        if op == "=":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        if op == ">":
            return bool(left > right)
        if op == ">=":
            return bool(left >= right)
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
    except TypeError:
        return False
    return False


def _condition(cond: Condition, fields: Mapping[str, tuple[str, Any]]) -> bool:
    field = fields.get(cond.attribute)
    op = cond.operator
    if op == "EXISTS":
        return field is not None
    if op == "NOT EXISTS":
        return field is None
    if field is None:
        return False
    kind, value = field
    wanted = cond.type or kind
    if kind == "stringSet" or wanted == "stringSet":
        members = set(value) if isinstance(value, list | set | tuple) else {str(value)}
        target = str(cond.value)
        if op in ("CONTAINS", "="):
            return target in members
        if op in ("NOT CONTAINS", "!="):
            return target not in members
        return False
    if op in ("CONTAINS", "NOT CONTAINS"):
        found = str(cond.value) in str(value)
        return found if op == "CONTAINS" else not found
    if op in ("MATCHES", "NOT MATCHES"):
        try:
            found = re.search(str(cond.value), str(value)) is not None
        except re.error:
            return False
        return found if op == "MATCHES" else not found
    if wanted == "experimentState" or kind == "experimentState":
        target = str(cond.value).lower()
        return _compare(op, str(value), STATE_ALIASES.get(target, target))
    if wanted == "datetime" or kind == "datetime":
        return _compare(op, to_millis(value), to_millis(cond.value))
    if wanted in NUMERIC:
        if kind not in NUMERIC and kind != "bool":
            return False
        return _compare(op, _as_float(value), _as_float(cond.value))
    if wanted == "bool" or kind == "bool":
        flag = cond.value if isinstance(cond.value, bool) else str(cond.value).lower() == "true"
        return _compare(op, bool(value), flag)
    if kind in NUMERIC:
        return _compare(op, _as_float(value), _as_float(cond.value))
    right = cond.value if isinstance(cond.value, str) else _format_number(cond.value)
    return _compare(op, str(value), right)


def _format_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def matches(query: Query, fields: Mapping[str, tuple[str, Any]]) -> bool:
    """Does an entry (path -> (attribute type, plain value)) satisfy the query?"""
    if isinstance(query, Everything):
        return True
    if isinstance(query, Condition):
        return _condition(query, fields)
    if isinstance(query, And):
        return all(matches(item, fields) for item in query.items)
    if isinstance(query, Or):
        return any(matches(item, fields) for item in query.items)
    return not matches(query.item, fields)
