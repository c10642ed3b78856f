"""Search, classify and catalog writes over HTTP, on an index of real KAGL products and the bundled model."""

from __future__ import annotations

import collections

import httpx2
import pytest

from .conftest import client_for, data_url
from .test_security import assert_openai_error

DARK = {"Black", "Navy Blue", "Brown", "Charcoal", "Grey", "Maroon", "Coffee Brown", "Steel", "Olive", "Burgundy"}


@pytest.fixture(scope="module")
def http(server):
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def rows(catalog_table) -> list[dict]:
    return catalog_table.to_pylist()


def first_of(rows, kind):
    return next(r for r in rows if r["articleType"] == kind)


def search(http, **body) -> dict:
    r = http.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def kinds(out, field="articleType"):
    return collections.Counter(h["metadata"][field] for h in out["results"])


# ------------------------------------------------------------------------- search


def test_text_search_finds_the_named_kind(http):
    for query, label in (("jeans", "Jeans"), ("watch", "Watches"), ("handbag", "Handbags")):
        out = search(http, query=query, k=5)
        assert out["object"] == "search.results" and out["catalog"] == "shop" and out["model"] == "vestis-mini"
        assert out["results"][0]["metadata"]["articleType"] == label, (query, kinds(out))
        assert [h["rank"] for h in out["results"]] == [1, 2, 3, 4, 5]


