"""The columnar filter path selects exactly the rows SQLite selects, for any filter."""

from __future__ import annotations

import numpy as np
import pytest

from vestis.errors import InputError
from vestis.index.columns import Column, Columns, Unsupported, evaluate, like_regex
from vestis.index.filters import parse_filter
from vestis.index.local import LocalStore
from vestis.index.store import Record, StoreInfo

DIM = 8
COLOURS = ["Red", "red", "RED", "Navy Blue", "navy blue", "Straße", "STRASSE", "Ünïcode", "", "0", "10", "b_c", "a%b"]
SEASONS = ["Summer", "Winter", "Fall", "Spring"]


def random_meta(rng: np.random.Generator, i: int) -> dict:
    meta: dict = {}
    if rng.random() < 0.85:
        meta["colour"] = str(rng.choice(COLOURS))
    if rng.random() < 0.9:
        meta["season"] = str(rng.choice(SEASONS))
    r = rng.random()  # numbers, text and nulls in one field
    if r < 0.5:
        meta["size"] = int(rng.integers(-3, 12))
    elif r < 0.7:
        meta["size"] = float(rng.choice([0.0, 2.5, -1.5, 7.0, 10.0]))
    elif r < 0.85:
        meta["size"] = str(rng.choice(["10", "M", "xl", "", "2.5"]))
    elif r < 0.95:
        meta["size"] = None
    if rng.random() < 0.7:
        meta["sale"] = bool(rng.random() < 0.5)
    if rng.random() < 0.3:
        meta["tags"] = ["a", "b"][: int(rng.integers(0, 3))]
    meta["year"] = int(rng.integers(2008, 2016)) if rng.random() < 0.8 else None
    if i % 97 == 0:
        meta["rare"] = "Red"  # a field almost every item lacks
    return meta


def make_store(tmp_path, n=240, seed=0) -> LocalStore:
    rng = np.random.default_rng(seed)
    store = LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", DIM))
    store.upsert(records(rng, 0, n))
    store.refresh()
    return store


def records(rng, start, n):
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Record(id=str(start + i), vector=vectors[i], metadata=random_meta(rng, start + i)) for i in range(n)]


LITERALS = ["'Red'", "'red'", "'navy blue'", "'strasse'", "'Straße'", "''", "'0'", "'10'", "'M'", "'a'", "'zz'",
            "0", "1", "10", "2.5", "-1.5", "2012", "TRUE", "FALSE", "'Summer'", "'summer'", "'[\"a\"]'"]  # fmt: skip
FIELDS = ["colour", "season", "size", "sale", "tags", "year", "rare"]
PATTERNS = ["'r%'", "'%E%'", "'_ed'", "'n%blue'", "'%'", "'b_c'", "'a%b'", "'str%'", "'ü%'", "''"]


def random_filter(rng: np.random.Generator, depth: int = 0) -> str:
    r = rng.random()
    if depth < 2 and r < 0.3:
        op = rng.choice(["AND", "OR"])
        return f"({random_filter(rng, depth + 1)}) {op} ({random_filter(rng, depth + 1)})"
    if depth < 2 and r < 0.38:
        return f"NOT ({random_filter(rng, depth + 1)})"
    field = str(rng.choice(FIELDS))
    lit = str(rng.choice(LITERALS))
    kind = rng.integers(0, 9)
    if kind == 0:
        return f"{field} {rng.choice(['=', '!=', '<>', '<', '<=', '>', '>='])} {lit}"
    if kind == 1:
        return f"{lit} {rng.choice(['=', '!=', '<', '>='])} {field}"
    if kind == 2:
        values = ", ".join(str(v) for v in rng.choice(LITERALS, size=int(rng.integers(1, 4))))
        return f"{field} {rng.choice(['IN', 'NOT IN'])} ({values})"
    if kind == 3:
        a, b = rng.choice(LITERALS, size=2)
        return f"{field} BETWEEN {a} AND {b}"
    if kind == 4:
        return f"{field} LIKE {rng.choice(PATTERNS)}"
    if kind == 5:
        return f"{field} IS {rng.choice(['NULL', 'NOT NULL'])}"
    if kind == 6:
        return f"NOT {field}" if rng.random() < 0.5 else f"{field} AND season IS NOT NULL"
    if kind == 7:
        return f"{field} = {lit} OR {field} IS NULL"
    return f"{field} {rng.choice(['<', '>='])} {lit} AND {field} != {rng.choice(LITERALS)}"


def sql_rows(store: LocalStore, text: str) -> list[int]:
    return sorted(store._filter_rows(parse_filter(text)).tolist())


def columnar_rows(store: LocalStore, text: str) -> list[int]:
    vs, columns = store._state()
    flt = parse_filter(text)
    store._check_filter(flt)
    mask = evaluate(flt, columns) & vs.live
    return sorted(vs.rows[mask].tolist())


