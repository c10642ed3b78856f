"""``POST /v1/explain`` over HTTP: the same explanation as the library, a PNG overlay, 400s that
name the problem, and the route in the OpenAPI spec."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from vestis.search import Catalog
from vestis.serve.app import ServeConfig, create_app
from vestis.serve.security import hash_key

from .conftest import KEY, OTHER_KEY, ServerThread
from .test_security import assert_openai_error


@pytest.fixture(scope="module")
def http(server):
    import httpx2

    with httpx2.Client(base_url=server.url, timeout=120) as c:
        yield c


def test_explain_matches_the_library(http, index_dir, catalog_table, mini):
    row = next(r for r in catalog_table.to_pylist() if r["articleType"] == "Watches")
    r = http.post("/v1/explain", json={"item_id": row["id"], "query": "black watch", "grid": 4})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "explanation" and out["catalog"] == "shop" and out["item_id"] == row["id"]
    assert out["method"] == "gradient" and len(out["cells"]) == 4 and len(out["occlusion"][0]) == 4
    png = Image.open(io.BytesIO(base64.b64decode(out["overlay"].split(",", 1)[1])))
    assert png.format == "PNG" and min(png.size) >= 256
    with Catalog.open(index_dir, encoder=mini) as cat:
        lib = cat.explain(row["id"], "black watch", grid=4)
    assert out["score"] == pytest.approx(lib.score, abs=1e-5)
    np.testing.assert_allclose(np.array(out["occlusion"]), lib.occlusion, atol=1e-4)
    np.testing.assert_allclose(np.array(out["gradient"]), lib.gradient, atol=1e-4)
    assert [w["word"] for w in out["words"]] == ["black", "watch"]
    for got, want in zip(out["words"], lib.words):
        assert got["contribution"] == pytest.approx(want.contribution, abs=1e-5)
    occ = http.post("/v1/explain", json={"item_id": row["id"], "query": "black watch", "grid": 4,
                                         "method": "occlusion", "include_overlay": False}).json()  # fmt: skip
    assert occ["method"] == "occlusion" and occ["overlay"] is None and occ["gradient"] is None


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"query": "shoes"}, "item_id", ""),
        ({"item_id": "no-such-item", "query": "shoes"}, None, "no item 'no-such-item'"),
        ({"item_id": 1, "query": ""}, "query", ""),
        ({"item_id": 1, "query": "   "}, None, "the query is empty"),
        ({"item_id": 1, "query": "shoes", "grid": 1}, "grid", ""),
        ({"item_id": 1, "query": "shoes", "method": "saliency"}, "method", ""),
        ({"item_id": 1, "query": " ".join(["word"] * 40)}, None, "at most 32"),
    ],
)
def test_bad_explain_requests_are_400_naming_the_problem(http, body, param, words):
    error = assert_openai_error(http.post("/v1/explain", json=body), 400)
    if param:
        assert error["param"] == param, error
    assert words in error["message"]


def test_explain_is_in_the_openapi_spec(http):
    spec = http.get("/openapi.json").json()
    op = spec["paths"]["/v1/explain"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"item_id", "query", "method", "grid", "include_overlay"} <= set(schema["properties"])
    assert "400" in op["responses"] and "422" not in op["responses"]


# ------------------------------------------------------------------ the per-client limit


def test_one_clients_flood_of_explains_is_turned_away_and_other_clients_search_on(index_dir, catalog_table, mini):
    import httpx2

    row = next(r for r in catalog_table.to_pylist() if r["articleType"] == "Watches")
    body = {"item_id": row["id"], "query": "black watch", "grid": 4, "include_overlay": False}
    keys = frozenset({hash_key(KEY), hash_key(OTHER_KEY)})
    config = ServeConfig(catalogs=[index_dir], key_hashes=keys, explain_rate=6, explain_burst=2)
    with (
        ServerThread(create_app(config, encoder=mini)) as server,
        httpx2.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as a,
        httpx2.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {OTHER_KEY}"}) as b,
        ThreadPoolExecutor(12) as pool,
    ):
        flood = [pool.submit(a.post, "/v1/explain", json=body) for _ in range(12)]  # client A, all at once
        searches = [b.post("/v1/search", json={"query": "jeans", "k": 3}) for _ in range(5)]  # client B meanwhile
        answers = [f.result() for f in flood]
        assert sorted(r.status_code for r in answers) == [200] * 2 + [429] * 10  # its burst, then turned away
        refused = next(r for r in answers if r.status_code == 429)
        error = assert_openai_error(refused, 429, "rate_limit_exceeded")
        assert "POST /v1/explain is limited to 6 a minute per client" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 10  # one call every 10 s
        assert all(r.status_code == 200 and r.json()["results"] for r in searches)
        assert b.post("/v1/explain", json=body).status_code == 200  # B's own bucket is full
        assert a.post("/v1/search", json={"query": "jeans", "k": 3}).status_code == 200  # A may still search


def test_explain_limit_without_keys_is_per_address(make_client, index_dir, catalog_table):
    row = catalog_table.to_pylist()[0]
    c = make_client(catalogs=[index_dir], explain_rate=60, explain_burst=1)
    body = {"item_id": row["id"], "query": "shirt", "grid": 2, "method": "occlusion", "include_overlay": False}
    assert c.post("/v1/explain", json=body).status_code == 200
    assert_openai_error(c.post("/v1/explain", json=body), 429, "rate_limit_exceeded")
    assert c.post("/v1/search", json={"query": "shirt", "k": 2}).status_code == 200
    unlimited = make_client(catalogs=[index_dir], explain_rate=0)
    assert [unlimited.post("/v1/explain", json=body).status_code for _ in range(3)] == [200] * 3