def test_image_search_json_and_multipart(http, rows):
    row = first_of(rows, "Heels")
    out = search(http, image=data_url(row["image"]), k=3)
    assert out["results"][0]["id"] == row["id"] and out["results"][0]["score"] > 0.9
    r = http.post("/v1/search", files={"image": ("heel.jpg", row["image"], "image/jpeg")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["id"] == row["id"] and len(r.json()["results"]) == 3


def test_more_like_this_leaves_the_item_out(http, rows):
    row = first_of(rows, "Sunglasses")
    out = search(http, item_id=row["id"], k=3)
    ids = [h["id"] for h in out["results"]]
    assert row["id"] not in ids and out["query"]["item"] == row["id"]
    assert kinds(out)["Sunglasses"] >= 2
    steered = search(http, item_id=row["id"], k=3, steer=["lighter"])
    assert steered["query"]["steer"] == ["dark->light"]


def test_filters_facet_selections_and_where(http):
    out = search(http, query="shoes", k=10, filters={"baseColour": ["Black", "Brown"]})
    assert out["results"] and all(h["metadata"]["baseColour"] in ("Black", "Brown") for h in out["results"])
    out = search(http, query="shoes", k=10, where="usage = 'Casual'", filters={"masterCategory": ["Footwear"]})
    assert all(h["metadata"]["usage"] == "Casual" and h["metadata"]["masterCategory"] == "Footwear"
               for h in out["results"])  # fmt: skip
    quoted = search(http, query="shoes", filters={"baseColour": ["it's; DROP TABLE items; --"]})
    assert quoted["results"] == []  # a value, never SQL


def test_hybrid_steering_and_pagination(http):
    hybrid = search(http, query="jeans", k=5, hybrid=0.5)
    assert hybrid["query"]["hybrid"] == 0.5 and hybrid["results"][0]["metadata"]["articleType"] == "Jeans"
    plain = search(http, query="t-shirt", k=10)
    darker = search(http, query="t-shirt", k=10, steer=["darker"])
    count = lambda out: sum(h["metadata"]["baseColour"] in DARK for h in out["results"])  # noqa: E731
    assert count(darker) >= count(plain)
    page2 = search(http, query="t-shirt", k=5, offset=5)
    assert [h["id"] for h in page2["results"]] == [h["id"] for h in plain["results"][5:10]]
    assert page2["results"][0]["rank"] == 6


def test_thumbnails(http):
    out = search(http, query="watch", k=2, include_thumbnails=True)
    hit = out["results"][0]
    assert hit["thumbnail"].startswith("data:image/jpeg;base64,")
    r = http.get(hit["thumbnail_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert_openai_error(http.get("/v1/catalogs/shop/items/nope/thumbnail"), 404)


def test_catalog_info_items_and_facets(http, rows, catalog_table, index_dir):
    cats = http.get("/v1/catalogs").json()["data"]
    assert [c["name"] for c in cats] == ["shop"] and cats[0]["items"] == catalog_table.num_rows
    info = http.get("/v1/catalogs/shop").json()
    assert "articleType" in info["fields"]
    # the last build's report, as `vestis index info` shows it (the same library call serves both)
    from vestis.index.stores import open_store

    with open_store(index_dir) as store:
        assert info["last_build"] == store.reports(1)[0] and info["last_build"]["mode"] == "build"
    item = http.get(f"/v1/catalogs/shop/items/{rows[0]['id']}").json()
    assert item["id"] == rows[0]["id"] and item["metadata"]["articleType"] == rows[0]["articleType"]
    facets = {f["field"]: f for f in http.get("/v1/catalogs/shop/facets").json()["facets"]}
    assert {"articleType", "baseColour", "season", "usage"} <= set(facets)
    assert "productDisplayName" not in facets and "id" not in facets
    counts = {v["value"]: v["count"] for v in facets["articleType"]["values"]}
    assert counts["Watches"] == 4 and facets["articleType"]["distinct"] == 23
    one = http.get("/v1/catalogs/shop/facets", params={"field": "season", "limit": 2}).json()["facets"]
    assert [f["field"] for f in one] == ["season"] and len(one[0]["values"]) == 2 and one[0]["truncated"]
    assert_openai_error(http.get("/v1/catalogs/nope"), 404, "catalog_not_found")
    assert_openai_error(http.post("/v1/search", json={"catalog": "nope", "query": "x"}), 404)
    assert_openai_error(http.get("/v1/catalogs/shop/items/nope"), 404, "item_not_found")
    steers = http.get("/v1/steers").json()["data"]
    assert {"name": "darker", "towards": "dark", "away": "light"} in steers


# ----------------------------------------------------------------------- classify


def test_classify_builtin_and_own_labels(http, rows):
    jeans = first_of(rows, "Jeans")
    out = http.post("/v1/classify", json={"image": data_url(jeans["image"]), "taxonomies": ["articleType", "usage"]})
    assert out.status_code == 200, out.text
    labels = out.json()["results"][0]["labels"]
    assert set(labels) == {"articleType", "usage"} and labels["articleType"][0]["label"] == "Jeans"
    assert len(labels["articleType"]) == 3 and labels["articleType"][0]["score"] > 0.5
    watch = first_of(rows, "Watches")
    r = http.post("/v1/classify", files=[("image", ("a.jpg", jeans["image"])), ("image", ("b.jpg", watch["image"]))],
                  data={"labels": "denim jeans, wrist watch, handbag", "k": "1"})  # fmt: skip
    assert r.status_code == 200, r.text
    got = [res["labels"]["labels"][0]["label"] for res in r.json()["results"]]
    assert got == ["denim jeans", "wrist watch"]
    everything = http.post("/v1/classify", json={"image": data_url(watch["image"]), "k": 1}).json()
    assert set(everything["results"][0]["labels"]) == {"articleType", "subCategory", "masterCategory", "baseColour",
                                                       "season", "usage"}  # fmt: skip


def test_classify_never_reads_server_files(http, rows):
    img = data_url(rows[0]["image"])
    for spec in ("/etc/passwd", "../../etc/hostname"):
        err = assert_openai_error(http.post("/v1/classify", json={"image": img, "taxonomies": [spec]}), 400)
        assert "no built-in taxonomy" in err["message"]
        r = http.post("/v1/classify", json={"image": img, "labels": spec, "k": 1})
        assert r.status_code == 200 and r.json()["results"][0]["labels"]["labels"][0]["label"] == spec
    assert_openai_error(http.post("/v1/classify", json={"image": img, "labels": ["a", "a"]}), 400)
    assert_openai_error(http.post("/v1/classify", json={"image": img, "labels": "a,b", "templates": ["no slot"]}), 400)
    assert_openai_error(http.post("/v1/classify", json={"taxonomies": ["usage"]}), 400)


# -------------------------------------------------------------------------- writes


def test_add_update_delete_items(index_copy, outside_rows, mini):
    from vestis.serve.app import ServeConfig, create_app

    new = next(r for r in outside_rows if r["productDisplayName"])
    item = {
        "id": new["id"],
        "image": data_url(new["image"]),
        "metadata": {k: new[k] for k in ("articleType", "baseColour", "season", "usage", "productDisplayName")},
    }
    with client_for(create_app(ServeConfig(catalogs=[index_copy]), encoder=mini)) as c:
        before = c.get("/v1/catalogs/shop").json()["items"]
        r = c.post("/v1/catalogs/shop/items", json={"items": [item]})
        assert r.status_code == 200, r.text
        assert r.json()["added"] == 1 and r.json()["total_items"] == before + 1
        found = c.post("/v1/search", json={"image": item["image"], "k": 1}).json()["results"][0]
        assert found["id"] == new["id"] and found["metadata"]["productDisplayName"] == new["productDisplayName"]
        again = c.post("/v1/catalogs/shop/items", json={"items": [item]}).json()
        assert again["added"] == 0 and again["skipped_existing"] == [str(new["id"])]
        # update: metadata only changes -> stored again without re-embedding
        changed = {**item, "metadata": {**item["metadata"], "season": "Monsoon"}}
        upd = c.put("/v1/catalogs/shop/items", json={"items": [changed]}).json()
        assert upd["metadata_updated"] == 1 and upd["updated"] == 0
        assert c.get(f"/v1/catalogs/shop/items/{new['id']}").json()["metadata"]["season"] == "Monsoon"
        facets = c.get("/v1/catalogs/shop/facets", params={"field": "season"}).json()["facets"][0]["values"]
        assert {"value": "Monsoon", "count": 1} in facets
        missing = c.put("/v1/catalogs/shop/items", json={"items": [{**item, "id": 1}]}).json()
        assert missing["skipped_missing"] == ["1"]
        err = assert_openai_error(c.put("/v1/catalogs/shop/items", json={"items": [{"id": new["id"]}]}), 400)
        assert "send it again" in err["message"]  # an update without the image would lose it
        # upsert one item by path; an item with a title and no image is indexed by its title
        r = c.put("/v1/catalogs/shop/items/sku-1", json={"metadata": {"productDisplayName": "Red Silk Scarf"}})
        assert r.json()["added"] == 1
        assert c.get("/v1/catalogs/shop/items/sku-1").json()["id"] == "sku-1"
        # deletes
        assert c.delete(f"/v1/catalogs/shop/items/{new['id']}").json()["deleted"] == [str(new["id"])]
        assert_openai_error(c.delete(f"/v1/catalogs/shop/items/{new['id']}"), 404, "item_not_found")
        many = c.post("/v1/catalogs/shop/items/delete", json={"ids": ["sku-1", "nope"]}).json()
        assert many["deleted"] == ["sku-1"] and many["not_found"] == ["nope"] and many["total_items"] == before
        assert new["id"] not in [h["id"] for h in c.post("/v1/search", json={"query": "jeans"}).json()["results"]]


def test_bad_item_writes(index_copy, mini):
    from vestis.serve.app import ServeConfig, create_app

    with client_for(create_app(ServeConfig(catalogs=[index_copy]), encoder=mini)) as c:
        bad_image = {"items": [{"id": 5, "image": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}]}
        assert_openai_error(c.post("/v1/catalogs/shop/items", json=bad_image), 400, "invalid_image")
        reserved = {"items": [{"id": 5, "metadata": {"image": "x"}}]}
        assert_openai_error(c.post("/v1/catalogs/shop/items", json=reserved), 400)
        nested = {"items": [{"id": 5, "metadata": {"colour": {"r": 1}}}]}
        assert_openai_error(c.post("/v1/catalogs/shop/items", json=nested), 400)
        mixed = {"items": [{"id": 5, "metadata": {"size": 1, "productDisplayName": "a shoe"}},
                           {"id": 6, "metadata": {"size": "L", "productDisplayName": "a shirt"}}]}  # fmt: skip
        assert_openai_error(c.post("/v1/catalogs/shop/items", json=mixed), 400)
        assert_openai_error(c.post("/v1/catalogs/shop/items", json={"items": []}), 400)
        assert_openai_error(c.post("/v1/catalogs/nope/items", json={"items": [{"id": 1}]}), 404)
        assert c.get("/v1/catalogs/shop").json()["items"] == 81


# ------------------------------------------------------------ filters, scores, facets


def test_filter_text_ignores_case(http):
    """The catalog says 'Black'; a filter saying 'black' finds those items (where and filters alike)."""
    exact = search(http, query="shoes", k=10, where="baseColour = 'Black'")
    assert exact["results"] and {h["metadata"]["baseColour"] for h in exact["results"]} == {"Black"}
    lower = search(http, query="shoes", k=10, where="baseColour = 'black'")
    assert [h["id"] for h in lower["results"]] == [h["id"] for h in exact["results"]]
    picked = search(http, query="shoes", k=10, filters={"baseColour": ["BLACK"], "usage": ["casual"]})
    assert picked["results"] and all(
        h["metadata"]["baseColour"] == "Black" and h["metadata"]["usage"] == "Casual" for h in picked["results"]
    )


def test_hybrid_reports_score_and_cosine(http):
    plain = search(http, query="jeans", k=5)
    assert plain["query"]["score"] == "cosine"
    assert all(h["score"] == h["cosine"] for h in plain["results"])
    hybrid = search(http, query="jeans", k=5, hybrid=0.5)
    assert hybrid["query"]["score"] == "rank fusion"
    for h in hybrid["results"]:
        assert 0 < h["score"] < 0.05 and 0 < h["cosine"] <= 1  # a fusion value is about 1/60 at best
    floor = sorted(h["cosine"] for h in hybrid["results"])[2]
    kept = search(http, query="jeans", k=5, hybrid=0.5, min_score=floor)["results"]
    assert kept and all(h["cosine"] >= floor for h in kept)  # min_score applies to the cosine


def test_search_facets_count_the_results_not_the_catalog(http):
    whole = {f["field"]: f for f in http.get("/v1/catalogs/shop/facets").json()["facets"]}
    out = search(http, query="watch", k=5, facets=True, facet_depth=8)
    facets = {f["field"]: f for f in out["facets"]}
    assert {"articleType", "baseColour"} <= set(facets) and not {"width", "height", "id"} & set(facets)
    counts = {v["value"]: v["count"] for v in facets["articleType"]["values"]}
    assert sum(counts.values()) == 8 and counts.get("Watches", 0) >= 3
    assert counts != {v["value"]: v["count"] for v in whole["articleType"]["values"]}
    # a selected field is counted as if unselected: its other values stay in view
    picked = search(http, query="watch", k=5, facets=["baseColour", "articleType"], facet_depth=8,
                    filters={"baseColour": ["Black"]})  # fmt: skip
    colours = {f["field"]: f for f in picked["facets"]}["baseColour"]["values"]
    assert len(colours) > 1 and {h["metadata"]["baseColour"] for h in picked["results"]} == {"Black"}
    kinds_of_black = {f["field"]: f for f in picked["facets"]}["articleType"]["values"]
    assert sum(v["count"] for v in kinds_of_black) <= 8
    assert_openai_error(http.post("/v1/search", json={"query": "x", "facets": ["nope"]}), 400)


def test_numeric_fields_are_no_facets(index_copy, mini):
    from vestis.serve.app import ServeConfig, create_app

    items = [{"id": f"w{i}", "metadata": {"productDisplayName": f"plain shirt {i}", "width": 100 + i % 2}}
             for i in range(4)]  # fmt: skip
    with client_for(create_app(ServeConfig(catalogs=[index_copy]), encoder=mini)) as c:
        assert c.post("/v1/catalogs/shop/items", json={"items": items}).status_code == 200
        fields = [f["field"] for f in c.get("/v1/catalogs/shop/facets").json()["facets"]]
        assert "articleType" in fields and "width" not in fields and "height" not in fields
        asked = c.get("/v1/catalogs/shop/facets", params={"field": "width"}).json()["facets"][0]
        assert {"value": 100, "count": 2} in asked["values"]  # still counted when asked for by name


def test_a_catalog_being_written_elsewhere_is_409(index_copy, mini):
    from vestis.index.local import LocalStore
    from vestis.serve.app import ServeConfig, create_app

    with client_for(create_app(ServeConfig(catalogs=[index_copy]), encoder=mini)) as c:
        with LocalStore.open(index_copy, writable=True) as other, other.writer():
            r = c.put("/v1/catalogs/shop/items/sku-9", json={"metadata": {"productDisplayName": "Blue Scarf"}})
            err = assert_openai_error(r, 409, "catalog_busy")
            assert "being written by another process" in err["message"] and r.headers["retry-after"] == "1"
        r = c.put("/v1/catalogs/shop/items/sku-9", json={"metadata": {"productDisplayName": "Blue Scarf"}})
        assert r.status_code == 200 and r.json()["added"] == 1


def test_status_follows_the_exception_type_not_its_words(make_client, index_dir, monkeypatch):
    """A library error that happens to mention a busy index is still a 500; a ConflictError is a 409."""
    from vestis.errors import ConflictError, VestisError
    from vestis.search import Catalog

    c = make_client(catalogs=[index_dir])
    for exc, status in ((VestisError("x is being written by another process"), 500), (ConflictError("busy"), 409)):

        def fail(*args, _exc=exc, **kwargs):
            raise _exc

        monkeypatch.setattr(Catalog, "search", fail)
        assert_openai_error(c.post("/v1/search", json={"query": "jeans"}), status)


def test_catalogs_are_warm_before_the_server_is_ready(make_client, index_dir):
    """The first search does not pay for loading the catalog's vectors: the server loads them
    (and runs the text tower once) before it answers ready."""
    c = make_client(catalogs=[index_dir])
    assert c.get("/readyz").status_code == 200
    store = next(iter(c.app.state.vestis.catalogs.values())).store
    assert store._snap is not None  # loaded at start-up, before any search
    assert c.post("/v1/search", json={"query": "jeans"}).status_code == 200
