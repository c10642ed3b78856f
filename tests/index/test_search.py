"""Search quality and behaviour with the bundled model on real KAGL products."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vestis.data import kagl_parquets
from vestis.errors import InputError
from vestis.html import render_results
from vestis.index.build import build_index
from vestis.search import Catalog, parse_steer, parse_terms

DARK = {"Black", "Navy Blue", "Brown", "Charcoal", "Grey", "Maroon", "Coffee Brown", "Steel", "Olive", "Burgundy"}


@pytest.fixture(scope="module")
def cat(kagl_index, mini):
    with Catalog.open(kagl_index[0], encoder=mini) as c:
        yield c


def kinds(results, field="articleType"):
    return collections.Counter(h.metadata[field] for h in results.hits)


#: Search-quality bars set on 2,000 KAGL products; the bundled demo set's 300 hold too few of each kind.
needs_kagl = pytest.mark.skipif(not kagl_parquets(), reason="quality bars measured on KAGL (../shared/data)")


@needs_kagl
def test_text_search_finds_the_named_kind(cat):
    for query, label in (("jeans", "Jeans"), ("watch", "Watches"), ("handbag", "Handbags")):
        got = kinds(cat.search(query, k=10))
        assert got[label] >= 6, (query, got)


def test_image_search_finds_its_own_item_first(cat, kagl_index):
    _, table = kagl_index
    row = table.slice(7, 1).to_pylist()[0]
    res = cat.search(image=row["image"], k=5)
    assert res.hits[0].id == row["id"] and res.hits[0].score > 0.9


def test_filters_are_applied_inside_the_search(cat):
    res = cat.search("shoes", k=20, where="baseColour IN ('Black', 'Brown') AND usage = 'Formal'")
    assert res.hits and all(h.metadata["baseColour"] in ("Black", "Brown") for h in res.hits)
    assert all(h.metadata["usage"] == "Formal" for h in res.hits)
    from vestis.index.filters import parse_filter

    matching = cat.store._filter_rows(parse_filter("baseColour IN ('Black', 'Brown') AND usage = 'Formal'"))
    assert len(res.hits) == min(20, len(matching))  # never fewer than asked while matches remain
    assert cat.search("shoes", k=5, where="baseColour = 'No Such Colour'").hits == []


def test_negative_terms_push_results_away(cat):
    plain = kinds(cat.search("shoes", k=20), "baseColour")
    without_black = kinds(cat.search("shoes, -black", k=20), "baseColour")
    assert without_black["Black"] < plain["Black"]


@needs_kagl
def test_steering_darker_and_more_formal(cat):
    base = cat.search("tshirt", k=20)
    darker = cat.search("tshirt", k=20, steer=["darker"])
    dark = lambda r: sum(h.metadata["baseColour"] in DARK for h in r.hits)  # noqa: E731
    assert dark(darker) > dark(base)
    assert kinds(darker)["Tshirts"] >= 15  # still t-shirts
    formal = kinds(cat.search("shoes", k=20, steer=["casual->formal"]), "usage")
    assert formal["Formal"] > kinds(cat.search("shoes", k=20), "usage")["Formal"]
    white = [h for h in cat.search("white tshirt", k=40).hits if h.metadata["baseColour"] == "White"][:5]
    assert len(white) == 5
    before = [dark(cat.similar(str(h.id), k=10)) for h in white]
    after = [dark(cat.similar(str(h.id), k=10, steer=["darker"])) for h in white]
    # v7 measured 1.2 -> 3.8 dark neighbours of 10 (v6: +3 or more); steering is weaker over its features
    assert np.mean(after) >= max(np.mean(before) + 2, 2 * np.mean(before)), (before, after)


def test_hybrid_keyword_weight(cat):
    words = lambda r: sum("puma" in (h.metadata["productDisplayName"] or "").lower() for h in r.hits)  # noqa: E731
    assert words(cat.search("puma", k=10, hybrid=1.0)) >= words(cat.search("puma", k=10)) + 1
    res = cat.search("puma", k=10, hybrid=0.5)
    assert any(h.keyword_rank for h in res.hits) and all(h.cosine is not None for h in res.hits)


def test_pagination_threshold_and_limits(cat):
    full = cat.search("dress", k=30)
    pages = [cat.search("dress", k=10, offset=o) for o in (0, 10, 20)]
    assert [h.id for p in pages for h in p.hits] == [h.id for h in full.hits]
    cut = full.hits[12].score
    assert all(h.score >= cut for h in cat.search("dress", k=30, min_score=cut).hits)
    for kwargs, message in (
        ({"k": 0}, "k must"), ({"offset": -1}, "offset"), ({"hybrid": 2.0}, "hybrid"),
        ({"steer": ["fancier"]}, "unknown steering"), ({"where": "colour = 'Red'"}, "unknown field"),
    ):  # fmt: skip
        with pytest.raises(InputError, match=message):
            cat.search("dress", **kwargs)
    with pytest.raises(InputError, match="empty"):
        cat.search(" , ")
    with pytest.raises(InputError, match="no item"):
        cat.similar("no-such-id")


def test_similar_excludes_the_item_and_its_exact_duplicates(tmp_path, mini, kagl_index):
    _, table = kagl_index
    rows = table.slice(0, 40).to_pylist()
    rows.append({**rows[3], "id": 10**9})  # the same photo under another id
    path = tmp_path / "dups.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    build_index(path, tmp_path / "idx", encoder=mini, quiet=True)
    with Catalog.open(tmp_path / "idx", encoder=mini) as c:
        res = c.similar(str(rows[3]["id"]), k=39)
        ids = [h.id for h in res.hits]
        assert rows[3]["id"] not in ids and 10**9 not in ids and len(ids) == 39
        assert res.query["excluded_duplicates"] == 1


def test_query_parsing():
    assert parse_terms("red summer dress") == [parse_terms("red summer dress")[0]]
    terms = parse_terms("dress, -floral, beach:0.5, -lace:2")
    assert [(t.text, t.weight) for t in terms] == [("dress", 1.0), ("floral", -0.5), ("beach", 0.5), ("lace", -2.0)]
    assert parse_steer("darker") == ("dark", "light") and parse_steer("casual->formal") == ("formal", "casual")


def test_html_page_escapes_metadata(cat):
    res = cat.search("jeans", k=3, thumbnails=True)
    res.hits[0].metadata = {**res.hits[0].metadata, "productDisplayName": "<script>alert(1)</script>"}
    html = render_results("jeans <b>", [("jeans", res)])
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert html.count('src="data:image/jpeg;base64,') == 3


def test_exact_and_hnsw_agree_on_the_catalog(tmp_path, mini, kagl_index):
    _, table = kagl_index
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    build_index(path, tmp_path / "idx", encoder=mini, quiet=True, ann={"threshold": 100})
    with Catalog.open(tmp_path / "idx", encoder=mini) as c:
        assert c.store._snapshot().hnsw is not None
        recall = []
        for q in ("jeans", "red dress", "black watch", "sports shoes", "handbag", "kurta", "sunglasses"):
            approx = {h.id for h in c.search(q, k=10).hits}
            exact = {h.id for h in c.search(q, k=10, exact=True).hits}
            recall.append(len(approx & exact) / 10)
        assert np.mean(recall) >= 0.95


def test_hits_as_dicts_and_item_queries(cat, kagl_index):
    _, table = kagl_index
    row = table.slice(3, 1).to_pylist()[0]
    res = cat.search("jeans", k=3, offset=2)
    d = res.hits[0].to_dict()
    assert list(d) == ["id", "score", "cosine", "rank", "metadata"] and d["rank"] == 3
    assert d["score"] == d["cosine"] and d["metadata"]["articleType"] == res.hits[0].metadata["articleType"]
    assert res.to_dict()["query"]["score"] == "cosine"
    fused = cat.search("jeans", k=3, hybrid=0.5)
    assert fused.query["score"] == "rank fusion" and all(h.score < 0.05 < h.cosine for h in fused.hits)
    alone = cat.search(item_id=str(row["id"]), k=5)  # "more like this": the item is left out
    assert row["id"] not in [h.id for h in alone.hits] and "excluded_duplicates" in alone.query
    mixed = cat.search("dark", item_id=str(row["id"]), k=5)
    assert row["id"] not in [h.id for h in mixed.hits]


def test_selections_and_facets(cat):
    red = cat.search("shirt", k=10, selections={"baseColour": ["red"]}, where="season != 'winter'")
    assert red.hits and all(h.metadata["baseColour"] == "Red" and h.metadata["season"] != "Winter" for h in red.hits)
    assert {"articleType", "baseColour"} <= set(cat.facet_fields()) and "width" not in cat.facet_fields()
    res = cat.search("watch", k=5, facets=True, facet_depth=20, selections={"baseColour": ["Black"]})
    facets = {f.field: dict(f.counts) for f in res.facets}
    assert set(facets) == set(cat.facet_fields())
    assert sum(facets["articleType"].values()) <= 20 and set(facets["baseColour"]) != {"Black"}
    assert sum(facets["baseColour"].values()) <= 20
    with pytest.raises(InputError, match="no field 'nope'"):
        cat.search("watch", facets=["nope"])
