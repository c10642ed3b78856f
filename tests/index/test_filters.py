"""The filter language: what it accepts, what it refuses, and the SQL it compiles to."""

from __future__ import annotations

import sqlite3

import pytest

from vestis.errors import InputError
from vestis.index.filters import parse_filter

ROWS = [
    {"id": "1", "baseColour": "Red", "season": "Summer", "year": 2012, "price": 19.5},
    {"id": "2", "baseColour": "Red", "season": "Winter", "year": 2009, "price": 5.0},
    {"id": "3", "baseColour": "Navy Blue", "season": "Spring", "year": 2015, "price": None},
    {"id": "4", "baseColour": "Black", "season": "Summer", "year": 2011, "price": 42.0},
]


def matching(expr: str) -> list[str]:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE items (id TEXT, meta TEXT)")
    import json

    con.executemany("INSERT INTO items VALUES (?, ?)", [(r["id"], json.dumps(r)) for r in ROWS])
    flt = parse_filter(expr)
    flt.check_fields(["id", "baseColour", "season", "year", "price"])
    sql, params = flt.compile(lambda f: ("json_extract(items.meta, ?)", [f'$."{f}"']))
    return sorted(r[0] for r in con.execute(f"SELECT id FROM items WHERE {sql}", params))


@pytest.mark.parametrize(
    ("expr", "ids"),
    [
        ("baseColour = 'Red' AND season IN ('Summer', 'Spring')", ["1"]),
        ("baseColour = 'Red' OR baseColour = 'Black'", ["1", "2", "4"]),
        ("NOT baseColour = 'Red'", ["3", "4"]),
        ("season NOT IN ('Summer')", ["2", "3"]),
        ("year > 2010 AND year <= 2012", ["1", "4"]),
        ("year BETWEEN 2009 AND 2011", ["2", "4"]),
        ("price IS NULL", ["3"]),
        ("price IS NOT NULL AND price < 20", ["1", "2"]),
        ("baseColour LIKE 'navy%'", ["3"]),
        ("baseColour != 'Red'", ["3", "4"]),
        ("(baseColour = 'Red') AND (year >= 2010 OR season = 'Winter')", ["1", "2"]),
        ("price > -1.5", ["1", "2", "4"]),
        ("baseColour = 'Purple'", []),
    ],
)
def test_filters_select_the_right_rows(expr, ids):
    assert matching(expr) == ids


def test_literals_are_parameters_not_sql():
    flt = parse_filter("baseColour = 'x'' OR 1=1 --'")
    sql, params = flt.compile(lambda f: ("col", []))
    assert "OR" not in sql and params == ["x' OR 1=1 --"]
    assert matching("baseColour = 'Red'' OR ''1''=''1'") == []


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("1; DROP TABLE items", "not allowed"),
        ("baseColour = (SELECT 1)", "not allowed"),
        ("lower(baseColour) = 'red'", "not allowed"),
        ("baseColour = ", "cannot parse"),
        ("'Red'", "not a condition"),
        ("items.baseColour = 'Red'", "not a field name"),
        ("baseColour = 'Red' " * 1000, "at most"),
    ],
)
def test_bad_filters_are_refused_with_a_reason(expr, message):
    with pytest.raises(InputError, match=message):
        parse_filter(expr)


def test_unknown_fields_are_named():
    flt = parse_filter("colour = 'Red' AND season = 'Summer'")
    with pytest.raises(InputError, match="unknown field 'colour'.*baseColour"):
        flt.check_fields(["baseColour", "season"])


def test_blank_means_no_filter():
    assert parse_filter(None) is None and parse_filter("  ") is None
