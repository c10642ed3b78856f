"""The contract every catalog store must keep: the embedded store and PostgreSQL + pgvector.

Each test takes ``make_store``: add a backend to ``BACKENDS`` (a fixture giving a fresh location)
and it must pass them all. ``make_store.open()`` opens the same catalog a second time, as another
process would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from vestis.errors import ConflictError, InputError, VestisError
from vestis.index.filters import parse_filter
from vestis.index.store import Record, StoreInfo
from vestis.index.stores import create_store, open_store
from vestis.index.vectors import AnnConfig

from ..conftest import REPO

DIM = 16
COLOURS = ["Red", "Blue", "Black", "White"]


#: backend name -> the fixture that gives a fresh location for it
BACKENDS = {"local": "tmp_path", "postgres": "pg_store_url"}


def info(ann: AnnConfig | None = None) -> StoreInfo:
    return StoreInfo("test-model", "fp-1", DIM, {"weights": [0.9, 0.1], "ann": (ann or AnnConfig()).to_dict()})


class StoreMaker:
    """``make(ann)`` creates the catalog; ``open()`` opens it again; all are closed after the test."""

    def __init__(self, location) -> None:
        self.location = location
        self.opened = []

    def __call__(self, ann: AnnConfig | None = None):
        return self._keep(create_store(self.location, info(ann)))

    def open(self, writable: bool = False):
        return self._keep(open_store(self.location, writable=writable))

    def _keep(self, store):
        self.opened.append(store)
        return store


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request):
    location = request.getfixturevalue(BACKENDS[request.param])
    maker = StoreMaker(location / "idx" if request.param == "local" else location)
    yield maker
    for s in maker.opened:
        s.close()


def unit(rng, n):
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(n, seed=0, start=0):
    rng = np.random.default_rng(seed)
    vecs = unit(rng, n)
    return [
        Record(
            id=str(start + i), vector=vecs[i], id_value=start + i, content_hash=f"h{start + i}",
            image_hash=f"img{(start + i) % 7}", title=f"{COLOURS[i % 4].lower()} product number {start + i}",
            body=f"{COLOURS[i % 4]} season{i % 3}",
            metadata={"id": start + i, "baseColour": COLOURS[i % 4], "n": start + i, "even": (start + i) % 2 == 0},
            thumbnail=b"\xff\xd8jpeg" if i % 2 else None,
        )
        for i in range(n)
    ]  # fmt: skip


def brute(recs, q, k, keep=lambda r: True):
    scored = sorted(((float(r.vector @ q), r.id) for r in recs if keep(r)), reverse=True)
    return [i for _, i in scored[:k]]


def test_upsert_get_count_and_fields(make_store):
    store = make_store()
    recs = records(20)
    store.upsert(recs)
    assert store.count() == 20
    assert set(store.fields()) == {"id", "baseColour", "n", "even"}
    got = store.get(["3", "4", "nope"], vectors=True, thumbnails=True)
    assert sorted(got) == ["3", "4"]
    assert got["3"].metadata["baseColour"] == "White" and got["3"].id_value == 3
    np.testing.assert_allclose(got["3"].vector, recs[3].vector, atol=1e-3)  # kept as float16 (format 2)
    assert got["3"].thumbnail == b"\xff\xd8jpeg" and got["4"].thumbnail is None
    assert store.content_hashes()["7"] == "h7"


def test_exact_search_matches_brute_force(make_store):
    store = make_store()
    recs = records(200)
    store.upsert(recs)
    q = unit(np.random.default_rng(9), 1)[0]
    hits = store.search(q, 10)
    assert [i for i, _ in hits] == brute(recs, q, 10)
    assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))


@pytest.mark.parametrize("threshold", [10**9, 50])  # exact, and an HNSW graph
def test_filters_apply_inside_the_search(make_store, threshold):
    store = make_store(AnnConfig(threshold=threshold, ef_search=200))
    recs = records(400)
    store.upsert(recs)
    q = unit(np.random.default_rng(3), 1)[0]
    flt = parse_filter("baseColour = 'Red' AND n < 40")  # 10 of 400 items match
    hits = store.search(q, 25, where=flt)
    assert len(hits) == 10  # every match, though 25 were asked and they are rare
    assert [i for i, _ in hits] == brute(
        recs, q, 25, lambda r: r.metadata["baseColour"] == "Red" and r.metadata["n"] < 40
    )
    assert store.search(q, 5, where=parse_filter("baseColour = 'Purple'")) == []


def test_hnsw_recall_and_exclusions(make_store):
    store = make_store(AnnConfig(threshold=100, ef_search=128))
    recs = records(1500)
    store.upsert(recs)
    rng = np.random.default_rng(4)
    recall = []
    for q in unit(rng, 20):
        hits = [i for i, _ in store.search(q, 10)]
        recall.append(len(set(hits) & set(brute(recs, q, 10))) / 10)
        exact = [i for i, _ in store.search(q, 10, exact=True)]
        assert exact == brute(recs, q, 10)
    assert np.mean(recall) >= 0.9
    q = recs[5].vector
    assert store.search(q, 1)[0][0] == "5"
    assert "5" not in [i for i, _ in store.search(q, 10, exclude=["5"])]


def test_ann_settings_apply_to_the_next_search_and_a_new_graph_shape_is_built(make_store):
    """A thin graph (m 4) searched with ef_search 1 misses neighbours (the search explores k = 10 at
    least); ef_search 1000 finds nearly all. The settings are kept (another opening reads them); a new
    quantizer builds the graph again, and the search still finds what the graph holds."""
    store = make_store(AnnConfig(threshold=100, m=4, ef_construction=8, ef_search=1))
    recs = records(3000)
    store.upsert(recs)
    store.refresh()
    queries = unit(np.random.default_rng(8), 20)

    def recall() -> float:
        found = [len({i for i, _ in store.search(q, 10)} & set(brute(recs, q, 10))) / 10 for q in queries]
        return float(np.mean(found))

    narrow = recall()
    generation = store.generation()
    assert store.set_ann(ef_search=1000) == AnnConfig(threshold=100, m=4, ef_construction=8, ef_search=1000)
    wide = recall()
    assert wide > narrow + 0.1 and wide >= 0.95, (narrow, wide)
    assert store.generation() > generation  # a write: what is derived from the catalog is derived again
    assert make_store.open().ann_config.ef_search == 1000
    assert store.set_ann(ef_search=1000, threshold=None) == store.ann_config  # nothing to change: no write
    with pytest.raises(InputError, match="quantizer 'float64'"):
        store.set_ann(quantizer="float64")
    store.set_ann(quantizer="float16", m=8, ef_construction=40)
    assert store.ann_config.graph == (8, 40, "float16")
    assert recall() >= 0.95
    assert store.search(recs[7].vector, 1)[0][0] == "7"


def test_delete_and_reinsert_are_seen_by_search(make_store):
    store = make_store(AnnConfig(threshold=50))
    recs = records(120)
    store.upsert(recs)
    q = recs[10].vector
    assert store.search(q, 1)[0][0] == "10"
    assert store.delete(["10", "11", "missing"]) == ["10", "11"]
    assert store.count() == 118
    assert "10" not in [i for i, _ in store.search(q, 20)]
    moved = records(1, seed=99, start=10)[0]
    moved.vector = recs[50].vector.copy()
    store.upsert([moved])  # back with another vector
    ids = [i for i, _ in store.search(recs[50].vector, 2)]
    assert set(ids) == {"10", "50"}
    assert store.check()["ok"]


def test_upsert_replaces_by_id(make_store):
    store = make_store()
    store.upsert(records(5))
    changed = records(1, seed=5, start=2)[0]
    changed.metadata["baseColour"] = "Green"
    store.upsert([changed])
    assert store.count() == 5
    assert store.get(["2"])["2"].metadata["baseColour"] == "Green"
    np.testing.assert_allclose(store.get(["2"], vectors=True)["2"].vector, changed.vector, atol=1e-3)


def test_a_failed_write_changes_nothing(make_store):
    store = make_store()
    store.upsert(records(10))
    bad = records(3, start=100)
    bad[2].vector = np.ones(DIM + 1, np.float32)
    with pytest.raises(InputError, match="dim"):
        store.upsert(bad)
    assert store.count() == 10 and "100" not in store.get(["100"])


def test_keyword_search_with_filters(make_store):
    store = make_store()
    store.upsert(records(40))
    hits = store.keyword_search("red product", 50)
    assert hits and all(store.get([i])[i].metadata["baseColour"] == "Red" for i, _ in hits[:10])
    only_even = store.keyword_search("red", 50, where=parse_filter("n < 20"))
    assert {i for i, _ in only_even} == {str(n) for n in range(0, 20, 4)}
    assert store.keyword_search('" OR * NEAR(', 5) == []  # FTS syntax in user text is inert
    assert store.keyword_search("", 5) == []


#: A mixed catalog: Chinese shop titles (one traditional, Latin brands glued on) beside English ones.
MIXED = [
    ("夏季红色连衣裙", "Apparel Dresses"), ("Nike黑色运动鞋", "Footwear Sports Shoes"),
    ("男士蓝色牛仔裤", "Apparel Jeans"), ("red summer dress", "Apparel Dresses"),
    ("黑色的长裙", "Apparel Dresses"), ("白色運動鞋", "Footwear Sports Shoes"),
    ("Puma running shoes", "Footwear Sports Shoes"), ("蓝色修身牛仔裤 slim fit", "Apparel Jeans"),
    ("红色 T恤", "Apparel Tshirts"), ("black jeans", "Apparel Jeans"),
]  # fmt: skip


def mixed_records() -> list[Record]:
    vecs = unit(np.random.default_rng(5), len(MIXED))
    return [Record(id=str(i), vector=vecs[i], id_value=i, content_hash=f"m{i}", title=t, body=b,
                   metadata={"n": i, "kind": b.split()[0]}) for i, (t, b) in enumerate(MIXED)]  # fmt: skip


def found(store, query: str, **kw) -> set[int]:
    return {int(i) for i, _ in store.keyword_search(query, 20, **kw)}


def test_chinese_keyword_search_beside_english(make_store):
    store = make_store()
    store.upsert(mixed_records())
    assert found(store, "连衣裙") == {0}
    assert found(store, "运动鞋") == {1, 5}  # 白色運動鞋 is written in traditional characters
    assert found(store, "牛仔裤") == {2, 7}
    assert found(store, "連衣裙") == found(store, "连衣裙") and found(store, "牛仔褲") == {2, 7}  # traditional queries
    assert found(store, "nike") == {1} and found(store, "slim") == {7}  # Latin beside Chinese is a word of its own
    assert found(store, "jeans") == {2, 7, 9}  # English words in the body, as before
    assert found(store, "T恤") == {8} and found(store, "ｔ恤") == {8}  # full width folds (NFKC)
    two = store.keyword_search("红色连衣裙", 20)  # two words: any of them, the item with both first
    assert two[0][0] == "0" and {int(i) for i, _ in two} == {0, 8}
    assert found(store, "运动鞋", where=parse_filter("n > 3")) == {5}
    assert store.get(["5"])["5"].title == "白色運動鞋"  # shown as given
    assert found(store, "裙子") == set()  # a word no title has (dresses are 连衣裙 and 长裙 here)
    assert store.check()["ok"]
    store.delete(["1"])
    assert found(store, "运动鞋") == {5} and store.check()["ok"]


def test_facets_and_image_hash_lookup(make_store):
    store = make_store()
    store.upsert(records(12))
    assert dict(store.facets("baseColour")) == {"Red": 3, "Blue": 3, "Black": 3, "White": 3}
    assert sorted(store.ids_with_image_hash("img0")) == ["0", "7"]
    with pytest.raises(InputError, match="no field"):
        store.facets("nope")


def test_bad_queries_are_clear_errors(make_store):
    store = make_store()
    store.upsert(records(5))
    with pytest.raises(InputError, match="dim"):
        store.search(np.ones(DIM + 2, np.float32), 3)
    with pytest.raises(InputError, match="unknown field"):
        store.search(np.ones(DIM, np.float32), 3, where=parse_filter("colour = 'Red'"))


def test_concurrent_readers_while_one_writer_adds(make_store):
    store = make_store()
    store.upsert(records(50))
    errors, counts = [], {0: [], 1: []}
    done = threading.Event()

    def reader(n_thread):
        try:
            with open_store(make_store.location) as r:
                q = unit(np.random.default_rng(1), 1)[0]
                while not done.is_set():
                    n = r.count()
                    hits = r.search(q, 5)
                    assert len(hits) == 5
                    counts[n_thread].append(n)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for b in range(10):
        store.upsert(records(20, seed=b + 1, start=1000 + 20 * b))
    done.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    for seen in counts.values():  # each reader saw whole batches, never going back
        assert seen and seen == sorted(seen) and all((n - 50) % 20 == 0 for n in seen)
    assert store.count() == 250


def test_one_writer_at_a_time(make_store):
    store = make_store()
    other = make_store.open(writable=True)
    with store.writer(), pytest.raises(VestisError, match="another process"):
        other.upsert(records(1))
    other.upsert(records(1))  # the lock is free again


def test_two_writers_at_once_each_batch_whole(make_store):
    """Two writers racing: each batch is refused (ConflictError) or stored whole; retried, all land."""
    make_store().upsert(records(50))
    refused, errors = [0, 0], []

    def writer(w):
        try:
            with open_store(make_store.location, writable=True) as store:
                for b in range(8):
                    while True:
                        try:
                            store.upsert(records(20, seed=10 * w + b, start=1000 * (w + 1) + 20 * b))
                            break
                        except ConflictError:
                            refused[w] += 1
                            time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with make_store.open() as store:
        assert store.count() == 50 + 2 * 8 * 20
        assert store.check()["ok"]
        got = store.get([str(1000 * (w + 1) + i) for w in range(2) for i in range(160)], vectors=True)
        assert len(got) == 320
        np.testing.assert_allclose(got["2005"].vector, records(20, seed=10, start=2000)[5].vector, atol=1e-3)


_KILLED_WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.index.test_store_contract import info, records
from vestis.index.stores import create_store
store = create_store({location!r}, info())
for b in range(10**6):
    store.upsert(records({batch}, seed=b, start=10**6 + {batch} * b))
    print(b, flush=True)
"""


