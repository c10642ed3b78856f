"""Issue 24's defects, each reproduced through the front end a user reaches: one bad text never
fails another request's batch, deep JSON is a 400 on every route, NaN/inf and odd ids never break a
catalog, and numeric ids compare as numbers."""

from __future__ import annotations

import asyncio
import math
import time

import httpx2
import numpy as np
import pytest

from vestis.serve.app import ServeConfig, create_app
from vestis.serve.batching import MicroBatcher

from .conftest import ServerThread, data_url, png
from .test_security import assert_openai_error

JSON = {"content-type": "application/json"}
SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON escapes let a client send one


# ------------------------------------------------------------------- 1. one bad text, one failed request


def test_any_exception_in_a_batch_fails_only_the_job_that_caused_it():
    calls = []

    def fn(items):
        calls.append(list(items))
        time.sleep(0.02)
        if "poison" in items:
            raise TypeError("a tokenizer bug, not a VestisError")
        return np.array([[float(len(x))] for x in items], dtype=np.float32)

    b = MicroBatcher(fn, name="t", max_batch=64, max_wait_ms=30)

    async def body():
        await b.start()
        try:
            return await asyncio.gather(*(b.submit([w]) for w in ["a", "bb", "poison", "dddd"]),
                                        return_exceptions=True)  # fmt: skip
        finally:
            await b.stop()

    results = asyncio.run(body())
    assert isinstance(results[2], TypeError)
    assert [r[0, 0] for i, r in enumerate(results) if i != 2] == [1.0, 2.0, 4.0]
    assert any(len(c) > 1 for c in calls), "the jobs never shared a batch: the test proves nothing"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", '{"input": ["red dress", SUR]}', "input[1]"),
        ("/v1/embeddings", '{"input": "nul\\u0000byte"}', "input"),
        ("/v1/search", '{"query": SUR}', "query"),
        ("/v1/search", '{"query": "dress", "steer": [SUR]}', "steer.0"),
        ("/v1/classify", '{"image": "IMG", "labels": ["coat", SUR]}', "labels"),
        ("/v1/classify", '{"image": "IMG", "labels": "coat, \\ud800x"}', "labels"),
    ],
)
def test_unencodable_text_is_a_400_naming_the_item(server, path, body, param):
    body = body.replace("SUR", SURROGATE).replace("IMG", data_url(png()))
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        err = assert_openai_error(c.post(path, content=body.encode(), headers=JSON), 400)
        assert err["param"] is not None and err["param"].startswith(param.split(".")[0]), err
        assert c.post("/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_a_poisoned_text_among_concurrent_clients_fails_only_itself(server):
    async def main():
        async with httpx2.AsyncClient(base_url=server.url, timeout=60) as c:
            good = [c.post("/v1/embeddings", json={"input": [f"red summer dress {i}"]}) for i in range(24)]
            bad = [c.post("/v1/embeddings", content='{"input": [SUR]}'.replace("SUR", SURROGATE).encode(), headers=JSON)
                   for _ in range(6)]  # fmt: skip
            return await asyncio.gather(*good, *bad, return_exceptions=True)

    answers = asyncio.run(main())
    assert all(not isinstance(r, Exception) and r.status_code == 200 for r in answers[:24]), answers[:24]
    for r in answers[24:]:
        assert_openai_error(r, 400)


# ------------------------------------------------------------------------------- 2. deeply nested JSON

ROUTES_WITH_BODIES = ["/v1/embeddings", "/v1/search", "/v1/classify", "/v1/catalogs/shop/items",
                      "/v1/catalogs/shop/items/delete"]  # fmt: skip


@pytest.mark.parametrize("path", ROUTES_WITH_BODIES)
def test_deeply_nested_json_is_a_400(server, path):
    deep = ('{"input": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        assert_openai_error(c.post(path, content=deep, headers=JSON), 400, "invalid_json")
        r = c.put(path if path.endswith("items") else "/v1/catalogs/shop/items", content=deep, headers=JSON)
        assert_openai_error(r, 400, "invalid_json")
        assert c.get("/healthz").status_code == 200


# --------------------------------------------------------------------------------- 3. NaN / inf values


@pytest.fixture
def write_server(index_copy, mini):
    with ServerThread(create_app(ServeConfig(catalogs=[index_copy]), encoder=mini)) as s:
        with httpx2.Client(base_url=s.url, timeout=120) as c:
            yield c


def test_nan_and_inf_in_a_written_item_are_refused(write_server):
    for token in ("NaN", "Infinity", "-Infinity"):
        body = '{"items": [{"id": 990001, "metadata": {"title": "a red scarf", "price": NUM}}]}'.replace("NUM", token)
        err = assert_openai_error(write_server.post("/v1/catalogs/shop/items", content=body, headers=JSON), 400)
        assert token.lstrip("-") in err["message"] or "price" in (err["param"] or ""), err
    r = write_server.post("/v1/catalogs/shop/items", json={"items": [{"id": 990001, "metadata":
                          {"title": "a red scarf", "price": 9.5}}]})  # fmt: skip
    assert r.status_code == 200 and r.json()["added"] == 1


# ---------------------------------------------------------------------------------------------- 4. ids


@pytest.mark.parametrize(
    "item_id",
    [2**63, -(2**63) - 1, 10**30, True, False, [1, 2], {"a": 1}, 1.5, "", "   "],
    ids=repr,
)
def test_ids_that_are_not_text_or_int64_are_refused(write_server, item_id):
    r = write_server.post("/v1/catalogs/shop/items", json={"items": [{"id": item_id, "metadata": {"title": "x y"}}]})
    err = assert_openai_error(r, 400)
    assert (err["param"] or "").startswith("items"), err
    r = write_server.post("/v1/catalogs/shop/items/delete", json={"ids": [item_id]})
    assert_openai_error(r, 400)


def test_int64_bounds_are_ids(write_server):
    for item_id in (2**63 - 1, -(2**63)):
        r = write_server.post("/v1/catalogs/shop/items", json={"items": [{"id": item_id, "metadata":
                              {"title": "a plain grey hoodie"}}]})  # fmt: skip
        assert r.status_code == 200 and r.json()["added"] == 1, r.text
        got = write_server.get(f"/v1/catalogs/shop/items/{item_id}").json()
        assert got["id"] == item_id


@pytest.mark.parametrize("text", ["²", "١٢", "12\u00a0", "０１"])
def test_non_ascii_digits_stay_text_ids(write_server, text):
    from urllib.parse import quote

    assert_openai_error(write_server.put(f"/v1/catalogs/nope/items/{quote(text)}", json={"metadata":
                        {"title": "a hat"}}), 404, "catalog_not_found")  # fmt: skip
    r = write_server.put(f"/v1/catalogs/shop/items/{quote(text)}", json={"metadata": {"title": "a wool hat"}})
    assert r.status_code == 200, r.text
    got = write_server.get(f"/v1/catalogs/shop/items/{quote(text)}").json()
    assert got["id"] == text  # never read as a number
    if text == "١٢":
        assert write_server.get("/v1/catalogs/shop/items/12").status_code == 404


def test_a_path_id_of_ascii_digits_is_the_integer_id(write_server):
    r = write_server.put("/v1/catalogs/shop/items/990077", json={"metadata": {"title": "a wool hat"}})
    assert r.status_code == 200, r.text
    assert write_server.get("/v1/catalogs/shop/items/990077").json()["id"] == 990077
    r = write_server.put(f"/v1/catalogs/shop/items/{2**64}", json={"metadata": {"title": "a wool hat"}})
    assert_openai_error(r, 400)


# ------------------------------------------------------------------------------ 5. numeric id filters


def test_id_filters_compare_numbers_as_numbers(server, catalog_table):
    ids = sorted(catalog_table.column("id").to_pylist())
    middle = ids[len(ids) // 2]
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        for where, want in ((f"id > {middle}", [i for i in ids if i > middle]),
                            (f"id < {middle}", [i for i in ids if i < middle]),
                            (f"id BETWEEN {ids[3]} AND {ids[10]}", ids[3:11]),
                            (f"id = {ids[0]}", ids[:1]), (f"id IN ({ids[1]}, {ids[2]})", ids[1:3])):  # fmt: skip
            r = c.post("/v1/search", json={"query": "clothes", "k": 200, "where": where})
            assert r.status_code == 200, r.text
            assert sorted(h["id"] for h in r.json()["results"]) == want, where
        assert not math.isnan(middle)


# ------------------------------------------------------------------ 7. codes, content types, the schema


def test_error_codes_and_content_types_are_as_documented(server):
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        for path in ("/v1/embeddings", "/v1/search", "/v1/catalogs/shop/items"):
            assert_openai_error(c.post(path, content=b'{"input": "dress"', headers=JSON), 400, "invalid_json")
            for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
                r = c.post(path, content=b"input=dress", headers={"content-type": ctype})
                assert_openai_error(r, 415, "unsupported_media_type")
        for dims in (True, "8", 8.0, [8]):
            r = c.post("/v1/embeddings", json={"input": "dress", "dimensions": dims})
            assert assert_openai_error(r, 400)["param"] == "dimensions"
        r = c.post("/v1/embeddings", json={"input": "dress", "dimensions": 8})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 8
        err = assert_openai_error(c.post("/v1/embeddings", json={"input": [[101, 102]]}), 400)
        assert "token arrays" in err["message"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/v1/catalogs/shop/items/1", {"GET", "HEAD", "PUT", "DELETE"}), ("/v1/catalogs/shop/items", {"POST", "PUT"}),
     ("/v1/embeddings", {"POST"}), ("/v1/catalogs/shop", {"GET", "HEAD"})],
)  # fmt: skip
def test_a_wrong_method_is_a_405_listing_every_allowed_method(server, path, allowed):
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        for method in ("OPTIONS", "PATCH"):
            r = c.request(method, path)
            assert_openai_error(r, 405)
            assert set(r.headers["allow"].split(", ")) == allowed, r.headers["allow"]


def test_the_published_schema_refuses_what_the_server_refuses(server):
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        spec = c.get("/openapi.json").json()
        request = spec["components"]["schemas"]["EmbeddingRequest"]["properties"]["input"]
        lists = [s for s in request["anyOf"] if s.get("type") == "array"]
        assert lists and all(s.get("minItems") == 1 for s in lists), request
        assert "integer" not in json_text(request)  # token arrays are not served, so not published
        assert_openai_error(c.post("/v1/embeddings", json={"input": []}), 400)
        facets = spec["paths"]["/v1/catalogs/{name}/facets"]["get"]["parameters"]
        field = next(p for p in facets if p["name"] == "field")["schema"]["anyOf"][0]
        assert field["items"]["minLength"] == 1  # ?field= is refused, and the spec says so
        assert_openai_error(c.get("/v1/catalogs/shop/facets?field="), 400)
        dims = spec["components"]["schemas"]["EmbeddingRequest"]["properties"]["dimensions"]
        assert {"type": "integer", "minimum": 1} in dims["anyOf"]


def json_text(value) -> str:
    import json

    return json.dumps(value)
