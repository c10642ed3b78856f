"""Bad requests against a real uvicorn server on loopback: each gets the right 4xx, and the server stays up."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import socket

import httpx2
import numpy as np
import pytest

from .conftest import data_url
from .test_security import assert_openai_error


@pytest.fixture(scope="module")
def http(server):
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def photo(catalog_table) -> bytes:
    return catalog_table.column("image")[0].as_py()


def healthy(http) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.post("/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_malformed_json(http):
    for body in (b'{"input": "dress"', b"not json at all", b'{"input": "\xff\xfe"}', b"", b"[1, 2]"):
        r = http.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        assert_openai_error(r, 400)
        r = http.post("/v1/search", content=body, headers={"content-type": "application/json"})
        assert_openai_error(r, 400)
    healthy(http)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", {"input": 5}, "input"),
        ("/v1/embeddings", {"input": {"text": "dress"}}, "input"),
        ("/v1/embeddings", {"input": [None]}, "input"),
        ("/v1/embeddings", {"input": "dress", "encoding_format": "hex"}, "encoding_format"),
        ("/v1/embeddings", {"input": "dress", "dimensions": "many"}, "dimensions"),
        ("/v1/embeddings", {"input": "dress", "dimensions": 0}, "dimensions"),
        ("/v1/embeddings", {}, "input"),
        ("/v1/search", {"query": "dress", "k": "many"}, "k"),
        ("/v1/search", {"query": "dress", "k": 0}, "k"),
        ("/v1/search", {"query": ["dress"]}, "query"),
        ("/v1/search", {"query": "dress", "hybrid": 3}, "hybrid"),
        ("/v1/search", {"query": "dress", "colour": "red"}, "colour"),
        ("/v1/classify", {"image": 12}, "image"),
    ],
)
def test_wrong_types(http, path, body, param):
    err = assert_openai_error(http.post(path, json=body), 400)
    assert err["param"] and err["param"].split(".")[0] == param, err


def test_wrong_values(http):
    assert_openai_error(http.post("/v1/embeddings", json={"input": []}), 400)
    assert_openai_error(http.post("/v1/embeddings", json={"input": ["dress", "  "]}), 400)
    assert_openai_error(http.post("/v1/embeddings", json={"input": "x" * 10_000}), 400, "input_too_long")
    assert_openai_error(http.post("/v1/search", json={"query": "dress", "where": "DROP TABLE items"}), 400)
    assert_openai_error(http.post("/v1/search", json={"query": "dress", "where": "nosuchfield = 1"}), 400)
    assert_openai_error(http.post("/v1/search", json={"query": "dress", "steer": ["backwards"]}), 400)
    assert_openai_error(http.post("/v1/search", json={"item_id": "no-such-item"}), 400)
    assert_openai_error(http.post("/v1/search", json={"k": 3}), 400)
    assert_openai_error(http.post("/v1/search", content=b"query=dress", headers={"content-type": "text/plain"}), 415)
    assert_openai_error(http.get("/v1/nothing-here"), 404, "not_found")
    assert_openai_error(http.delete("/v1/embeddings"), 405)
    healthy(http)


def test_huge_inputs(http):
    assert_openai_error(http.post("/v1/embeddings", json={"input": ["dress"] * 10_000}), 400, "too_many_inputs")
    huge = b'{"input": ["' + b"a" * (17 * 1024 * 1024) + b'"]}'
    r = http.post("/v1/embeddings", content=huge, headers={"content-type": "application/json"})
    assert_openai_error(r, 413, "request_too_large")
    healthy(http)


def test_broken_images(http, photo):
    truncated = photo[: len(photo) // 2]
    cases = {
        "truncated": data_url(truncated),
        "not an image": data_url(b"GIF89a this is not really a gif"),
        "bad base64": "data:image/jpeg;base64,@@@not-base64@@@",
        "empty": "data:image/png;base64,",
        "remote URL": "https://example.com/shoe.jpg",
        "not a data URL of an image": "data:text/plain;base64,aGVsbG8=",
    }
    for what, url in cases.items():
        r = http.post("/v1/embeddings", json={"input": [{"type": "image_url", "image_url": {"url": url}}]})
        err = assert_openai_error(r, 400)
        assert "input[0]" in err["message"] or "image" in err["message"], (what, err)
        r = http.post("/v1/search", json={"image": url})
        assert_openai_error(r, 400)
    healthy(http)


def test_a_bad_image_does_not_fail_the_others_in_its_batch(http, photo, mini):
    """Concurrent requests share a batch; one truncated image fails only its own request."""
    good = {"input": [data_url(photo)], "encoding_format": "base64"}
    bad = {"input": [data_url(photo[: len(photo) // 2])]}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(http.post, "/v1/embeddings", json=bad if i % 4 == 0 else good) for i in range(16)]
        responses = [f.result() for f in futures]
    want = mini.encode_images([photo])[0]
    for i, r in enumerate(responses):
        if i % 4 == 0:
            assert_openai_error(r, 400, "invalid_image")
        else:
            got = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), "<f4")
            np.testing.assert_allclose(got, want, atol=1e-5)


def _raw(server, payload: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        try:
            s.sendall(payload)
            if not read:
                return b""
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may hang up before reading all of it
            pass
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_broken_connections(server, http):
    assert _raw(server, b"\x16\x03\x01\x02\x00 this is not HTTP\r\n\r\n").startswith(b"HTTP/1.1 400")
    # a body promised but never sent, then the connection dropped
    _raw(server, b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"input\": ", read=False)  # fmt: skip
    # headers far too large
    reply = _raw(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    healthy(http)


def test_json_errors_are_openai_shaped_everywhere(http):
    r = http.post("/v1/embeddings", json={"input": "dress", "model": "gpt-4"})
    err = assert_openai_error(r, 404, "model_not_found")
    assert err["param"] == "model" and err["type"] == "invalid_request_error"
    body = json.loads(r.text)
    assert list(body) == ["error"]
