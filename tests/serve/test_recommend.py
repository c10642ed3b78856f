"""``POST /v1/recommend`` and ``boost`` on ``/v1/search`` over HTTP, on a rated demo catalog."""

from __future__ import annotations

import json
import math

import pytest

from vestis.search import Catalog
from vestis.serve.app import ServeConfig, create_app

from .conftest import client_for
from .test_security import assert_openai_error


@pytest.fixture(scope="module")
def client(mini, rated_index):
    directory, _ = rated_index
    with client_for(create_app(ServeConfig(catalogs=[directory]), encoder=mini)) as c:
        yield c


def first_of(rows, kind):
    return next(r for r in rows if r["articleType"] == kind)


def test_recommend_matches_the_library_and_leaves_the_examples_out(client, rated_index, mini):
    directory, rows = rated_index
    heel, jeans = first_of(rows, "Heels"), first_of(rows, "Jeans")
    body = {"like": [heel["id"]], "dislike": [jeans["id"]], "k": 6, "where": "masterCategory = 'Footwear'",
            "boost": {"rating": 0.2}, "steer": ["darker"], "include_thumbnails": True}  # fmt: skip
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    ids = [h["id"] for h in out["results"]]
    assert heel["id"] not in ids and jeans["id"] not in ids and len(ids) == 6
    assert all(h["metadata"]["masterCategory"] == "Footwear" for h in out["results"])
    assert all(h["thumbnail"].startswith("data:image/") for h in out["results"])
    assert out["query"]["like"] == [heel["id"]] and out["query"]["boost"] == {"rating": 0.2}
    with Catalog.open(directory, encoder=mini) as cat:
        lib = cat.recommend([heel["id"]], [jeans["id"]], k=6, where="masterCategory = 'Footwear'",
                            boost={"rating": 0.2}, steer=["darker"])  # fmt: skip
    assert ids == [h.id for h in lib.hits]
    for got, want in zip(out["results"], lib.hits):
        assert got["score"] == pytest.approx(want.score, abs=1e-5)


def test_recommend_with_a_query_and_weights(client, rated_index):
    _, rows = rated_index
    heel = first_of(rows, "Heels")
    base = {"query": "shoes", "like": [heel["id"]], "k": 40}
    light = client.post("/v1/recommend", json={**base, "weights": {"like": 0.1}}).json()
    heavy = client.post("/v1/recommend", json={**base, "weights": {"like": 3.0}}).json()
    assert light["query"]["rocchio"] == {"query": 1.0, "like": 0.1, "dislike": 0.25}

    def heel_places(out):
        return [n for n, h in enumerate(out["results"]) if h["metadata"]["articleType"] == "Heels"]

    assert sum(heel_places(heavy)) < sum(heel_places(light))


def test_boost_on_search_and_nan_ratings(client, rated_index):
    _, rows = rated_index
    r = client.post("/v1/search", json={"query": "bag", "k": 40, "boost": {"rating": 1.0}})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    rated = [x["rating"] for x in rows if x["rating"] is not None and not math.isnan(x["rating"])]
    lo, hi = min(rated), max(rated)
    for h in hits:
        v = h["metadata"].get("rating")
        assert h["score"] - h["cosine"] == pytest.approx(0 if v is None else (v - lo) / (hi - lo), abs=2e-6)
    assert any(h["metadata"].get("rating") is None for h in hits)  # NaN and missing ratings are listed, as null


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"dislike": ["x"]}, "like", "at least one liked item"),
        ({"like": ["no-such-item"]}, None, "no item 'no-such-item'"),
        ({"like": [1, 1.5]}, "like[1]", ""),
        ({"query": "shoes", "weights": {"like": -1}}, "weights.like", ""),
        ({"query": "shoes", "boost": {"rating": "high"}}, "boost.rating", ""),
        ({"query": "shoes", "boost": {"colour": 0.1}}, None, "no such field"),
        ({"query": "shoes", "boost": {"rating": 0.1}, "hybrid": 0.5}, None, "without hybrid"),
        ({"query": "shoes", "likes": [1]}, "likes", ""),
    ],
)
def test_bad_recommend_requests_are_400_naming_the_problem(client, body, param, words):
    r = client.post("/v1/recommend", json=body)
    error = assert_openai_error(r, 400)
    if param:
        assert error["param"].startswith(param), error
    assert words in error["message"]


def test_recommend_is_in_the_openapi_spec(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/recommend"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"like", "dislike", "weights", "boost", "query", "where", "steer"} <= set(schema["properties"])
    search = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "boost" in search["properties"] and "like" not in search["properties"]
    assert "400" in op["responses"] and "422" not in op["responses"]
    # request schemas are inlined in the spec: a nested model's "$defs" would not resolve (Redoc fails on it)
    assert "$defs" not in json.dumps(spec)
