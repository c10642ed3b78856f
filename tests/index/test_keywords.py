"""Keyword search over the snapshot's term table ranks as FTS5's bm25() does."""

from __future__ import annotations

import numpy as np

from vestis.index.filters import parse_filter
from vestis.index.keywords import TermTable, Tokenizer
from vestis.index.local import LocalStore
from vestis.index.store import Record, StoreInfo

WORDS = "Red running shoes shoe runs Men women Café cafe navy blue shirt T-Shirt jeans slim fit casual summer".split()
WORDS += ["Nike", "Puma", "über", "Ubér", "x_y", "42"]


def make_store(tmp_path, n=300, seed=0) -> LocalStore:
    rng = np.random.default_rng(seed)
    store = LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", 4))
    store.upsert(records(rng, 0, n))
    store.refresh()
    return store


def records(rng, start, n):
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 7)))) if rng.random() < 0.8 else ""
        colour = str(rng.choice(["Red", "Blue", "Navy Blue", "Black"]))
        body = f"{colour} {rng.choice(['Men', 'Women'])} {rng.choice(['Summer', 'Winter'])}"
        v = rng.normal(size=4).astype(np.float32)
        out.append(Record(id=str(start + i), vector=v / np.linalg.norm(v), title=title, body=body,
                          metadata={"colour": colour, "n": start + i}))  # fmt: skip
    return out


def agree(store: LocalStore, query: str, k: int = 15, where=None) -> None:
    """Same scores as FTS5 for the same items; ids equal wherever the scores are not tied."""
    ours = store.keyword_search(query, k, where=where)
    theirs = store._fts_search(query, k, where)
    assert len(ours) == len(theirs), query
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-9, err_msg=query)
    if ours:
        last = ours[-1][1]
        assert {i for i, s in ours if s > last + 1e-9} == {i for i, s in theirs if s > last + 1e-9}, query


QUERIES = ["red running shoes", "Men", "navy blue shirt", "cafe", "CAFÉ slim fit", "über", "run", "summer women nike",
           "42 jeans", "nothing matches this", "T-Shirt", "shoes shoe"]  # fmt: skip


def test_the_term_table_ranks_as_fts5_does(tmp_path):
    store = make_store(tmp_path)
    for q in QUERIES:
        agree(store, q)
        agree(store, q, where=parse_filter("colour = 'red' OR n < 40"))
    assert store.keyword_search("x_y", 5) == store._fts_search("x_y", 5, None)  # a phrase: FTS5 answers
    store.close()


def test_after_writes_and_deletes_the_statistics_follow_the_live_items(tmp_path):
    store = make_store(tmp_path, n=150)
    store.keyword_search("red", 5)  # the first generation's table, then extended
    rng = np.random.default_rng(3)
    store.upsert(records(rng, 150, 80))
    store.upsert(records(rng, 20, 10))  # rewrites: their old rows are dead positions
    store.delete([str(i) for i in range(60, 90)])
    store.refresh()
    for q in QUERIES:
        agree(store, q, k=25)
    store.close()
    reopened = LocalStore.open(tmp_path / "idx")  # the table saved with the snapshot
    gen = reopened.generation()
    assert (tmp_path / "idx" / "cache" / f"g{gen}" / "terms.npz").is_file()
    for q in QUERIES[:4]:
        agree(reopened, q)
    reopened.close()


def test_a_table_extended_equals_one_built_whole():
    docs = [("Red shoes", "Men Summer"), ("", "Blue"), ("running shoe", "Women"), ("Café", "")]
    tok = Tokenizer()
    whole = TermTable.build(docs, tok)
    both = TermTable.build(docs[:2], tok).extend(TermTable.build(docs[2:], tok, start=2))
    assert whole.vocab == both.vocab and "shoe" in whole.vocab and "cafe" in whole.vocab
    for a, b in [(whole.starts, both.starts), (whole.positions, both.positions), (whole.freq, both.freq),
                 (whole.lengths, both.lengths)]:  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert tok.word("running") == ["run"] and tok.word("x_y") == ["x", "y"]
    empty = TermTable.build([("", ""), ("", "")], tok)  # items without text: nothing matches
    assert empty.vocab == [] and len(empty.search(["red"], 5, np.ones(2, bool))[0]) == 0
    assert sorted(empty.extend(TermTable.build(docs, tok, start=2)).search(["shoe"], 5, np.ones(6, bool))[0]) == [2, 4]


ZH_WORDS = ["红色", "連衣裙", "运动鞋", "牛仔裤", "夏季", "黑色的长裙", "Nike运动鞋", "ＴＥＥ", "T恤", "白色"]


def test_chinese_titles_rank_as_fts5_ranks_them(tmp_path):
    """Chinese (and traditional, full-width, mixed) titles: the term table holds what FTS5 indexed."""
    rng = np.random.default_rng(1)
    store = LocalStore.create(tmp_path / "idx", StoreInfo("m", "fp", 4))
    recs = records(rng, 0, 120)
    for r in recs[::2]:
        r.title = "".join(rng.choice(ZH_WORDS, size=int(rng.integers(1, 4))))
    store.upsert(recs)
    store.refresh()
    for q in ["连衣裙", "運動鞋", "红色连衣裙", "nike", "tee", "牛仔褲 jeans", "长裙", "T恤"]:
        agree(store, q)
        assert store.keyword_search(q, 5), q
    store.close()
