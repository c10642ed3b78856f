"""Metadata filters: a small SQL ``WHERE`` language, validated, compiled to parameters.

``baseColour = 'Red' AND season IN ('Summer', 'Spring')`` is parsed with sqlglot,
checked against a whitelist of node types and of the catalog's field names, and
compiled by each store into its own dialect with every literal passed as a bound
parameter: a filter can narrow a search, never run other SQL.

Supported: ``= != <> < <= > >=``, ``IN (...)``, ``NOT IN``, ``LIKE`` (case-insensitive
for ASCII), ``BETWEEN a AND b``, ``IS [NOT] NULL``, ``AND``, ``OR``, ``NOT``, parentheses;
string and number literals. Field names with spaces go in double quotes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from vestis.errors import InputError

_COMPARE = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_MAX_LENGTH = 4096


@dataclass(frozen=True)
class Filter:
    """A parsed, validated filter expression."""

    text: str
    node: exp.Expression

    @property
    def fields(self) -> set[str]:
        return {c.name for c in self.node.find_all(exp.Column)}

    def check_fields(self, known: Iterable[str]) -> None:
        known = set(known)
        unknown = sorted(self.fields - known)
        if unknown:
            listing = ", ".join(sorted(known)) or "none"
            raise InputError(f"filter names unknown field {', '.join(map(repr, unknown))}; the fields are: {listing}")

    def compile(self, field_sql: Callable[[str], tuple[str, list]], placeholder: str = "?") -> tuple[str, list]:
        """(SQL fragment, parameters); ``field_sql(name)`` gives a field's SQL and its parameters."""
        return _compile(self.node, field_sql, placeholder)


def parse_filter(text: str | None) -> Filter | None:
    """Parse ``text``; ``None`` or blank means no filter. Errors name what is wrong."""
    if text is None or not text.strip():
        return None
    if len(text) > _MAX_LENGTH:
        raise InputError(f"filter is {len(text)} characters long; at most {_MAX_LENGTH}")
    try:
        node = sqlglot.parse_one(text, read="sqlite")
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"cannot parse filter {text!r}: {first}") from None
    _validate(node, text)
    return Filter(text, node)


def _validate(node: exp.Expression, text: str) -> None:
    allowed = (
        exp.And, exp.Or, exp.Not, exp.Paren, exp.In, exp.Like, exp.ILike, exp.Between, exp.Is, exp.Null,
        exp.Column, exp.Identifier, exp.Literal, exp.Neg, exp.Boolean, *_COMPARE,
    )  # fmt: skip
    for sub in node.walk():
        if not isinstance(sub, allowed):
            raise InputError(
                f"filter {text!r}: {type(sub).__name__.lower()} ({sub.sql()}) is not allowed; use comparisons, "
                "IN, LIKE, BETWEEN, IS NULL, AND, OR, NOT on field names and literals"
            )
        if isinstance(sub, exp.Column) and (sub.table or not sub.name):
            raise InputError(f"filter {text!r}: {sub.sql()} is not a field name")
    if isinstance(node, (exp.Column, exp.Literal, exp.Null, exp.Neg)):
        raise InputError(f"filter {text!r} is not a condition (e.g. baseColour = 'Red')")


def _literal(node: exp.Expression) -> object:
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -_literal(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = str(node.this)
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(node, exp.Boolean):
        return 1 if node.this else 0
    raise InputError(f"filter: expected a literal value, got {node.sql()}")


def _compile(node: exp.Expression, field_sql, ph: str) -> tuple[str, list]:
    def operand(n: exp.Expression) -> tuple[str, list]:
        if isinstance(n, exp.Column):
            return field_sql(n.name)
        if isinstance(n, exp.Paren):
            return operand(n.this)
        return ph, [_literal(n)]

    def rec(n: exp.Expression) -> tuple[str, list]:
        if isinstance(n, exp.Paren):
            sql, params = rec(n.this)
            return f"({sql})", params
        if isinstance(n, (exp.And, exp.Or)):
            (a, pa), (b, pb) = rec(n.this), rec(n.expression)
            return f"({a} {'AND' if isinstance(n, exp.And) else 'OR'} {b})", pa + pb
        if isinstance(n, exp.Not):
            sql, params = rec(n.this)
            return f"(NOT {sql})", params
        if type(n) in _COMPARE:
            (a, pa), (b, pb) = operand(n.this), operand(n.expression)
            return f"{a} {_COMPARE[type(n)]} {b}", pa + pb
        if isinstance(n, (exp.Like, exp.ILike)):
            (a, pa), (b, pb) = operand(n.this), operand(n.expression)
            return f"{a} LIKE {b}", pa + pb
        if isinstance(n, exp.In):
            a, pa = operand(n.this)
            values = [_literal(v) for v in n.expressions]
            if not values or n.args.get("query") is not None:
                raise InputError("filter: IN needs a list of values")
            return f"{a} IN ({', '.join([ph] * len(values))})", pa + values
        if isinstance(n, exp.Between):
            a, pa = operand(n.this)
            return f"{a} BETWEEN {ph} AND {ph}", pa + [_literal(n.args["low"]), _literal(n.args["high"])]
        if isinstance(n, exp.Is):
            a, pa = operand(n.this)
            if not isinstance(n.expression, exp.Null):
                raise InputError("filter: only IS NULL and IS NOT NULL are supported")
            return f"{a} IS NULL", pa
        if isinstance(n, exp.Column):
            a, pa = operand(n)
            return f"{a} IS NOT NULL AND {a} NOT IN ('', 0)", pa + pa
        raise InputError(f"filter: {n.sql()} is not a condition")

    return rec(node)
