"""The on-disk format: float16 vectors keep search results; format-1 indexes open, upgrade, and
unknown formats are refused with the fix."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from vestis.errors import VestisError
from vestis.index.local import DB_NAME, SCHEMA_VERSION, LocalStore, upgrade_index
from vestis.index.store import Record, StoreInfo

DIM = 64


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few centres (near neighbours close together, as real embeddings are)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM))
    v = centres[rng.integers(0, 20, n)] + rng.normal(scale=0.6, size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_records(vectors: np.ndarray) -> list[Record]:
    out = []
    for i, v in enumerate(vectors):
        rec = Record(id=str(i), vector=v, metadata={"i": i}, title=f"item {i}" if i % 3 == 0 else "")
        rec.image_vector = v if i % 3 else v[::-1].copy()  # titled items: the image vector differs
        rec.text_vector = v[::-1].copy() if i % 3 == 0 else None
        rec.thumbnail = b"\xff\xd8thumb"
        out.append(rec)
    return out


def format_1_store(path) -> LocalStore:
    """An empty index as vestis wrote them before float16 (format 1)."""
    LocalStore.create(path, StoreInfo("m", "fp", DIM)).close()
    con = sqlite3.connect(path / DB_NAME)
    con.execute("UPDATE info SET value = '1' WHERE key = 'schema_version'")
    con.execute("DELETE FROM info WHERE key = 'vector_dtype'")
    con.commit()
    con.close()
    return LocalStore.open(path, writable=True)


def recall_at_10(store: LocalStore, vectors: np.ndarray, queries: np.ndarray) -> float:
    found = 0
    for q in queries:
        truth = set(np.argsort(-(vectors @ q), kind="stable")[:10].tolist())
        found += len(truth & {int(i) for i, _ in store.search(q, 10, exact=True)})
    return found / (10 * len(queries))


def test_float16_vectors_keep_the_float32_results(tmp_path):
    vectors, queries = clustered(3000), clustered(200, seed=1)
    store = LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", DIM))
    store.upsert(make_records(vectors))
    store.refresh()
    assert store.vector_dtype == np.float16
    assert recall_at_10(store, vectors, queries) >= 0.99
    got = store.get(["0", "1"], vectors=True)
    np.testing.assert_allclose(got["1"].vector, vectors[1], atol=1e-3)
    np.testing.assert_array_equal(got["1"].image_vector, got["1"].vector)  # stored once
    np.testing.assert_allclose(got["0"].image_vector, vectors[0][::-1], atol=1e-3)  # differs: stored
    assert got["0"].text_vector is None  # no query reads it
    ids, image_vectors = store.image_vectors()
    assert len(ids) == 3000 and np.allclose(image_vectors[1], vectors[1], atol=1e-3)
    sizes = store._con.execute("SELECT length(vec), length(img_vec), txt_vec FROM vectors WHERE row = 2").fetchone()
    assert sizes == (DIM * 2, 0, None)
    store.close()


def test_a_format_1_index_opens_searches_and_upgrades(tmp_path):
    vectors, queries = clustered(2000), clustered(50, seed=2)
    path = tmp_path / "old"
    store = format_1_store(path)
    assert store.vector_dtype == np.float32
    store.upsert(make_records(vectors))  # written as format 1 writes: float32, three vectors
    store.refresh()
    before = [store.search(q, 10, exact=True) for q in queries]
    old = store.get(["0"], vectors=True)["0"]
    np.testing.assert_array_equal(old.vector, vectors[0])
    np.testing.assert_array_equal(old.text_vector, vectors[0][::-1])
    store.close()

    report = upgrade_index(path)
    assert report["upgraded"] and report["mb_after"] < report["mb_before"]
    store = LocalStore.open(path)
    assert store.vector_dtype == np.float16 and store.count() == 2000
    after = [store.search(q, 10, exact=True) for q in queries]
    overlap = np.mean([len({i for i, _ in a} & {i for i, _ in b}) / 10 for a, b in zip(before, after)])
    assert overlap >= 0.99
    rec = store.get(["0", "1"], vectors=True)
    np.testing.assert_allclose(rec["0"].image_vector, vectors[0][::-1], atol=1e-3)
    np.testing.assert_array_equal(rec["1"].image_vector, rec["1"].vector)
    assert rec["0"].thumbnail is None and store.get(["0"], thumbnails=True)["0"].thumbnail == b"\xff\xd8thumb"
    assert store.check()["ok"]
    store.close()
    assert upgrade_index(path)["upgraded"] is False  # already in the current format


#: The keyword index as formats 1 and 2 wrote it: FTS5 over the titles as given.
FORMAT_2_FTS = [
    "DROP TRIGGER items_ai", "DROP TRIGGER items_ad", "DROP TABLE fts", "DROP VIEW items_kw",
    "ALTER TABLE items DROP COLUMN kw_title", "ALTER TABLE items DROP COLUMN kw_body",
    "CREATE VIRTUAL TABLE fts USING fts5(title, body, content='items', content_rowid='row', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN "
    "INSERT INTO fts(rowid, title, body) VALUES (new.row, new.title, new.body); END",
    "CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN "
    "INSERT INTO fts(fts, rowid, title, body) VALUES ('delete', old.row, old.title, old.body); "
    "DELETE FROM vectors WHERE row = old.row; DELETE FROM thumbs WHERE row = old.row; END",
    "UPDATE info SET value = '2' WHERE key = 'schema_version'",
]  # fmt: skip

TITLES = ["red summer dress", "夏季红色连衣裙", "Nike黑色运动鞋", "black running shoes", "男士牛仔褲", "blue jeans"]


def format_2_index(path, titles=TITLES) -> None:
    """An index of format 2 (keyword text as given) holding ``titles``."""
    LocalStore.create(path, StoreInfo("m", "fp", DIM)).close()
    con = sqlite3.connect(path / DB_NAME)
    for stmt in FORMAT_2_FTS:
        con.execute(stmt)
    con.commit()
    con.close()
    store = LocalStore.open(path)  # read-only: not converted; written here as format 2 wrote
    recs = make_records(clustered(len(titles)))
    con = store._con
    con.execute("BEGIN")
    for i, (r, title) in enumerate(zip(recs, titles)):
        con.execute("INSERT INTO items (id, id_json, content_hash, meta, title, body) VALUES (?, ?, 'h', '{}', ?, ?)",
                    (str(i), str(i), title, "Apparel"))  # fmt: skip
        con.execute("INSERT INTO vectors VALUES (last_insert_rowid(), ?, X'', NULL)", (store._encode(r.vector),))
    con.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
    con.execute("COMMIT")
    store.close()


def hits(store, query):
    return {int(i) for i, _ in store.keyword_search(query, 10)}


def test_a_format_2_index_is_searched_as_built_then_converted_when_opened_for_writing(tmp_path):
    path = tmp_path / "old"
    format_2_index(path)
    with LocalStore.open(path) as store:  # read-only: searched as it was built
        before = {q: store.keyword_search(q, 10) for q in ("red", "shoes", "jeans dress", "nike")}
        assert hits(store, "red") == {0} and hits(store, "连衣裙") == set()  # the old index cannot cut Chinese
    with LocalStore.open(path, writable=True) as store:  # converted: one transaction
        assert store.converted_keyword_text and store.check()["ok"]
        assert store._keyword_version() == SCHEMA_VERSION
        assert hits(store, "连衣裙") == {1} and hits(store, "运动鞋") == {2} and hits(store, "牛仔裤") == {4}
        assert hits(store, "nike") == {2}  # was one token with the Chinese beside it
        for q, got in before.items():
            if q != "nike":  # English words find the same items (the scores move: Chinese titles have more words now)
                assert [i for i, _ in store.keyword_search(q, 10)] == [i for i, _ in got], q
        assert store.get(["4"])["4"].title == "男士牛仔褲"
        store.upsert([Record(id="9", vector=clustered(1)[0], title="白色连衣裙")])
        assert hits(store, "连衣裙") == {1, 9}
        store.delete(["1"])
        assert hits(store, "连衣裙") == {9} and store.check()["ok"]
    with LocalStore.open(path, writable=True) as store:
        assert not store.converted_keyword_text  # once


def test_upgrade_converts_the_keyword_text_of_a_float16_index(tmp_path):
    path = tmp_path / "old"
    format_2_index(path)
    report = upgrade_index(path)
    assert report["upgraded"]
    with LocalStore.open(path) as store:
        assert hits(store, "运动鞋") == {2} and store.vector_dtype == np.float16
    assert upgrade_index(path)["upgraded"] is False
    english = tmp_path / "english"  # an English catalog: the same results and scores to the last bit
    format_2_index(english, [t for t in TITLES if t.isascii()] + ["Café crème", "über slim fit"])
    queries = ["red", "shoes", "jeans dress", "cafe", "uber", "running blue"]
    with LocalStore.open(english) as store:
        before = [store.keyword_search(q, 10) for q in queries]
    assert upgrade_index(english)["upgraded"]
    with LocalStore.open(english) as store:
        assert [store.keyword_search(q, 10) for q in queries] == before


@pytest.mark.parametrize(("version", "fix"), [(SCHEMA_VERSION + 1, "newer vestis: upgrade vestis"), (0, "rebuild it")])
def test_formats_it_cannot_read_are_refused_with_the_fix(tmp_path, version, fix):
    LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", DIM)).close()
    con = sqlite3.connect(tmp_path / "idx" / DB_NAME)
    con.execute("UPDATE info SET value = ? WHERE key = 'schema_version'", (json.dumps(version),))
    con.commit()
    con.close()
    with pytest.raises(VestisError, match=f"index format {version}.*{fix}"):
        LocalStore.open(tmp_path / "idx")


def test_the_installed_cli_upgrades_an_index_and_names_what_it_cannot(tmp_path):
    from tests.test_cli import run

    path = tmp_path / "old"
    store = format_1_store(path)
    store.upsert(make_records(clustered(500)))
    store.close()
    proc = run("index", "upgrade", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["upgraded"] and report["mb_after"] < report["mb_before"]
    with LocalStore.open(path) as store:
        assert store.vector_dtype == np.float16 and store.count() == 500
    again = run("index", "upgrade", str(path))
    assert again.returncode == 0 and "already in the current format" in " ".join(again.stdout.split())
    missing = run("index", "upgrade", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such index directory" in missing.stderr and "Traceback" not in missing.stderr
