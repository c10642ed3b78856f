"""Filterable metadata kept columnar: a ``--where`` evaluated as array operations.

The store keeps, beside each generation's vector snapshot, the metadata fields as
arrays aligned with the snapshot's positions (:class:`Columns`). SQLite stays the
source of truth: a column holds exactly what ``json_extract(meta, '$."field"')``
returns for each row (read once per row; rows never change, a rewrite is a new row),
so a filter evaluated here means what it means in SQL. Per field (:class:`Column`):

* ``num``: float64, the number, NaN where the value is not a number (a field with
  no numbers has none);
* ``codes``: the position of the text in ``strings``, the field's distinct texts
  sorted as SQLite's BINARY collation sorts them (code point order), and
  ``len(strings)`` where the value is not text. The smallest unsigned type that
  holds them (uint8 for a colour or a season), so ``codes == c`` is a one-byte
  scan: a value's rows cost as little as a per-value bitmap would, and the field
  costs n bytes instead of one bitmap per value; ordered text comparisons are code
  comparisons (the dictionary is sorted); ``IN`` and ``LIKE`` are a lookup table
  over the dictionary.

:func:`evaluate` runs a parsed filter over the columns with SQL's three-valued logic
(a comparison with NULL is unknown, ``NOT`` of unknown is unknown, only true rows
pass), SQLite's ordering across types (NULL < numbers < text), ``IN``, ``BETWEEN``,
``LIKE`` (case-insensitive for ASCII letters, ``%`` and ``_``), ``IS [NOT] NULL`` and
a bare field (true when set, not ``''`` and not 0). Text equality ignores case as in
SQL, by the same rewrite (:meth:`vestis.index.filters.Filter.compile`'s ``values_of``,
here the column's dictionary). What it cannot answer exactly raises
:class:`Unsupported`, and the store asks SQLite instead: comparisons between two
fields or two literals, ``LIKE`` on a field that holds numbers (SQLite's number-to-text
rendering), integers beyond 2**53, and the ``id`` key (an indexed SQLite lookup).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlglot import exp

from vestis.index.filters import Filter, fold_case, literal_value

_EXACT_INT = 2**53
_FLIP = {exp.LT: exp.GT, exp.GT: exp.LT, exp.LTE: exp.GTE, exp.GTE: exp.LTE, exp.EQ: exp.EQ, exp.NEQ: exp.NEQ}
_ORDER = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)


class Unsupported(Exception):
    """The filter needs SQLite's own evaluation (see the module docstring)."""


