"""What only the PostgreSQL store has: its schema version, the two filtered-search paths (exact
scan, iterative HNSW scan), the halfvec index, and filters that mean what they mean in the
embedded store (the same items for the same filter, on the same records)."""

from __future__ import annotations

import numpy as np
import pytest

from vestis.errors import InputError, VestisError
from vestis.index import postgres
from vestis.index.filters import parse_filter
from vestis.index.local import LocalStore
from vestis.index.postgres import PostgresStore
from vestis.index.store import Record
from vestis.index.vectors import AnnConfig

from .test_store_contract import DIM, brute, info, records, unit


def hnsw_scans(store: PostgresStore) -> int:
    store._con.execute("SELECT pg_stat_force_next_flush()")
    row = store._con.execute(
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE schemaname = %s AND indexrelname = 'items_hnsw'",
        [store.schema],
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_newer_schema_is_refused_and_an_empty_database_named(pg_store_url):
    with pytest.raises(InputError, match="holds no vestis catalog"):
        PostgresStore.open(pg_store_url)
    with PostgresStore.create(pg_store_url, info()) as store:
        store.upsert(records(3))
        store._con.execute("INSERT INTO schema_version (version) VALUES (%s)", [postgres.SCHEMA_VERSION + 1])
    with pytest.raises(VestisError, match=f"version {postgres.SCHEMA_VERSION + 1}, newer than this vestis"):
        PostgresStore.open(pg_store_url)


def test_selective_filters_are_exact_and_wide_ones_scan_the_index_iteratively(pg_store_url, monkeypatch):
    store = PostgresStore.create(pg_store_url, info(AnnConfig(threshold=100, ef_search=40)))
    recs = records(1000)
    store.upsert(recs)
    assert store.check()["hnsw"]
    q = unit(np.random.default_rng(5), 1)[0]
    rare = parse_filter("baseColour = 'Red' AND n < 40")  # 10 of 1000 items
    want = brute(recs, q, 25, lambda r: r.metadata["baseColour"] == "Red" and r.metadata["n"] < 40)
    before = hnsw_scans(store)
    assert [i for i, _ in store.search(q, 25, where=rare)] == want  # exact: all 10
    assert hnsw_scans(store) == before
    monkeypatch.setattr(postgres, "EXACT_FILTER_MAX", 0)  # the iterative index scan, even for 10 matches
    got = [i for i, _ in store.search(q, 25, where=rare)]
    assert hnsw_scans(store) > before
    assert got == want  # ef_search 40 alone would find almost none of them: the scan went on until it had all 10
    wide = parse_filter("even = 1")  # half the items
    hits = store.search(q, 10, where=wide)
    exact = brute(recs, q, 10, lambda r: r.metadata["even"])
    assert len(hits) == 10 and all(int(i) % 2 == 0 for i, _ in hits)
    assert len({i for i, _ in hits} & set(exact)) >= 8
    store.close()


def test_halfvec_index_keeps_recall(pg_store_url):
    store = PostgresStore.create(pg_store_url, info(AnnConfig(threshold=100, quantizer="float16")))
    recs = records(1000)
    store.upsert(recs)
    indexdef = store._con.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'items_hnsw'", [store.schema]
    ).fetchone()[0]
    assert "halfvec" in indexdef and "halfvec_ip_ops" in indexdef
    recall = []
    for q in unit(np.random.default_rng(8), 30):
        hits = store.search(q, 10)
        recall.append(len({i for i, _ in hits} & set(brute(recs, q, 10))) / 10)
        assert abs(hits[0][1] - float(next(r for r in recs if r.id == hits[0][0]).vector @ q)) < 1e-5  # full precision
    assert np.mean(recall) >= 0.95
    store.close()


