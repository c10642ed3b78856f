"""The filter language: what it accepts, what it refuses, and the SQL it compiles to."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from vestis.errors import InputError
from vestis.index.filters import Filter, combine, parse_filter
from vestis.index.local import LocalStore
from vestis.index.store import Record, StoreInfo

ROWS = [
    {"id": "1", "baseColour": "Red", "season": "Summer", "year": 2012, "price": 19.5},
    {"id": "2", "baseColour": "Red", "season": "Winter", "year": 2009, "price": 5.0},
    {"id": "3", "baseColour": "Navy Blue", "season": "Spring", "year": 2015, "price": None},
    {"id": "4", "baseColour": "Black", "season": "Summer", "year": 2011, "price": 42.0},
]


def values_of(field: str) -> list:
    return list(dict.fromkeys(r.get(field) for r in ROWS))


def matching(expr: str | Filter, *, fold: bool = True) -> list[str]:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE items (id TEXT, meta TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(r["id"], json.dumps(r)) for r in ROWS])
    flt = parse_filter(expr) if isinstance(expr, str) else expr
    flt.check_fields(["id", "baseColour", "season", "year", "price"])
    sql, params = flt.compile(lambda f: ("json_extract(items.meta, ?)", [f'$."{f}"']),
                              values_of=values_of if fold else None)  # fmt: skip
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
        ("NOT price", ["3"]),  # a bare field is true when set (not NULL, '' or 0); NOT of it is the rest
        ("NOT price AND year > 2000", ["3"]),
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


# ------------------------------------------------------------- text equality ignores case


@pytest.mark.parametrize(
    ("expr", "ids"),
    [
        ("baseColour = 'red'", ["1", "2"]),
        ("baseColour = 'RED' AND season = 'summer'", ["1"]),
        ("'navy blue' = baseColour", ["3"]),
        ("baseColour IN ('red', 'BLACK')", ["1", "2", "4"]),
        ("baseColour != 'red'", ["3", "4"]),
        ("season NOT IN ('summer', 'WINTER')", ["3"]),
        ("baseColour = 'purple'", []),
        ("baseColour >= 'r'", []),  # ordering compares exactly: 'Red' sorts before 'r'
    ],
)
def test_text_equality_ignores_case(expr, ids):
    assert matching(expr) == ids


def test_without_the_stores_values_comparisons_are_exact():
    assert matching("baseColour = 'red'", fold=False) == []
    assert matching("baseColour = 'Red'", fold=False) == ["1", "2"]


def test_case_folding_keeps_literals_as_parameters():
    sql, params = parse_filter("baseColour = 'red' OR season IN ('x'' OR 1=1')").compile(
        lambda f: ("col", []), values_of=values_of
    )
    assert params == ["Red", "x' OR 1=1"] and "OR 1=1" not in sql


# ----------------------------------------------------------------- filters from mappings


def test_a_mapping_of_selections_is_a_filter():
    flt = Filter.from_mapping({"baseColour": ["red", "Black"], "season": "Summer", "price": []})
    assert flt.fields == {"baseColour", "season"}
    assert matching(flt) == ["1", "4"]
    assert matching(Filter.from_mapping({"year": [2009, 2015]})) == ["2", "3"]
    assert Filter.from_mapping({}) is None and Filter.from_mapping(None) is None
    assert Filter.from_mapping({"season": []}) is None


def test_selection_values_are_values_never_sql():
    flt = Filter.from_mapping({"baseColour": ["it's; DROP TABLE items; --"]})
    assert matching(flt) == []
    sql, params = flt.compile(lambda f: ("col", []))
    assert "DROP" not in sql and params == ["it's; DROP TABLE items; --"]


@pytest.mark.parametrize(
    ("selections", "message"),
    [
        ({"": ["x"]}, "bad field name"),
        ({"a" * 201: ["x"]}, "bad field name"),
        ({"baseColour": [{"r": 1}]}, "text or numbers"),
        ({"price": [float("nan")]}, "text or numbers"),
        ({"baseColour": ["x"] * 1001}, "at most 1000"),
        (["baseColour"], "map field names"),
    ],
)
def test_bad_selections_are_input_errors(selections, message):
    with pytest.raises(InputError, match=message):
        Filter.from_mapping(selections)


def test_combine_joins_with_and():
    where = parse_filter("season = 'Summer' OR season = 'Winter'")
    both = combine(where, Filter.from_mapping({"baseColour": ["Red"]}), None)
    assert matching(both) == ["1", "2"]
    assert combine(None, where) is where and combine(None, None) is None


def test_a_store_matches_text_values_ignoring_case(tmp_path):
    rng = np.random.default_rng(0)
    store = LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", 4))
    vectors = rng.normal(size=(len(ROWS), 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert([Record(id=r["id"], vector=v, metadata=r) for r, v in zip(ROWS, vectors)])
    store.refresh()
    hits = store.search(vectors[0], 10, where=parse_filter("baseColour = 'red'"), exact=True)
    assert sorted(i for i, _ in hits) == ["1", "2"]
    assert store.keyword_search("red", 10, where=parse_filter("season = 'WINTER'")) == []
    assert sorted(store.field_values("season")) == ["Spring", "Summer", "Winter"]
    store.close()
