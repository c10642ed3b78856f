"""Snapshot files: atomic saves that tolerate losing the race to another reader."""

from __future__ import annotations

import errno
import re

import numpy as np
import pytest

from vestis.errors import InputError
from vestis.index import vectors
from vestis.index.vectors import AnnConfig, build_vector_set, extend_vector_set, load_vector_set, save_vector_set


def snapshot(n: int = 20, seed: int = 0):
    vecs = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return build_vector_set(np.arange(n), vecs / np.linalg.norm(vecs, axis=1, keepdims=True), AnnConfig())


def test_save_and_load_round_trip(tmp_path):
    vs = snapshot()
    save_vector_set(vs, tmp_path / "g1", {"generation": 1})
    loaded, meta = load_vector_set(tmp_path / "g1")
    assert meta["generation"] == 1 and np.array_equal(loaded.rows, vs.rows)
    assert np.array_equal(np.asarray(loaded.vectors), vs.vectors) and np.array_equal(loaded.live, vs.live)


def test_losing_the_race_keeps_the_winner_and_leaves_no_temporary_folder(tmp_path):
    save_vector_set(snapshot(seed=1), tmp_path / "g1", {"generation": 1, "who": "first"})
    save_vector_set(snapshot(seed=2), tmp_path / "g1", {"generation": 1, "who": "second"})
    assert load_vector_set(tmp_path / "g1")[1]["who"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g1"]


def test_a_generation_pruned_by_a_newer_reader_is_not_an_error(tmp_path, monkeypatch):
    # another reader saved g1 first (our rename fails) and a third pruned it before we looked
    def rename(src, dst):
        raise OSError(errno.ENOTEMPTY, "Directory not empty")

    monkeypatch.setattr(vectors.os, "rename", rename)
    save_vector_set(snapshot(), tmp_path / "g1", {"generation": 1})
    assert list(tmp_path.iterdir()) == []


def test_other_failures_are_raised(tmp_path, monkeypatch):
    def rename(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(vectors.os, "rename", rename)
    with pytest.raises(PermissionError):
        save_vector_set(snapshot(), tmp_path / "g1", {"generation": 1})
    assert list(tmp_path.iterdir()) == []


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def numpy_top(vecs: np.ndarray, q: np.ndarray, k: int, mask=None):
    scores = vecs @ q
    if mask is not None:
        scores[~mask] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def test_whole_scans_of_float16_values_run_on_the_half_index_with_the_same_results(monkeypatch):
    import faiss

    n = vectors.HALF_SCAN_MIN + 500
    vecs = unit(n, 32, 3).astype(np.float16).astype(np.float32)  # what a format-2 store holds
    vs = build_vector_set(np.arange(n) * 2, vecs, AnnConfig())  # rows differ from positions
    assert vs.half_index() is not None
    scanned = []
    real = vectors.VectorSet._faiss_search
    monkeypatch.setattr(vectors.VectorSet, "_faiss_search", lambda self, *a: scanned.append(a[0]) or real(self, *a))
    q = unit(5, 32, 4)
    threads = faiss.omp_get_max_threads()
    draw = np.random.default_rng(5).random(n)
    # no filter, most allowed, a quarter allowed: the half index's scan, the others skipped by a selector
    for query in q:
        for m in (None, draw < 0.8, draw < 0.25):
            rows, scores = vs.search(query, 10, m)
            want, want_scores = numpy_top(vecs, query, 10, m)
            assert np.array_equal(rows, want * 2)
            np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert len(scanned) == 15 and all(index is vs.half_index() for index in scanned)
    # one query runs on one OpenMP thread and leaves the caller's thread setting as it was
    assert faiss.omp_get_max_threads() == threads
    # a selective filter gathers its few rows and scans them in numpy: same answer
    few = np.zeros(n, bool)
    few[::97] = True
    assert few.mean() < vectors.HALF_SCAN_SHARE
    rows, _ = vs.search(q[0], 10, few)
    assert np.array_equal(rows, numpy_top(vecs, q[0], 10, few)[0] * 2) and len(scanned) == 15


def test_float32_values_and_small_snapshots_keep_the_exact_numpy_scan():
    n = vectors.HALF_SCAN_MIN + 10
    full = build_vector_set(np.arange(n), unit(n, 16, 6), AnnConfig())  # float32 values: fp16 would round them
    assert full.half_index() is None
    q = unit(1, 16, 7)[0]
    assert np.array_equal(full.search(q, 10)[0], numpy_top(np.asarray(full.vectors), q, 10)[0])
    small = unit(100, 16, 8).astype(np.float16).astype(np.float32)
    assert build_vector_set(np.arange(100), small, AnnConfig()).half_index() is None


def test_ann_settings_change_one_at_a_time_and_refuse_what_no_store_takes():
    base = AnnConfig()
    tuned = base.changed(ef_search=200, threshold=None)  # None: unchanged
    assert tuned == AnnConfig(ef_search=200) and tuned.graph == base.graph
    assert base.changed(quantizer="float16").graph != base.graph
    for changes, message in [
        ({"ef_serch": 10}, "unknown ANN setting 'ef_serch'"),
        ({"ef_search": 0}, "ef_search 0: give a whole number from 1 to 1000"),
        ({"ef_search": 1001}, "from 1 to 1000"),
        ({"ef_search": 2.5}, "ef_search 2.5"),
        ({"threshold": True}, "threshold True"),
        ({"quantizer": "float64"}, "quantizer 'float64': use float32, float16, int8"),
        ({"m": 48}, "ef_construction 80 is less than twice m (48)"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            base.changed(**changes)


def test_a_snapshot_is_extended_with_its_graph_only_while_the_graph_settings_stay():
    vecs = unit(300, 16, 9)
    first = build_vector_set(np.arange(200), vecs[:200], AnnConfig(threshold=100))
    assert first.hnsw is not None
    more = (np.arange(200, 300), vecs[200:])
    same = extend_vector_set(first, np.arange(300), *more, AnnConfig(threshold=100, ef_search=300))
    assert same is not None and same.hnsw is first.hnsw and same.hnsw.ntotal == 300
    assert extend_vector_set(first, np.arange(300), *more, AnnConfig(threshold=100, quantizer="float16")) is None


def test_the_embedded_store_builds_its_graph_again_for_a_new_quantizer(tmp_path):
    import faiss

    from vestis.index.local import LocalStore
    from vestis.index.store import Record, StoreInfo

    ann = AnnConfig(threshold=100).to_dict()
    store = LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", 16, {"ann": ann}))
    vecs = unit(300, 16, 10)
    store.upsert([Record(id=str(i), vector=vecs[i]) for i in range(300)])
    store.refresh()
    assert isinstance(store._snapshot().hnsw, faiss.IndexHNSWFlat)
    store.set_ann(ef_search=200)
    assert isinstance(store._snapshot().hnsw, faiss.IndexHNSWFlat)  # a search setting: the graph stays
    store.set_ann(quantizer="int8")
    assert isinstance(store._snapshot().hnsw, faiss.IndexHNSWSQ) and store._snapshot().hnsw.ntotal == 300
    store.close()
    with LocalStore.open(tmp_path / "idx") as again:  # the snapshot saved on disk is the new one
        assert isinstance(again._snapshot().hnsw, faiss.IndexHNSWSQ)
        assert again.search(vecs[42], 1)[0][0] == "42"