def test_a_writer_killed_mid_batch_leaves_whole_batches(make_store):
    make_store().upsert(records(30))
    batch = 3000
    code = _KILLED_WRITER.format(repo=str(REPO), location=str(make_store.location), batch=batch)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "0", proc.stderr.read()  # one batch committed
        time.sleep(0.15)  # well inside a later batch (each takes longer than this)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    store = make_store.open(writable=True)
    deadline = time.monotonic() + 60
    while True:  # the dead writer's lock goes with it (PostgreSQL: once the server has noticed the closed session)
        try:
            with store.writer():
                n = store.count()
                assert n >= 30 + batch and (n - 30) % batch == 0, n  # whole batches only
                assert store.check()["ok"]
                store.upsert(records(5, start=900))
                assert store.count() == n + 5
            break
        except ConflictError:
            assert time.monotonic() < deadline, "the killed writer's lock was never released"
            time.sleep(0.1)


def test_refuses_vectors_of_another_model(make_store):
    make_store().upsert(records(2))
    with pytest.raises(InputError, match="test-model"):
        create_store(make_store.location, StoreInfo("other", "fp-2", DIM, {}))


def test_value_counts_over_some_items(make_store):
    store = make_store()
    recs = records(12)
    store.upsert(recs)
    ids = [r.id for r in recs[:6]]
    got = store.value_counts(ids, ["baseColour", "even", "id"])
    assert sorted(got["baseColour"]) == [("Black", 1), ("Blue", 2), ("Red", 2), ("White", 1)]
    assert sorted(got["even"]) == [(0, 3), (1, 3)]  # booleans count as 1/0, as filters see them
    assert got["id"] == [(i, 1) for i in sorted(ids)]


