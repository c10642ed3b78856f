"""``POST /v1/explain`` over HTTP: the same explanation as the library, a PNG overlay, 400s that
name the problem, and the route in the OpenAPI spec."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from vestis.search import Catalog

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
