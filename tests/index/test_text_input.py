"""Text as people and catalogs send it: full width, invisible characters, emoji, mixed and right-to-left
scripts, far too long, nothing left after cleaning. Through the encoder, a build's titles, search queries,
the installed CLI: handled, or an error naming the problem; never a traceback, never a damaged index."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.test_cli import run
from vestis.errors import InputError
from vestis.index.build import build_index
from vestis.index.local import LocalStore
from vestis.models.text import catalog_text, clean_text
from vestis.search import Catalog, parse_terms

from .test_cli_catalog import last_json

ZWSP, RLO, BOM, WJ = "\u200b", "\u202e", "\ufeff", "\u2060"


def same(enc, a: str, b: str) -> bool:
    x, y = enc.encode_texts([a, b])
    return bool(np.allclose(x, y, atol=1e-6))


def test_the_encoder_reads_full_width_and_invisible_characters_as_the_plain_text(tiny):
    assert same(tiny, "ｒｅｄ　ｄｒｅｓｓ　４２", "red dress 42")  # full-width letters, digits, ideographic space
    assert same(tiny, f"re{ZWSP}d dre{WJ}ss{BOM}", "red dress")  # zero-width characters glue nothing
    assert same(tiny, f"{RLO}red dress\u202c", "red dress")  # a right-to-left override is dropped
    assert same(tiny, "red\u00a0dress", "red dress")
    assert not same(tiny, "红色连衣裙，夏季", "红色连衣裙,夏季")  # full-width punctuation is Chinese text: kept
    for bad, problem in [(f"{ZWSP}{WJ} {RLO}", "invisible"), ("  ", "empty"), ("a\x00b", "control character"),
                         ("x\ud800", "surrogate")]:  # fmt: skip
        with pytest.raises(InputError, match=problem):
            tiny.encode_texts(["fine", bad])


def test_emoji_mixed_and_right_to_left_scripts_embed(tiny):
    texts = [
        "👗",
        "red dress 👗👠",
        "فستان أحمر",
        "שמלה אדומה",
        "Nike运动鞋 running",
        "платье красное",
        "👩\u200d👩\u200d👧",
    ]
    vecs = tiny.encode_texts(texts)
    assert np.all(np.isfinite(vecs)) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert len({v.tobytes() for v in vecs}) == len(texts)


def test_text_far_beyond_the_context_is_cut_not_tokenised_whole(tiny):
    long = "red summer dress with long sleeves " * 30_000  # a megabyte
    t0 = time.perf_counter()
    vec = tiny.encode_texts([long])
    assert time.perf_counter() - t0 < 30
    assert same(tiny, long, "red summer dress with long sleeves " * 60)  # the same first tokens
    chinese = "红色连衣裙" * 200_000
    assert same(tiny, chinese, "红色连衣裙" * 400) and np.isfinite(vec).all()


def test_catalog_text_never_raises():
    assert catalog_text("blue\x00jeans\x07") == "blue jeans"
    assert catalog_text("shirt \ud800") == "shirt \ufffd"
    assert catalog_text(f"{ZWSP}{BOM}") == "" and catalog_text(12) == "12"
    assert clean_text("ｎｉｋｅ，连衣裙") == "nike，连衣裙"


ROWS = [
    ("ｒｅｄ　ｄｒｅｓｓ", "full width"), (f"{ZWSP}{WJ}", "invisible only"), ("blue\x00 jeans", "a NUL"),
    ("linen shirt \ud800", "a lone surrogate"), ("فستان أحمر", "right to left"), ("👗 party dress 👠", "emoji"),
    ("Nike运动鞋 白色", "mixed"), ("夏季紅色連衣裙", "traditional"), ("black boots " * 50_000, "far too long"),
    (f"{RLO}green coat", "an override"),
]  # fmt: skip


@pytest.fixture(scope="module")
def odd_index(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("odd")
    rows = [{"id": i, "image": None, "title": t, "kind": kind} for i, (t, kind) in enumerate(ROWS)]
    report = build_index(rows, folder / "idx", encoder=tiny, quiet=True)
    return folder / "idx", report


def test_a_build_takes_odd_titles(odd_index):
    path, report = odd_index
    assert report.added == len(ROWS) - 1 and [x["id"] for x in report.not_indexed] == ["1"]  # nothing to embed
    with LocalStore.open(path) as store:
        assert store.check()["ok"] and store.count() == len(ROWS) - 1
        titles = {i: r.title for i, r in store.get([str(i) for i in range(len(ROWS))]).items()}
        assert titles["0"] == "red dress" and titles["2"] == "blue  jeans" and titles["9"] == "green coat"
        assert titles["3"] == "linen shirt \ufffd" and store.get(["3"])["3"].metadata["title"] == "linen shirt \ufffd"
        assert len(titles["8"]) == len(("black boots " * 50_000).strip())

        def found(q):
            return {int(i) for i, _ in store.keyword_search(q, 10)}

        assert found("dress") == {0, 5} and found("ｄｒｅｓｓ") == {0, 5} and found("jeans") == {2}
        assert found("فستان") == {4} and found("运动鞋") == {6} and found("连衣裙") == {7} and found("boots") == {8}
        assert found("👗") == set() and found(ZWSP) == set() and found("x" * 100_000) == set()


def test_search_queries_with_odd_text(odd_index, tiny):
    path, _ = odd_index
    with Catalog.open(path, encoder=tiny) as cat:
        assert [h.id for h in cat.search("ｒｅｄ　ｄｒｅｓｓ", k=5).hits] == [
            h.id for h in cat.search("red dress", k=5).hits
        ]
        assert [t.text for t in parse_terms("连衣裙，－碎花：0.3")] == ["连衣裙", "碎花"]
        assert parse_terms("连衣裙，－碎花：0.3")[1].weight == -0.3
        for q in ["👗", "فستان أحمر", "連衣裙 dress", "dress " * 100_000, f"re{ZWSP}d"]:
            assert len(cat.search(q, k=3, hybrid=0.5).hits) == 3, q[:20]
        assert cat.search("連衣裙", k=3, hybrid=0.9).hits[0].id == 7  # the keyword match first
        with pytest.raises(InputError, match="empty once invisible characters"):
            cat.search(f"{ZWSP}{RLO}", k=3)


def test_the_installed_cli_searches_with_odd_text_and_names_what_it_cannot(odd_index):
    path, _ = odd_index
    bad = run("search", str(path), f"{ZWSP}{WJ}", "--json", timeout=1200)  # generous: a shared machine
    assert bad.returncode == 2 and "invisible characters" in bad.stderr and "Traceback" not in bad.stderr
    out = last_json(run("search", str(path), "連衣裙", "--hybrid", "0.9", "--k", "3", "--json", timeout=1200))
    assert out["results"][0]["id"] == 7
    out = last_json(run("search", str(path), "ｂｏｏｔｓ 👢", "--k", "3", "--json", timeout=1200))
    assert len(out["results"]) == 3


def test_odd_query_text_over_http(odd_index, tiny):
    """Over a real server: full width reads as the plain text, invisible characters only are a 400 naming
    them, Chinese, emoji and Arabic queries answer through hybrid search."""
    import httpx2

    from vestis.serve.app import ServeConfig, create_app

    from ..serve.conftest import ServerThread
    from ..serve.test_security import assert_openai_error

    path, _ = odd_index
    with ServerThread(create_app(ServeConfig(catalogs=[path]), encoder=tiny)) as server:
        with httpx2.Client(base_url=server.url, timeout=600) as c:
            plain = c.post("/v1/search", json={"query": "dress", "k": 5}).json()["results"]
            wide = c.post("/v1/search", json={"query": "ｄｒｅｓｓ\u3000", "k": 5}).json()["results"]
            assert [r["id"] for r in wide] == [r["id"] for r in plain] and len(plain) == 5
            err = assert_openai_error(c.post("/v1/search", json={"query": "\u200b\u2060\u202e"}), 400)
            assert "invisible characters" in err["message"], err
            for q in ["牛仔裤 jeans", "👖", "جينز", "連衣裙"]:
                r = c.post("/v1/search", json={"query": q, "k": 3, "hybrid": 0.9})
                assert r.status_code == 200 and len(r.json()["results"]) == 3, r.text
            assert r.json()["results"][0]["id"] == 7  # 連衣裙: the keyword match first