def assert_same_on_random_filters(store, seed, n=400) -> int:
    rng = np.random.default_rng(seed)
    answered = 0
    for _ in range(n):
        text = random_filter(rng)
        try:
            got = columnar_rows(store, text)
        except Unsupported:
            continue
        assert got == sql_rows(store, text), text
        answered += 1
    return answered


def test_random_filters_select_what_sqlite_selects(tmp_path):
    store = make_store(tmp_path)
    answered = assert_same_on_random_filters(store, seed=1)
    assert answered >= 300  # LIKE on the mixed 'size'/'year' fields goes to SQLite; nearly all else is columnar
    store.close()


def test_after_writes_deletes_and_reopening_the_columns_still_agree(tmp_path):
    store = make_store(tmp_path, n=120)
    rng = np.random.default_rng(5)
    more = records(rng, 120, 60)
    for r in more[:20]:
        r.metadata["brand"] = str(rng.choice(["Acme", "acme", "Zed"]))  # a field the first snapshot did not have
    store.upsert(more)
    store.upsert(records(rng, 10, 5))  # rewrites: new rows, the old ones dead in the snapshot
    store.delete([str(i) for i in range(30, 40)])
    store.refresh()
    assert sql_rows(store, "brand = 'ACME'") == columnar_rows(store, "brand = 'ACME'") != []
    assert assert_same_on_random_filters(store, seed=2, n=200) >= 150
    store.close()
    reopened = LocalStore.open(tmp_path / "idx")
    assert (tmp_path / "idx" / "cache" / f"g{reopened.generation()}" / "columns.npz").is_file()
    assert assert_same_on_random_filters(reopened, seed=3, n=200) >= 150
    reopened.close()


def test_a_search_with_a_filter_returns_the_best_matching_items(tmp_path):
    store = make_store(tmp_path)
    vs, _ = store._state()
    q = np.asarray(vs.vectors[0])
    for text in ["colour = 'red'", "size > 2 AND season != 'winter'", "NOT sale", "year BETWEEN 2009 AND 2011"]:
        allowed = set(sql_rows(store, text))
        scores = {int(r): float(np.asarray(vs.vectors)[p] @ q) for p, r in enumerate(vs.rows) if int(r) in allowed}
        best = sorted(scores, key=lambda r: -scores[r])[:10]
        hits = store.search(q, 10, where=parse_filter(text), exact=True)
        rows = store._rows_for_ids([i for i, _ in hits])
        assert [rows[i] for i, _ in hits] == best, text
    store.close()


def test_filters_the_columns_cannot_answer_go_to_sqlite(tmp_path):
    store = make_store(tmp_path)
    for text in ["id = '5'", "colour = season", "size LIKE '1%'", "year > 9007199254740993"]:
        with pytest.raises(Unsupported):
            columnar_rows(store, text)
        hits = store.search(np.ones(DIM, np.float32) / DIM**0.5, 500, where=parse_filter(text), exact=True)
        assert sorted(store._rows_for_ids([i for i, _ in hits]).values()) == sql_rows(store, text), text
    with pytest.raises(InputError, match="unknown field"):
        store.search(np.ones(DIM, np.float32), 5, where=parse_filter("nope = 1"))
    store.close()


def test_facet_counts_come_from_the_columns_and_match_the_metadata(tmp_path):
    store = make_store(tmp_path)
    ids = [str(i) for i in range(0, 240, 3)]
    got = store.value_counts(ids, ["colour", "season", "size"])
    records_ = store.get(ids)
    for field, counts in got.items():
        expected: dict = {}
        for rec in records_.values():
            v = rec.metadata.get(field)
            if v is not None and v != "":
                expected[v] = expected.get(v, 0) + 1
        assert dict(counts) == expected, field
        assert [c for _, c in counts] == sorted((c for _, c in counts), reverse=True)
    whole = dict(store.facets("season", limit=10))
    assert sum(whole.values()) == sum(1 for r in store.get(store.all_ids()).values() if r.metadata.get("season"))
    store.close()


def test_a_column_extends_with_its_dictionary_still_sorted():
    a = Column.from_values(["b", None, 3, "a"])
    b = Column.from_values(["c", "a", 2.5, None])
    both = Columns({"f": a}, 4).extend(Columns({"f": b, "g": Column.from_values([1, 1, 1, 1])}, 4))
    f = both.fields["f"]
    assert f.strings == ["a", "b", "c"]
    texts = [f.strings[c] if c < len(f.strings) else None for c in f.codes.tolist()]
    assert texts == ["b", None, None, "a", "c", "a", None, None]
    assert np.isnan(both.fields["g"].num[:4]).all() and both.fields["g"].num[4:].tolist() == [1, 1, 1, 1]


def test_like_is_sqlites_like():
    rx = like_regex("r_d%")
    assert rx.fullmatch("Red shoes") and rx.fullmatch("rXd") and not rx.fullmatch("rd")
    assert like_regex("ü%").fullmatch("ü") and not like_regex("ü%").fullmatch("Ü")  # ASCII letters only
    assert like_regex("a.b").fullmatch("a.b") and not like_regex("a.b").fullmatch("axb")
