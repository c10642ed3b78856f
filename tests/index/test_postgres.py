"""What only the PostgreSQL store has: its schema version, the two filtered-search paths (exact
scan, iterative HNSW scan), the halfvec index, and filters that mean what they mean in the
embedded store (the same items for the same filter, on the same records)."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from vestis.errors import InputError, UnavailableError, VestisError
from vestis.index import postgres
from vestis.index.filters import parse_filter
from vestis.index.local import LocalStore
from vestis.index.postgres import PostgresStore
from vestis.index.store import Record
from vestis.index.vectors import AnnConfig

from .test_store_contract import DIM, brute, info, records, unit


def sql(store: PostgresStore, query: str, params=()) -> list[tuple]:
    """``query``'s rows, run on one of the store's connections."""

    def run(con):
        cur = con.execute(query, params)
        return cur.fetchall() if cur.description else []

    return store._read(run)


def hnsw_scans(store: PostgresStore) -> int:
    """Scans of the HNSW index so far. One caller at a time uses the pool's first connection only, so the
    statistics flushed are those of the backend that searched."""
    sql(store, "SELECT pg_stat_force_next_flush()")
    rows = sql(
        store,
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE schemaname = %s AND indexrelname = 'items_hnsw'",
        [store.schema],
    )
    return int(rows[0][0]) if rows else 0


def test_a_newer_schema_is_refused_and_an_empty_database_named(pg_store_url):
    with pytest.raises(InputError, match="holds no vestis catalog"):
        PostgresStore.open(pg_store_url)
    with PostgresStore.create(pg_store_url, info()) as store:
        store.upsert(records(3))
        sql(store, "INSERT INTO schema_version (version) VALUES (%s)", [postgres.SCHEMA_VERSION + 1])
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
    monkeypatch.setattr(postgres, "plan_filtered", lambda *a: postgres.FilteredPlan(False, 25))  # the index, for 10
    got = [i for i, _ in store.search(q, 25, where=rare)]
    assert hnsw_scans(store) > before
    assert got == want  # ef_search 40 alone would find almost none of them: the scan went on until it had all 10
    wide = parse_filter("even = 1")  # half the items
    hits = store.search(q, 10, where=wide)
    exact = brute(recs, q, 10, lambda r: r.metadata["even"])
    assert len(hits) == 10 and all(int(i) % 2 == 0 for i, _ in hits)
    assert len({i for i, _ in hits} & set(exact)) >= 8
    store.close()


def test_an_index_scan_that_comes_back_short_is_followed_by_the_exact_one(pg_store_url, monkeypatch):
    """The planner's estimate chooses the path; one too high (correlated conditions, stale statistics)
    sends a rare filter to the index scan, which may give up (``MAX_SCAN_TUPLES``) before it has met every
    match: here it keeps only its first 3, and the matches still all come, from the exact scan after it."""
    store = PostgresStore.create(pg_store_url, info(AnnConfig(threshold=100, ef_search=40)))
    recs = records(1000)
    store.upsert(recs)
    q = unit(np.random.default_rng(6), 1)[0]
    rare = parse_filter("baseColour = 'Red' AND n < 40")
    want = brute(recs, q, 25, lambda r: r.metadata["baseColour"] == "Red" and r.metadata["n"] < 40)
    monkeypatch.setattr(postgres, "plan_filtered", lambda *a: postgres.FilteredPlan(False, 25))
    scans = []
    real = PostgresStore._index_search

    def gives_up_early(self, *args, **kw):
        scans.append(real(self, *args, **kw))
        return scans[-1][:3]

    monkeypatch.setattr(PostgresStore, "_index_search", gives_up_early)
    assert [i for i, _ in store.search(q, 25, where=rare)] == want
    assert len(scans) == 1 and [i for i, _ in scans[0]] == want  # the index was searched first
    store.close()


def test_the_exact_scan_is_chosen_while_it_reads_fewer_rows_than_the_index_scan_visits():
    def plan(share: float, items: int, k: int = 10, pool: int = 40) -> postgres.FilteredPlan:
        return postgres.plan_filtered(share * items, items, k, pool, 96)

    assert plan(0.01, 40_000).exact and plan(0.05, 40_000).exact and not plan(0.3, 40_000).exact
    assert plan(0.005, 1_000_000).exact and not plan(0.01, 1_000_000).exact  # 10,000 rows against ~1,000 visits
    assert plan(0.0, 1_000_000).exact and plan(1e-6, 1_000_000).exact  # nothing or one match
    assert not plan(1.0, 1_000_000).exact
    # rare matches: the scan stops at k; common ones: the full re-rank pool (they come with the first visits)
    assert plan(0.01, 1_000_000).candidates == 10 and plan(0.3, 40_000).candidates == 40
    assert 10 < plan(0.03, 1_000_000).candidates < 40
    assert plan(0.3, 40_000, k=100, pool=116).candidates == 116 and plan(0.01, 1e6, k=100, pool=116).candidates == 100
    assert plan(0.3, 40_000, pool=10).candidates == 10  # a float32 index re-ranks nothing
    assert postgres.plan_filtered(500, -1, 10, 40, 96).exact  # never analysed: the estimate alone, as all items
    assert not postgres.plan_filtered(50_000, -1, 10, 40, 96).exact


def test_a_new_quantizer_builds_the_hnsw_index_again_over_the_new_expression(pg_store_url):
    """The index's expression follows the quantizer (halfvec casts for float16): an index left over the old
    one would not serve the new query, and every search would sort the table."""
    store = PostgresStore.create(pg_store_url, info(AnnConfig(threshold=100)))
    store.upsert(records(400))

    def definition() -> str:
        return sql(store, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'items_hnsw'",
                   [store.schema])[0][0]  # fmt: skip

    assert "halfvec" not in definition()
    store.set_ann(quantizer="float16")
    assert "halfvec(16)" in definition() and "halfvec_ip_ops" in definition()
    q = unit(np.random.default_rng(3), 1)[0]
    before = hnsw_scans(store)
    assert len(store.search(q, 10)) == 10
    assert hnsw_scans(store) == before + 1
    store.set_ann(ef_search=300)  # a search setting: the index stays as it is
    assert "halfvec(16)" in definition() and store.check()["hnsw"]
    store.close()


@pytest.mark.parametrize("quantizer", ["float32", "float16"])
def test_a_catalog_with_an_index_searches_it(pg_store_url, quantizer):
    """Above the threshold every search goes through the HNSW index: the planner, left alone, sorts the
    whole table at small sizes (it costs neither the halfvec cast nor the distance per row), 40x slower."""
    store = PostgresStore.create(pg_store_url, info(AnnConfig(threshold=100, quantizer=quantizer)))
    recs = records(1000)
    store.upsert(recs)
    q = unit(np.random.default_rng(3), 1)[0]
    before = hnsw_scans(store)
    hits = store.search(q, 10)
    assert hnsw_scans(store) == before + 1
    assert len({i for i, _ in hits} & set(brute(recs, q, 10))) >= 8
    store.close()


def test_halfvec_index_keeps_recall(pg_store_url):
    store = PostgresStore.create(pg_store_url, info(AnnConfig(threshold=100, quantizer="float16")))
    recs = records(1000)
    store.upsert(recs)
    indexdef = sql(
        store, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'items_hnsw'", [store.schema]
    )[0][0]
    assert "halfvec" in indexdef and "halfvec_ip_ops" in indexdef
    recall = []
    for q in unit(np.random.default_rng(8), 30):
        hits = store.search(q, 10)
        recall.append(len({i for i, _ in hits} & set(brute(recs, q, 10))) / 10)
        assert abs(hits[0][1] - float(next(r for r in recs if r.id == hits[0][0]).vector @ q)) < 1e-5  # full precision
    assert np.mean(recall) >= 0.95
    store.close()


def test_the_hnsw_build_gets_the_memory_its_graph_needs(pg_store_url, monkeypatch, caplog):
    """pgvector builds the graph in memory while it fits ``maintenance_work_mem``, then goes on on disk many
    times slower, with a notice. The build raises the setting to what the graph needs (up to a cap), never
    lowers what the connection was given, and passes pgvector's notice on as a warning."""
    recs = records(3000)  # a graph of a few MB

    def build(url: str) -> str:
        caplog.clear()
        with PostgresStore.create(url, info(AnnConfig(threshold=100))) as store, caplog.at_level("WARNING"):
            with store.writer():
                store.upsert(recs)
                store.refresh()
            assert store.check()["hnsw"]
            hits = store.search(recs[7].vector, 3)
        assert hits[0][0] == recs[7].id
        return caplog.text

    def url(schema_prefix: str, memory: str) -> str:
        return (
            pg_store_url.replace("schema=", f"schema={schema_prefix}")
            + f"&options=-c%20maintenance_work_mem%3D{memory}"
        )

    assert postgres.hnsw_build_bytes(3000, DIM, "float32", 32) > 1024**2
    assert "maintenance_work_mem" not in build(url("a", "1MB"))  # raised to the graph's size for the build
    monkeypatch.setattr(postgres, "HNSW_BUILD_MEMORY_MAX", 1024**2)
    assert "no longer fits into maintenance_work_mem" in build(url("b", "1MB"))  # capped: pgvector's notice, told
    assert "maintenance_work_mem" not in build(url("c", "1GB"))  # a larger setting of the connection's own is kept


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


