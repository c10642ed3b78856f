"""Metadata filters: a small SQL ``WHERE`` language, validated, compiled to parameters.

``baseColour = 'Red' AND season IN ('Summer', 'Spring')`` is parsed with sqlglot,
checked against a whitelist of node types and of the catalog's field names, and
compiled by each store into its own dialect with every literal passed as a bound
parameter: a filter can narrow a search, never run other SQL.

Supported: ``= != <> < <= > >=``, ``IN (...)``, ``NOT IN``, ``LIKE`` (case-insensitive
for ASCII), ``BETWEEN a AND b``, ``IS [NOT] NULL``, ``AND``, ``OR``, ``NOT``, parentheses;
string and number literals. Field names with spaces go in double quotes.

Text equality ignores case: ``=``, ``!=``, ``IN`` and ``NOT IN`` with a text literal match the
catalog's values that equal it under Unicode case folding, so ``baseColour = 'red'`` finds the
items whose colour is ``Red``. A store does this by passing its fields' values to
:meth:`Filter.compile` (the literal becomes the list of stored spellings, so the field's index
still serves the lookup). ``< <= > >= BETWEEN`` compare exactly.

Filters also come from facet selections, a mapping of field to accepted values
(:meth:`Filter.from_mapping`), and :func:`combine` joins filters with ``AND``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from vestis.errors import InputError

_COMPARE = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_MAX_LENGTH = 4096
_MAX_FIELD_LENGTH = 200
_MAX_VALUES = 1000

#: ``values_of(field)``: the distinct values a store holds for a field (for case-insensitive text matching).
FieldValues = Callable[[str], Iterable[object]]


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

    def compile(
        self,
        field_sql: Callable[[str], tuple[str, list]],
        placeholder: str = "?",
        values_of: FieldValues | None = None,
        ordered_sql: Callable[[str], tuple[str, list]] | None = None,
    ) -> tuple[str, list]:
        """(SQL fragment, parameters); ``field_sql(name)`` gives a field's SQL and its parameters.

        ``values_of``: the store's values of a field; with it, text equality ignores case (see the
        module docstring). Without it, every comparison is exact. ``ordered_sql(name)``: a field's
        SQL in ``< <= > >= BETWEEN`` when it differs (a store's integer ids compare as numbers there).
        """
        node = fold_case(self.node, values_of) if values_of is not None else self.node
        return _compile(node, field_sql, placeholder, ordered_sql or field_sql)

    @classmethod
    def from_mapping(cls, selections: Mapping[str, object] | None) -> Filter | None:
        """``{"baseColour": ["Red", "Blue"], "season": "Summer"}`` -> ``"baseColour" IN ('Red', 'Blue')
        AND "season" IN ('Summer')``: an item matches when each field holds one of its values. Fields
        with no values are left out; ``None`` or an empty mapping is no filter."""
        if selections is None:
            return None
        if not isinstance(selections, Mapping):
            raise InputError("filters must map field names to lists of values")
        parts: list[exp.Expression] = []
        for name, values in selections.items():
            if not isinstance(name, str) or not name.strip() or len(name) > _MAX_FIELD_LENGTH:
                raise InputError(f"filters: bad field name {name!r}")
            values = list(values) if isinstance(values, (list, tuple, set, frozenset)) else [values]
            if not values:
                continue
            if len(values) > _MAX_VALUES:
                raise InputError(f"filters: {name!r} has {len(values)} values; at most {_MAX_VALUES}")
            literals = [_to_literal(v, name) for v in values]
            parts.append(exp.In(this=exp.column(name, quoted=True), expressions=literals))
        if not parts:
            return None
        node = parts[0] if len(parts) == 1 else exp.and_(*parts)
        return cls(node.sql(dialect="sqlite"), node)


def combine(*filters: Filter | None) -> Filter | None:
    """The filters joined with ``AND`` (``None`` ones left out); ``None`` when none is left."""
    given = [f for f in filters if f is not None]
    if len(given) < 2:
        return given[0] if given else None
    node = exp.and_(*(exp.Paren(this=f.node.copy()) for f in given))
    return Filter(" AND ".join(f"({f.text})" for f in given), node)


def _to_literal(value: object, name: str) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Literal.number(int(value))
    if isinstance(value, int):
        return exp.Literal.number(value) if value >= 0 else exp.Neg(this=exp.Literal.number(-value))
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return exp.Literal.number(repr(value)) if value >= 0 else exp.Neg(this=exp.Literal.number(repr(-value)))
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise InputError(f"filters: {name!r}: values must be text or numbers, got {value!r}")


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


def fold_case(node: exp.Expression, values_of: FieldValues) -> exp.Expression:
    """A copy of ``node`` where each text literal compared with ``=``, ``!=`` or ``IN`` to a field
    becomes the field's stored values that equal it ignoring case (the literal itself when none does)."""
    cache: dict[str, dict[str, list[str]]] = {}

    def spellings(field: str) -> dict[str, list[str]]:
        if field not in cache:
            by_key: dict[str, list[str]] = {}
            for v in values_of(field):
                if isinstance(v, str):
                    by_key.setdefault(v.casefold(), []).append(v)
            cache[field] = by_key
        return cache[field]

    def expand(field: str, literal: exp.Expression) -> list[exp.Expression]:
        if not (isinstance(literal, exp.Literal) and literal.is_string):
            return [literal]
        found = spellings(field).get(literal.this.casefold())
        return [exp.Literal.string(v) for v in found] if found else [literal]

    def column_of(n: exp.Expression) -> exp.Column | None:
        while isinstance(n, exp.Paren):
            n = n.this
        return n if isinstance(n, exp.Column) else None

    def fold(n: exp.Expression) -> exp.Expression:
        if isinstance(n, (exp.EQ, exp.NEQ)):
            col, lit = column_of(n.this), n.expression
            if col is None:
                col, lit = column_of(n.expression), n.this
            if col is None or column_of(lit) is not None:
                return n
            values = expand(col.name, lit)
            if len(values) == 1:
                return type(n)(this=col.copy(), expression=values[0])
            found: exp.Expression = exp.In(this=col.copy(), expressions=values)
            return exp.Not(this=found) if isinstance(n, exp.NEQ) else found
        if isinstance(n, exp.In):
            col = column_of(n.this)
            if col is None or n.args.get("query") is not None:
                return n
            values = [v for lit in n.expressions for v in expand(col.name, lit)]
            return exp.In(this=col.copy(), expressions=values)
        return n

    return node.copy().transform(fold)


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


def literal_value(node: exp.Expression) -> object:
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -literal_value(node.this)
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


def _compile(node: exp.Expression, field_sql, ph: str, ordered_sql=None) -> tuple[str, list]:
    ordered_sql = ordered_sql or field_sql

    def operand(n: exp.Expression, ordered: bool = False) -> tuple[str, list]:
        if isinstance(n, exp.Column):
            return (ordered_sql if ordered else field_sql)(n.name)
        if isinstance(n, exp.Paren):
            return operand(n.this, ordered)
        return ph, [literal_value(n)]

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
            ordered = type(n) not in (exp.EQ, exp.NEQ)
            (a, pa), (b, pb) = operand(n.this, ordered), operand(n.expression, ordered)
            return f"{a} {_COMPARE[type(n)]} {b}", pa + pb
        if isinstance(n, (exp.Like, exp.ILike)):
            (a, pa), (b, pb) = operand(n.this), operand(n.expression)
            return f"{a} LIKE {b}", pa + pb
        if isinstance(n, exp.In):
            a, pa = operand(n.this)
            values = [literal_value(v) for v in n.expressions]
            if not values or n.args.get("query") is not None:
                raise InputError("filter: IN needs a list of values")
            return f"{a} IN ({', '.join([ph] * len(values))})", pa + values
        if isinstance(n, exp.Between):
            a, pa = operand(n.this, ordered=True)
            return f"{a} BETWEEN {ph} AND {ph}", pa + [literal_value(n.args["low"]), literal_value(n.args["high"])]
        if isinstance(n, exp.Is):
            a, pa = operand(n.this)
            if not isinstance(n.expression, exp.Null):
                raise InputError("filter: only IS NULL and IS NOT NULL are supported")
            return f"{a} IS NULL", pa
        if isinstance(n, exp.Column):
            a, pa = operand(n)
            return f"({a} IS NOT NULL AND {a} NOT IN ('', 0))", pa + pa  # whole: NOT binds tighter than AND
        raise InputError(f"filter: {n.sql()} is not a condition")

    return rec(node)
