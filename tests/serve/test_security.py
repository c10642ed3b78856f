"""API keys (hashed), the loopback rule without keys, rate limits, size limits, bombs, no tracebacks."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from vestis.errors import InputError
from vestis.serve.security import KeyStore, hash_key, load_key_hashes

from .conftest import KEY, OTHER_KEY, REPO_ROOT, data_url, png

AUTH = {"Authorization": f"Bearer {KEY}"}


def assert_openai_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    if code is not None:
        assert err["code"] == code, err
    return err


# --------------------------------------------------------------------------- keys


def test_keys_from_file_and_env_are_kept_hashed(tmp_path):
    hashed_only = "third-key-only-its-hash-is-in-the-file"
    f = tmp_path / "keys.txt"
    f.write_text(f"# shop keys\n{KEY}\n\nsha256:{hash_key(hashed_only)}\n")
    hashes = load_key_hashes(f, env=f" {OTHER_KEY} ,")
    assert hashes == {hash_key(KEY), hash_key(OTHER_KEY), hash_key(hashed_only)}
    store = KeyStore(hashes)
    assert len(store) == 3
    assert store.check(KEY) and store.check(OTHER_KEY) and store.check(hashed_only)
    assert store.check("wrong-key-0123456789") is None and store.check("") is None and store.check(None) is None
    assert KEY not in repr(vars(store)) and all(KEY not in h for h in hashes)  # no plaintext kept


def test_env_variable_is_read(monkeypatch):
    monkeypatch.setenv("VESTIS_API_KEYS", f"{KEY},{OTHER_KEY}")
    assert load_key_hashes() == {hash_key(KEY), hash_key(OTHER_KEY)}


def test_bad_key_sources_are_refused(tmp_path):
    with pytest.raises(InputError, match="at least"):
        load_key_hashes(env="short")
    with pytest.raises(InputError, match="no keys"):
        (tmp_path / "empty").write_text("# nothing\n")
        load_key_hashes(tmp_path / "empty", env="")
    with pytest.raises(InputError, match="No such file"):
        load_key_hashes(tmp_path / "missing", env="")


def test_every_route_but_health_and_page_needs_a_key(make_client):
    c = make_client(key_hashes=frozenset({hash_key(KEY)}))
    for path in ("/healthz", "/readyz", "/", "/static/app.js"):
        assert c.get(path).status_code == 200, path
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/embeddings"), ("POST", "/v1/search"),
                         ("GET", "/v1/catalogs"), ("GET", "/openapi.json"), ("GET", "/v1/stats")):  # fmt: skip
        err = assert_openai_error(c.request(method, path, json={}), 401, "invalid_api_key")
        assert "missing" in err["message"]
        assert_openai_error(c.request(method, path, json={}, headers={"Authorization": "Bearer nope-nope-nope"}), 401)
    r = c.get("/v1/models", headers={"Authorization": "Bearer wrong-key-0123456789"})
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/models", headers=AUTH).status_code == 200
    assert c.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    assert c.get("/openapi.json", headers=AUTH).json()["info"]["title"] == "vestis"


def test_keyed_server_answers_other_hosts_with_a_key(make_client):
    c = make_client(key_hashes=frozenset({hash_key(KEY)}), client_kwargs={"client": ("10.1.2.3", 4000)})
    assert c.get("/v1/models", headers=AUTH).status_code == 200
    assert_openai_error(c.get("/v1/models"), 401)


# ------------------------------------------------------------------ no keys: loopback


def test_open_server_answers_loopback_only(make_client):
    remote = make_client(client_kwargs={"client": ("10.1.2.3", 4000)})
    assert_openai_error(remote.get("/v1/models"), 403, "loopback_only")
    local = make_client()
    assert local.get("/v1/models").status_code == 200
    assert local.get("/v1/models", headers={"Host": "localhost:8000"}).status_code == 200
    assert local.get("/v1/models", headers={"Host": "[::1]:8000"}).status_code == 200
    # a page elsewhere that rebinds its DNS name to 127.0.0.1 still sends its own Host
    assert_openai_error(local.get("/v1/models", headers={"Host": "evil.example:8000"}), 403, "host_not_allowed")


def test_cli_refuses_a_public_address_without_keys(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VESTIS_API_KEYS": ""}
    out = subprocess.run([sys.executable, "-m", "vestis", "serve", "--host", "0.0.0.0", "--port", "1"],
                         capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "refusing to listen on 0.0.0.0 without API keys" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------- rate limits


def test_rate_limit_per_key(make_client):
    c = make_client(key_hashes=frozenset({hash_key(KEY), hash_key(OTHER_KEY)}), rate_limit=60, rate_burst=3)
    assert [c.get("/v1/models", headers=AUTH).status_code for _ in range(3)] == [200, 200, 200]
    r = c.get("/v1/models", headers=AUTH)
    assert_openai_error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    assert c.get("/v1/models", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200  # its own bucket
    assert c.get("/healthz").status_code == 200


# ------------------------------------------------------------------- size limits


def test_body_limit_declared_and_streamed(make_client):
    c = make_client(max_body_bytes=10_000)
    big = {"input": ["word " * 50] * 50}
    assert_openai_error(c.post("/v1/embeddings", json=big), 413, "request_too_large")

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"input": ["'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"]}'

    assert_openai_error(c.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert c.post("/v1/embeddings", json={"input": "small"}).status_code == 200


def test_image_byte_limit(make_client):
    c = make_client(max_image_bytes=2_000)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    assert len(buf.getvalue()) > 2_000
    assert_openai_error(c.post("/v1/embeddings", json={"input": data_url(buf.getvalue())}), 413, "image_too_large")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_before_decoding(make_client):
    c = make_client(max_image_pixels=1_000_000)
    for bomb in (_png_claiming(60_000, 60_000), _png_claiming(1500, 1500)):
        err = assert_openai_error(c.post("/v1/embeddings", json={"input": [data_url(bomb)]}), 400, "invalid_image")
        assert "too large" in err["message"] and "input[0]" in err["message"]
    # a real image over the pixel limit, compressed small
    buf = io.BytesIO()
    Image.new("RGB", (1200, 1000), (255, 255, 255)).save(buf, format="PNG")
    assert_openai_error(c.post("/v1/embeddings", json={"input": [data_url(buf.getvalue())]}), 400, "invalid_image")
    assert c.post("/v1/embeddings", json={"input": [data_url(png())]}).status_code == 200


# ------------------------------------------------------------------ errors, headers


class _Exploding:
    """An encoder whose text tower fails with an unexpected error carrying a secret."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode_texts(self, texts, **kw):
        raise RuntimeError("secret internal detail /etc/vestis")


def test_unexpected_errors_are_generic_500s(make_client, mini):
    c = make_client(encoder=_Exploding(mini), client_kwargs={"raise_server_exceptions": False})
    r = c.post("/v1/embeddings", json={"input": "dress"})
    err = assert_openai_error(r, 500, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text and "internal server error" in err["message"]
    assert c.get("/healthz").status_code == 200


def test_security_headers_on_the_page(make_client):
    c = make_client()
    r = c.get("/")
    assert r.status_code == 200 and "<title>vestis" in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