FILTERS = [
    "baseColour = 'red'", "baseColour != 'RED'", "baseColour IN ('blue', 'Black')", "baseColour NOT IN ('white')",
    "n < 7", "n >= 10 AND n <= 12", "n BETWEEN 3 AND 5", "price IS NULL", "price IS NOT NULL AND price < 2.5",
    "price > -1.5", "even = 1", "even AND n < 9", "NOT even", "name LIKE 'ROSE%'", "name LIKE '%é%'", "id = 5",
    "id = '5'", "id IN (1, '2', 3)", "id < 4", "id BETWEEN 2 AND 4", "season = 'été'", "season = 'ÉTÉ'",
    "tag = 'x''; DROP TABLE items; --'",
    "(baseColour = 'Red' OR n > 10) AND NOT even",
]  # fmt: skip


def test_filters_select_the_same_items_as_in_the_embedded_store(pg_store_url, tmp_path):
    rows = [
        {"baseColour": ["Red", "Blue", "Black", "White"][i % 4], "n": i, "even": i % 2 == 0,
         "price": None if i % 5 == 0 else round(i * 0.75 - 2, 2), "name": ["rose dress", "Rosé top", "jeans"][i % 3],
         "season": ["été", "Été", "winter"][i % 3], "tag": "x"}
        for i in range(16)
    ]  # fmt: skip
    vecs = unit(np.random.default_rng(2), len(rows))
    recs = [Record(id=str(i), vector=vecs[i], id_value=i, metadata=r, content_hash="h") for i, r in enumerate(rows)]
    pg = PostgresStore.create(pg_store_url, info())
    local = LocalStore.create(tmp_path / "idx", info())
    for store in (pg, local):
        store.upsert(recs)
    q = vecs[0]
    for text in FILTERS:
        flt = parse_filter(text)
        a = sorted(i for i, _ in pg.search(q, 100, where=flt))
        b = sorted(i for i, _ in local.search(q, 100, where=flt))
        assert a == b, (text, a, b)
    assert sorted(i for i, _ in pg.search(q, 100, where=parse_filter("baseColour = 'red'"))) == ["0", "12", "4", "8"]
    assert pg.count() == 16  # the quoted DROP TABLE stayed a value
    with pytest.raises(InputError, match="unknown field"):
        pg.search(q, 3, where=parse_filter("colour = 'Red'"))
    pg.close()
    local.close()


def test_copy_upserts_are_idempotent(pg_store_url):
    store = PostgresStore.create(pg_store_url, info())
    recs = records(300)
    store.upsert(recs)
    store.upsert(recs)
    store.upsert(recs[:10] + recs[:10])  # the same id twice in one batch: the last one is stored
    assert store.count() == 300
    assert store.content_hashes() == {r.id: r.content_hash for r in recs}
    got = store.get(["7"], vectors=True, thumbnails=True)["7"]
    np.testing.assert_array_equal(got.vector, recs[7].vector)
    assert got.thumbnail == recs[7].thumbnail and got.metadata == recs[7].metadata
    with pytest.raises(ValueError):
        store.upsert([Record(id="x", vector=recs[0].vector, metadata={"p": float("nan")})])
    assert store.count() == 300 and store.check()["ok"]
    store.close()


def test_keyword_search_ranks_titles_above_other_text(pg_store_url):
    store = PostgresStore.create(pg_store_url, info())
    v = unit(np.random.default_rng(1), 3)
    store.upsert([
        Record(id="a", vector=v[0], title="navy shirt", body="cotton"),
        Record(id="b", vector=v[1], title="cotton shirt", body="navy"),
        Record(id="c", vector=v[2], title="jeans", body="denim"),
    ])  # fmt: skip
    assert [i for i, _ in store.keyword_search("navy", 5)] == ["a", "b"]
    assert [i for i, _ in store.keyword_search("Shirts!", 5)][:2] in (["a", "b"], ["b", "a"])  # stemmed
    assert store.keyword_search("the", 5) == []  # a stop word alone matches nothing
    assert DIM == store.info.dim
    store.close()