# ------------------------------------------------------------ connections: pool, reconnect, clear errors


def admin(url: str):
    """A connection of the test's own to the store's database."""
    import psycopg

    return psycopg.connect(postgres.split_url(url)[0], autocommit=True)


def backends(url: str, schema: str, *, waiting: bool = False) -> list[int]:
    """The server processes of the store's connections (``waiting``: those waiting for a lock)."""
    with admin(url) as con:
        rows = con.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND (NOT %s OR wait_event_type = 'Lock')",
            [f"vestis/{schema}", waiting],
        ).fetchall()
    return [r[0] for r in rows]


def terminate(url: str, pids: list[int]) -> None:
    """End those server processes, as a restart or a dropped link ends a connection (waiting until they are gone)."""
    with admin(url) as con:
        for pid in pids:
            con.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])


def until(found, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (got := found()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return got


def test_readers_in_threads_share_a_pool_and_a_writer_does_not_hold_them_up(pg_store_url):
    store = PostgresStore.create(pg_store_url, info())
    recs = records(200)
    store.upsert(recs)
    queries = unit(np.random.default_rng(3), 8)
    expected = [store.search(q, 5) for q in queries]
    barrier = threading.Barrier(8)
    got: dict[int, list] = {}

    def reader(i: int) -> None:
        barrier.wait()
        got[i] = [store.search(queries[i], 5) for _ in range(15)]

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(got[i] == [expected[i]] * 15 for i in range(8))
    assert store._pool.get_stats()["pool_size"] > 1  # several connections: the threads did not queue on one
    holding, release = threading.Event(), threading.Event()

    def write() -> None:
        with store.writer():
            holding.set()
            release.wait(60)

    writer = threading.Thread(target=write)
    writer.start()
    assert holding.wait(30)
    counted: list[int] = []
    reader_thread = threading.Thread(target=lambda: counted.append(store.count()))
    reader_thread.start()
    reader_thread.join(20)
    release.set()
    writer.join(30)
    assert counted == [200]  # answered while the writer held the lock, not after
    store.close()


def test_the_store_url_names_the_schema_and_the_pool_size():
    url = postgres.split_url("postgresql://u@h/db?sslmode=disable&pool_size=3&schema=shop")
    assert url == ("postgresql://u@h/db?sslmode=disable", "shop", 3)  # libpq gets its own parameters only
    assert postgres.split_url("postgresql://u@h/db").pool_size == postgres.POOL_SIZE == 8
    for bad in ("0", "-1", "abc", "2.5", "", "1001"):
        with pytest.raises(InputError, match=re.escape(f"pool_size {bad!r} in the store URL: give the most")):
            postgres.split_url(f"postgresql://u@h/db?pool_size={bad}")


def test_pool_size_in_the_url_bounds_the_connections_readers_share(pg_store_url):
    url = f"{pg_store_url}&pool_size=2"
    store = PostgresStore.create(url, info())
    store.upsert(records(200))
    queries = unit(np.random.default_rng(5), 6)
    expected = [store.search(q, 5) for q in queries]
    barrier = threading.Barrier(6)
    got: dict[int, list] = {}
    connections: list[int] = []
    done = threading.Event()

    def reader(i: int) -> None:
        barrier.wait()
        got[i] = [store.search(queries[i], 5) for _ in range(10)]

    def watch() -> None:
        while not done.is_set():
            connections.append(len(backends(url, store.schema)))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    watcher.join(30)
    assert all(got[i] == [expected[i]] * 10 for i in range(6))  # six threads, answered on two connections
    assert store._pool.max_size == 2 and store._pool.get_stats()["pool_size"] == 2
    assert connections and max(connections) <= 2
    store.close()


@pytest.mark.parametrize("connections", [1, 3])
def test_connections_lost_while_idle_are_replaced(pg_store_url, connections):
    """Lost a moment after their last use, every connection the pool holds: none is checked before the read
    takes it (used within ``CHECK_IDLE``), so the read finds each lost in turn and runs again until a new one
    answers."""
    store = PostgresStore.create(pg_store_url + f"&pool_size={connections}", info())
    store.upsert(records(30))
    store._pool.resize(min_size=connections)
    store._pool.wait(30)
    q = unit(np.random.default_rng(4), 1)[0]
    before = store.search(q, 5)
    for _ in range(connections):  # each connection used just now (the pool hands them out in turn)
        assert store.search(q, 5) == before
    pids = backends(pg_store_url, store.schema)
    assert len(pids) == connections
    terminate(pg_store_url, pids)
    assert store.count() == 30 and store.search(q, 5) == before  # no error: new connections
    assert not set(backends(pg_store_url, store.schema)) & set(pids)
    store.upsert(records(5, start=30))  # the writer takes a new one too
    assert store.count() == 35
    store.close()


def test_a_read_cut_off_mid_query_runs_again_and_a_cut_off_write_fails_clearly(pg_store_url):
    store = PostgresStore.create(pg_store_url, info())
    store.upsert(records(40))
    outcome: dict = {}

    def run(name, fn):
        try:
            outcome[name] = fn()
        except Exception as exc:  # what the caller would see
            outcome[name] = exc

    for name, fn in (("read", store.count), ("write", lambda: store.upsert(records(5, start=40)))):
        with admin(pg_store_url) as lock:
            lock.execute("BEGIN")
            lock.execute(f'LOCK TABLE "{store.schema}".items IN ACCESS EXCLUSIVE MODE')
            t = threading.Thread(target=run, args=(name, fn))
            t.start()
            stuck = until(lambda: backends(pg_store_url, store.schema, waiting=True))  # the query, mid-way
            terminate(pg_store_url, stuck)
            time.sleep(0.5)
            lock.execute("COMMIT")
            t.join(60)
    assert outcome["read"] == 40  # run again on a new connection
    err = outcome["write"]
    assert isinstance(err, UnavailableError), repr(err)
    assert "connection failed during a write" in str(err) and "not committed" in str(err)
    assert store.count() == 40 and store.check()["ok"]  # nothing of the cut-off batch
    store.upsert(records(5, start=40))  # the write lock went with the lost session: writing goes on
    assert store.count() == 45
    store.close()


def test_a_restarted_server_is_reconnected_to_and_an_absent_one_named(pg_store_url, pg_restart):
    store = PostgresStore.create(pg_store_url, info())
    store.upsert(records(20))
    store._pool.timeout = 3.0  # how long a query waits for a connection (15 s by default)
    with pg_restart():  # the server is stopped in the block
        with pytest.raises(UnavailableError, match="no working connection to the database within 3 s"):
            store.count()
    store._pool.timeout = 15.0
    assert store.count() == 20 and len(store.search(records(1)[0].vector, 3)) == 3
    store.upsert(records(3, start=20))
    assert store.count() == 23
    store.close()


#: Statements that take a catalog of today back to schema 4's layout: the tsvector a column of ``items``.
AS_SCHEMA_4 = [
    "DROP TABLE words",
    f"ALTER TABLE items ADD COLUMN tsv tsvector GENERATED ALWAYS AS ({postgres._TSV}) STORED",
    "CREATE INDEX items_tsv ON items USING gin (tsv)",
    "UPDATE schema_version SET version = 4",
]


def test_a_version_1_catalog_is_migrated_and_keeps_reports(pg_store_url):
    store = PostgresStore.create(pg_store_url, info())
    store.upsert(records(4))
    for stmt in AS_SCHEMA_4[:-1]:
        sql(store, stmt)
    sql(store, "DROP TABLE reports")  # as vestis before build reports in the database wrote it
    sql(store, "DELETE FROM schema_version WHERE version > 1")
    store.close()
    with PostgresStore.open(pg_store_url, writable=True) as store:
        assert sql(store, "SELECT max(version) FROM schema_version")[0][0] == postgres.SCHEMA_VERSION
        assert store.reports() == [] and store.count() == 4
        for n in range(3):
            store.save_report({"mode": "add", "seen": n})
        assert [r["seen"] for r in store.reports(2)] == [2, 1]


def test_a_version_4_catalog_gets_its_words_a_table_of_their_own(pg_store_url):
    from .test_store_contract import found, mixed_records

    store = PostgresStore.create(pg_store_url, info())
    store.upsert(mixed_records())
    for stmt in AS_SCHEMA_4:
        sql(store, stmt)
    store.close()
    with PostgresStore.open(pg_store_url, writable=True) as store:
        assert sql(store, "SELECT max(version) FROM schema_version")[0][0] == postgres.SCHEMA_VERSION == 5
        assert not sql(store, "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                              "AND table_name = 'items' AND column_name = 'tsv'", [store.schema])  # fmt: skip
        assert found(store, "连衣裙") == {0} and found(store, "jeans") == {2, 7, 9} and store.check()["ok"]
        store.delete(["2"])  # an item's words go with it
        assert found(store, "jeans") == {7, 9} and sql(store, "SELECT count(*) FROM words")[0][0] == store.count()
        sql(store, "DELETE FROM words WHERE rid = (SELECT min(rid) FROM items)")
        assert not store.check()["ok"] and store.check()["items_without_words"] == 1


def test_vectors_stay_in_the_row(pg_store_url):
    """A 512-d vector (2 KB) is kept in its row, not moved out to the TOAST table (from where every exact
    scan and re-rank fetched it, several times slower); a catalog of version 3 is migrated to that."""
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 512)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

    def write(store, version: str) -> None:
        store.upsert([Record(id=str(i), vector=v, content_hash=version, title=f"item {i}", metadata={"n": i})
                      for i, v in enumerate(vecs)])  # fmt: skip

    def out_of_line(store) -> int:
        return sql(store, "SELECT count(*) FROM items WHERE pg_column_toast_chunk_id(vec) IS NOT NULL")[0][0]

    wide = postgres.StoreInfo("test-model", "fp-1", 512, info().settings)
    with PostgresStore.create(pg_store_url, wide) as store:
        write(store, "a")
        assert out_of_line(store) == 0
        assert store.search(vecs[3], 1)[0][0] == "3"
        for stmt in ["ALTER TABLE items ALTER COLUMN vec SET STORAGE EXTENDED",  # the table as schema 3 left it
                     "ALTER TABLE items RESET (toast_tuple_target)"]:  # fmt: skip
            sql(store, stmt)
        write(store, "b")
        assert out_of_line(store) == 50
        for stmt in [*AS_SCHEMA_4[:-1], "UPDATE schema_version SET version = 3"]:  # ... and its words
            sql(store, stmt)
    with PostgresStore.open(pg_store_url, writable=True) as store:
        assert sql(store, "SELECT max(version) FROM schema_version")[0][0] == postgres.SCHEMA_VERSION == 5
        write(store, "c")
        assert out_of_line(store) == 0
        assert store.search(vecs[7], 1)[0][0] == "7"


def test_a_version_2_catalog_gets_its_keyword_text_prepared(pg_store_url):
    from .test_store_contract import found, mixed_records

    store = PostgresStore.create(pg_store_url, info())
    store.upsert(mixed_records())
    for stmt in [  # the catalog as vestis before prepared keyword text wrote it: tsvector of the text as given
        "DROP TABLE words", "ALTER TABLE items DROP COLUMN kw_title, DROP COLUMN kw_body",
        "ALTER TABLE items ADD COLUMN tsv tsvector GENERATED ALWAYS AS (setweight(to_tsvector('english', title), "
        "'A') || setweight(to_tsvector('english', body), 'B')) STORED",
        "CREATE INDEX items_tsv ON items USING gin (tsv)", "UPDATE schema_version SET version = 2",
    ]:  # fmt: skip
        sql(store, stmt)

    def matches(word: str) -> int:
        return sql(store, "SELECT count(*) FROM items WHERE tsv @@ plainto_tsquery('english', %s)", [word])[0][0]

    assert matches("连衣裙") == 0 and matches("jeans") == 3  # PostgreSQL's parser cannot cut Chinese
    store.close()
    with PostgresStore.open(pg_store_url) as store:  # migrated on opening, as every schema change
        assert sql(store, "SELECT max(version) FROM schema_version")[0][0] == postgres.SCHEMA_VERSION == 5
        assert found(store, "连衣裙") == {0} and found(store, "運動鞋") == {1, 5} and found(store, "jeans") == {2, 7, 9}
        assert sql(store, "SELECT count(*) FROM items WHERE kw_title IS NOT NULL")[0][0] == 7  # the Chinese titles
        assert store.check()["ok"]
