"""Scoped API keys: a storefront key that only reads, a pipeline key that writes one catalog, 403s in
OpenAI's shape, and a keys file that is read again when it changes (rotation without a restart)."""

from __future__ import annotations

import os
import time

import pytest

from vestis.errors import InputError
from vestis.serve.security import KeyStore, hash_key, load_keys

from .test_security import assert_openai_error

STOREFRONT = "storefront-key-0123456789"
PIPELINE = "pipeline-key-abcdefghijkl"
OUTLET = "outlet-only-key-987654321"
ENV_KEY = "env-key-full-access-000111"
ROTATED = "rotated-in-key-5555666677"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def item(i: int) -> dict:
    return {"items": [{"id": i, "metadata": {"productDisplayName": "Grey Wool Scarf", "articleType": "Scarves"}}]}


def write_keys(path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))  # a changed mtime even within one tick


@pytest.fixture
def keyed(make_client, index_copy, tmp_path):
    keys = tmp_path / "keys.txt"
    lines = ["# storefront: search and embed only", f"{STOREFRONT} read",
             f"sha256:{hash_key(PIPELINE)}  read write catalog:shop", f"{OUTLET} read,catalog:outlet"]  # fmt: skip
    write_keys(keys, "\n".join(lines) + "\n")
    c = make_client(catalogs=[index_copy], api_keys_file=keys, key_hashes=frozenset({hash_key(ENV_KEY)}))
    return c, keys


def test_a_read_key_reads_and_may_not_write(keyed):
    c, _ = keyed
    h = bearer(STOREFRONT)
    assert c.post("/v1/embeddings", json={"input": "red dress"}, headers=h).status_code == 200
    assert c.post("/v1/search", json={"query": "red dress"}, headers=h).status_code == 200
    assert c.get("/v1/catalogs/shop", headers=h).status_code == 200
    for method, path, body in (("POST", "/v1/catalogs/shop/items", item(990001)),
                               ("PUT", "/v1/catalogs/shop/items", item(990001)),
                               ("PUT", "/v1/catalogs/shop/items/990001", item(990001)["items"][0]),
                               ("POST", "/v1/catalogs/shop/items/delete", {"ids": [1]}),
                               ("DELETE", "/v1/catalogs/shop/items/1", None)):  # fmt: skip
        r = c.request(method, path, json=body, headers=h)
        err = assert_openai_error(r, 403, "insufficient_scope")
        assert r.json()["error"]["type"] == "permission_error" and "write" in err["message"]


def test_a_write_key_writes_its_catalog_and_env_keys_do_everything(keyed):
    c, _ = keyed
    r = c.post("/v1/catalogs/shop/items", json=item(990002), headers=bearer(PIPELINE))
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    r = c.post("/v1/catalogs/shop/items", json=item(990003), headers=bearer(ENV_KEY))
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    assert c.delete("/v1/catalogs/shop/items/990003", headers=bearer(ENV_KEY)).status_code == 200


def test_a_key_for_another_catalog_may_not_touch_this_one(keyed):
    c, _ = keyed
    h = bearer(OUTLET)
    assert_openai_error(c.get("/v1/catalogs/shop", headers=h), 403, "catalog_not_allowed")
    assert_openai_error(c.post("/v1/search", json={"query": "dress"}, headers=h), 403, "catalog_not_allowed")
    assert c.get("/v1/catalogs", headers=h).json()["data"] == []  # it sees no catalog
    assert [x["name"] for x in c.get("/v1/catalogs", headers=bearer(STOREFRONT)).json()["data"]] == ["shop"]
    assert c.post("/v1/embeddings", json={"input": "dress"}, headers=h).status_code == 200


def test_the_keys_file_is_read_again_when_it_changes(keyed):
    c, keys = keyed
    assert c.get("/v1/models", headers=bearer(STOREFRONT)).status_code == 200
    write_keys(keys, f"{ROTATED} read\n{PIPELINE} write catalog:shop\n")
    time.sleep(1.2)
    assert_openai_error(c.get("/v1/models", headers=bearer(STOREFRONT)), 401, "invalid_api_key")
    assert c.get("/v1/models", headers=bearer(ROTATED)).status_code == 200
    assert_openai_error(c.get("/v1/models", headers=bearer(PIPELINE)), 403, "insufficient_scope")  # write only now
    assert c.get("/v1/models", headers=bearer(ENV_KEY)).status_code == 200  # VESTIS_API_KEYS stay
    write_keys(keys, "this line is not a key\n")  # a broken file keeps the keys that were there
    time.sleep(1.2)
    assert c.get("/v1/models", headers=bearer(ROTATED)).status_code == 200


def test_scopes_are_parsed_and_keys_kept_hashed(tmp_path):
    f = tmp_path / "k"
    f.write_text(f"{STOREFRONT} read\n{PIPELINE} write catalog:a catalog:b\n{OUTLET}\n")
    grants = load_keys(f, env=ENV_KEY)
    got = {k: (g.read, g.write, g.catalogs) for k, g in grants.items()}
    assert got == {hash_key(STOREFRONT): (True, False, None), hash_key(PIPELINE): (False, True, frozenset("ab")),
                   hash_key(OUTLET): (True, True, None), hash_key(ENV_KEY): (True, True, None)}  # fmt: skip
    store = KeyStore([], f)
    assert store.lookup(STOREFRONT)[1].read and not store.lookup(STOREFRONT)[1].write
    assert all(k not in repr(vars(store)) for k in (STOREFRONT, PIPELINE, OUTLET))
    f.write_text(f"{STOREFRONT} admin\n")
    with pytest.raises(InputError, match="unknown scope 'admin'"):
        load_keys(f, env="")
