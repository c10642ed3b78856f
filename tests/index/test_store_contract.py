"""The contract every catalog store must keep (the local store today; PostgreSQL later).

Each test takes ``make_store``: add a backend to ``BACKENDS`` and it must pass them all.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vestis.errors import InputError, VestisError
from vestis.index.filters import parse_filter
from vestis.index.local import LocalStore
from vestis.index.store import Record, StoreInfo
from vestis.index.vectors import AnnConfig

DIM = 16
COLOURS = ["Red", "Blue", "Black", "White"]


def _local(tmp_path, ann: AnnConfig | None = None):
    settings = {"weights": [0.9, 0.1], "ann": (ann or AnnConfig()).to_dict()}
    return LocalStore.create(tmp_path / "idx", StoreInfo("test-model", "fp-1", DIM, settings))


BACKENDS = {"local": _local}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request, tmp_path):
    opened = []

    def make(ann: AnnConfig | None = None):
        store = BACKENDS[request.param](tmp_path, ann)
        opened.append(store)
        return store

    yield make
    for s in opened:
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


def test_concurrent_readers_while_one_writer_adds(make_store, tmp_path):
    store = make_store()
    store.upsert(records(50))
    errors, counts = [], {0: [], 1: []}
    done = threading.Event()

    def reader(n_thread):
        try:
            with LocalStore.open(tmp_path / "idx") as r:
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


def test_one_writer_at_a_time(make_store, tmp_path):
    store = make_store()
    other = LocalStore.open(tmp_path / "idx", writable=True)
    try:
        with store.writer(), pytest.raises(VestisError, match="another process"):
            other.upsert(records(1))
    finally:
        other.close()


def test_refuses_vectors_of_another_model(make_store, tmp_path):
    make_store().upsert(records(2))
    with pytest.raises(InputError, match="test-model"):
        LocalStore.create(tmp_path / "idx", StoreInfo("other", "fp-2", DIM, {}))