@dataclass(frozen=True)
class Column:
    """One field over the snapshot's positions (see the module docstring)."""

    num: np.ndarray | None  # float64 (n,), NaN where not a number; None when the field has no number
    codes: np.ndarray  # unsigned (n,): index into ``strings``, len(strings) where not text
    strings: list[str]  # distinct texts, sorted
    exact: bool = True  # every number is exact in float64

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def is_text(self) -> np.ndarray:
        return self.codes < len(self.strings)

    @property
    def is_num(self) -> np.ndarray:
        return ~np.isnan(self.num) if self.num is not None else np.zeros(len(self), bool)

    @property
    def is_null(self) -> np.ndarray:
        return ~(self.is_text | self.is_num)

    @classmethod
    def from_values(cls, values: Sequence[object]) -> Column:
        """From SQLite values (None, int, float, str) in position order."""
        n = len(values)
        texts = sorted({v for v in values if isinstance(v, str)})
        numbers = [(i, v) for i, v in enumerate(values) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        codes = np.full(n, len(texts), dtype=_code_dtype(len(texts)))
        if texts:
            where = {t: c for c, t in enumerate(texts)}
            for i, v in enumerate(values):
                if isinstance(v, str):
                    codes[i] = where[v]
        num = None
        exact = True
        if numbers:
            num = np.full(n, np.nan)
            idx = np.fromiter((i for i, _ in numbers), np.int64, len(numbers))
            num[idx] = [float(v) for _, v in numbers]
            exact = all(not isinstance(v, int) or abs(v) <= _EXACT_INT for _, v in numbers)
        return cls(num, codes, texts, exact)

    def extend(self, other: Column) -> Column:
        """This column followed by ``other``'s positions (dictionaries merged, still sorted)."""
        strings = sorted(set(self.strings) | set(other.strings))
        dtype = _code_dtype(len(strings))
        parts = []
        for col in (self, other):
            where = {t: c for c, t in enumerate(strings)}
            lut = np.array([where[t] for t in col.strings] + [len(strings)], dtype=dtype)
            parts.append(lut[col.codes])
        nums = None
        if self.num is not None or other.num is not None:
            nums = np.concatenate([c.num if c.num is not None else np.full(len(c), np.nan) for c in (self, other)])
        return Column(nums, np.concatenate(parts), strings, self.exact and other.exact)

    def text_codes(self, literal: str) -> tuple[int, int]:
        """``(lo, hi)``: texts with codes in [lo, hi) equal ``literal``; below lo sort before it."""
        return bisect.bisect_left(self.strings, literal), bisect.bisect_right(self.strings, literal)

    def lookup(self, keep: Iterable[int]) -> np.ndarray:
        """Rows whose text code is in ``keep`` (a table over the dictionary, then one gather)."""
        lut = np.zeros(len(self.strings) + 1, dtype=bool)
        lut[list(keep)] = True
        return lut[self.codes]


def _code_dtype(n_strings: int):
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_strings < np.iinfo(dtype).max:
            return dtype
    return np.uint64


@dataclass
class Columns:
    """The filterable fields of a snapshot, aligned with its positions."""

    fields: dict[str, Column]
    n: int

    def extend(self, other: Columns) -> Columns:
        out = {}
        for name in sorted(set(self.fields) | set(other.fields)):
            a = self.fields.get(name) or _null_column(self.n)
            b = other.fields.get(name) or _null_column(other.n)
            out[name] = a.extend(b)
        return Columns(out, self.n + other.n)

    def values_of(self, field: str) -> list[str]:
        col = self.fields.get(field)
        return col.strings if col is not None else []

    # ------------------------------------------------------------------ on disk

    def save(self, directory: Path) -> None:
        arrays, meta = {}, {"n": self.n, "fields": []}
        for i, (name, col) in enumerate(self.fields.items()):
            arrays[f"c{i}"] = col.codes
            if col.num is not None:
                arrays[f"n{i}"] = col.num
            meta["fields"].append({"name": name, "strings": col.strings, "exact": col.exact})
        np.savez(directory / "columns.npz", **arrays)
        (directory / "columns.json").write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> Columns | None:
        try:
            meta = json.loads((directory / "columns.json").read_text())
            with np.load(directory / "columns.npz") as arrays:
                fields = {}
                for i, f in enumerate(meta["fields"]):
                    num = arrays[f"n{i}"] if f"n{i}" in arrays.files else None
                    fields[f["name"]] = Column(num, arrays[f"c{i}"], f["strings"], f["exact"])
        except (OSError, ValueError, KeyError):
            return None
        if any(len(c) != meta["n"] for c in fields.values()):
            return None
        return cls(fields, int(meta["n"]))

    def counts(self, field: str, positions: np.ndarray) -> list[tuple[object, int]]:
        """How often each value of ``field`` occurs at ``positions`` (NULL and ``''`` left out),
        most frequent first, then in SQLite's order (numbers before text)."""
        col = self.fields.get(field)
        if col is None:
            return []
        n_text = len(col.strings)
        by_code = np.bincount(col.codes[positions], minlength=n_text + 1)[:n_text]
        out: list[tuple[object, int, tuple]] = []
        if col.num is not None:
            nums = col.num[positions]
            values, counted = np.unique(nums[~np.isnan(nums)], return_counts=True)
            out += [(_number(v), int(c), (0, v, "")) for v, c in zip(values.tolist(), counted.tolist())]
        out += [(col.strings[c], int(by_code[c]), (1, 0, col.strings[c])) for c in np.flatnonzero(by_code).tolist()
                if col.strings[c] != ""]  # fmt: skip
        out.sort(key=lambda x: (-x[1], x[2]))
        return [(v, c) for v, c, _ in out]


def _number(v: float) -> int | float:
    return int(v) if v.is_integer() and abs(v) <= _EXACT_INT else v


def _null_column(n: int) -> Column:
    return Column(None, np.zeros(n, np.uint8), [], True)


# ------------------------------------------------------------------------- evaluation

#: Three-valued truth over positions: (true, false); neither is unknown (NULL).
Truth = tuple[np.ndarray, np.ndarray]


def evaluate(flt: Filter, columns: Columns) -> np.ndarray:
    """The positions where ``flt`` is true (bool, aligned with ``columns``), or :class:`Unsupported`.

    The filter must have been checked (fields known, and compiled once, which refuses what
    the language does not have with the same messages as the SQL path)."""
    node = fold_case(flt.node, columns.values_of)
    return _Evaluator(columns).truth(node)[0]


def _unparen(n: exp.Expression) -> exp.Expression:
    while isinstance(n, exp.Paren):
        n = n.this
    return n


class _Evaluator:
    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.n = columns.n

    def column(self, n: exp.Expression) -> Column | None:
        n = _unparen(n)
        if not isinstance(n, exp.Column):
            return None
        if n.name == "id":
            raise Unsupported("id")
        return self.columns.fields.get(n.name) or _null_column(self.n)

    def truth(self, n: exp.Expression) -> Truth:
        if isinstance(n, exp.Paren):
            return self.truth(n.this)
        if isinstance(n, exp.And):
            (ta, fa), (tb, fb) = self.truth(n.this), self.truth(n.expression)
            return ta & tb, fa | fb
        if isinstance(n, exp.Or):
            (ta, fa), (tb, fb) = self.truth(n.this), self.truth(n.expression)
            return ta | tb, fa & fb
        if isinstance(n, exp.Not):
            t, f = self.truth(n.this)
            return f, t
        if type(n) in _ORDER:
            return self.compare(n)
        if isinstance(n, (exp.Like, exp.ILike)):
            return self.like(n)
        if isinstance(n, exp.In):
            col = self.column(n.this)
            if col is None:
                raise Unsupported("IN on a literal")
            t = np.zeros(self.n, bool)
            for v in n.expressions:
                t |= self.equal(col, literal_value(v))
            return t, ~t & ~col.is_null
        if isinstance(n, exp.Between):
            col = self.column(n.this)
            if col is None:
                raise Unsupported("BETWEEN on a literal")
            ta, fa = self.ordered(col, exp.GTE, literal_value(n.args["low"]))
            tb, fb = self.ordered(col, exp.LTE, literal_value(n.args["high"]))
            return ta & tb, fa | fb
        if isinstance(n, exp.Is):
            col = self.column(n.this)
            if col is None:
                raise Unsupported("IS on a literal")
            null = col.is_null
            return null, ~null
        if isinstance(n, exp.Column):
            col = self.column(n)
            t = np.zeros(self.n, bool)
            if col.num is not None:
                t |= col.is_num & (col.num != 0)
            lo, hi = col.text_codes("")
            t |= col.is_text & ~((col.codes >= lo) & (col.codes < hi))
            return t, ~t
        raise Unsupported(type(n).__name__)

    def compare(self, n: exp.Expression) -> Truth:
        op, a, b = type(n), n.this, n.expression
        col = self.column(a)
        if col is None:
            col, op, a, b = self.column(b), _FLIP[op], b, a
        if col is None or self.column(b) is not None:
            raise Unsupported("a comparison needs one field and one literal")
        value = literal_value(_unparen(b))
        if op is exp.EQ:
            t = self.equal(col, value)
            return t, ~t & ~col.is_null
        if op is exp.NEQ:
            f = self.equal(col, value)
            return ~f & ~col.is_null, f
        return self.ordered(col, op, value)

    def equal(self, col: Column, value: object) -> np.ndarray:
        if isinstance(value, str):
            lo, hi = col.text_codes(value)
            return col.codes == lo if hi > lo else np.zeros(self.n, bool)
        self.check_number(col, value)
        if col.num is None:
            return np.zeros(self.n, bool)
        return col.num == value

    def ordered(self, col: Column, op, value: object) -> Truth:
        """``col op value`` for < <= > >=, across types as SQLite orders them (numbers before text)."""
        is_text, is_num = col.is_text, col.is_num
        if isinstance(value, str):
            lo, hi = col.text_codes(value)
            c = col.codes
            text = {exp.LT: c < lo, exp.LTE: c < hi, exp.GT: c >= hi, exp.GTE: c >= lo}[op] & is_text
            num = is_num if op in (exp.LT, exp.LTE) else np.zeros(self.n, bool)  # a number sorts before text
        else:
            self.check_number(col, value)
            text = is_text if op in (exp.GT, exp.GTE) else np.zeros(self.n, bool)  # text sorts after a number
            if col.num is None:
                num = np.zeros(self.n, bool)
            else:
                with np.errstate(invalid="ignore"):
                    num = {exp.LT: col.num < value, exp.LTE: col.num <= value, exp.GT: col.num > value,
                           exp.GTE: col.num >= value}[op]  # fmt: skip
        t = text | num
        return t, (is_text | is_num) & ~t

    def check_number(self, col: Column, value: object) -> None:
        if not col.exact or (isinstance(value, int) and abs(value) > _EXACT_INT):
            raise Unsupported("integers beyond 2**53")

    def like(self, n: exp.Expression) -> Truth:
        col = self.column(n.this)
        pattern = _unparen(n.expression)
        if col is None or not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise Unsupported("LIKE needs a field and a text pattern")
        if col.num is not None and col.is_num.any():
            raise Unsupported("LIKE on numbers")
        rx = like_regex(pattern.this)
        matched = col.lookup(i for i, s in enumerate(col.strings) if rx.fullmatch(s))
        is_text = col.is_text
        return matched, is_text & ~matched


def like_regex(pattern: str) -> re.Pattern:
    """SQLite's ``LIKE`` without ESCAPE: ``%`` any run, ``_`` one character, ASCII letters in either case."""
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.ASCII | re.DOTALL)