def test_build_reports_newest_first_and_only_the_latest_kept(make_store, monkeypatch):
    from vestis.index import local, postgres

    for module in (local, postgres):
        monkeypatch.setattr(module, "KEEP_REPORTS", 3)
    store = make_store()
    assert store.reports() == []
    for n in range(5):
        store.save_report({"mode": "add", "seen": n, "unreadable_images": [{"id": "x", "reason": "é"}]})
    got = store.reports(10)
    assert [r["seen"] for r in got] == [4, 3, 2] and got[0]["unreadable_images"][0]["reason"] == "é"
    assert [r["seen"] for r in make_store.open().reports(1)] == [4]  # another process sees them


def test_warm_loads_what_a_first_search_needs_and_changes_no_result(make_store, monkeypatch):
    """A server warms each catalog before it says it is ready: the embedded store loads its
    snapshot and builds the fp16 scan index then (not on the first query); results are the same."""
    from vestis.index import vectors

    monkeypatch.setattr(vectors, "HALF_SCAN_MIN", 100)
    recs = records(300)
    make_store().upsert(recs)
    q = unit(np.random.default_rng(5), 1)[0]
    cold = make_store.open().search(q, 10)
    store = make_store.open()
    store.warm()
    if hasattr(store, "_snap"):  # the embedded store: its derived state is in memory now
        assert store._snap is not None
        assert store._snap[1]._half not in (None, False)  # built by warm(), not by a search
    assert store.search(q, 10) == cold
    assert [i for i, _ in cold] == brute(recs, q, 10)
