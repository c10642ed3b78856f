"""For operators: /metrics in Prometheus format, /v1/stats within --max-batch, a config file."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vestis.errors import InputError
from vestis.serve.config import read_config_file

from .conftest import data_url, png


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_in_prometheus_format(make_client, index_dir, catalog_table):
    c = make_client(catalogs=[index_dir], key_hashes=frozenset())
    assert c.post("/v1/search", json={"query": "jeans", "k": 3}).status_code == 200
    assert c.post("/v1/search", json={"query": "jeans", "k": 3}).status_code == 200
    assert c.get("/v1/catalogs/nope").status_code == 404
    photo = data_url(catalog_table.column("image")[0].as_py())
    assert c.post("/v1/embeddings", json={"input": [photo, photo, "a red dress"]}).status_code == 200
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    search = (("method", "POST"), ("route", "/v1/search"), ("status", "200"))
    assert got[("vestis_requests_total", search)] == 2
    missing = (("method", "GET"), ("route", "/v1/catalogs/{name}"), ("status", "404"))
    assert got[("vestis_requests_total", missing)] == 1  # the route's template, never the raw path
    assert got[("vestis_request_seconds_count", (("method", "POST"), ("route", "/v1/search")))] == 2
    assert got[("vestis_batch_size_count", (("batcher", "images"),))] == 1
    assert got[("vestis_batch_size_sum", (("batcher", "images"),))] == 2
    assert got[("vestis_batch_size_bucket", (("batcher", "images"), ("le", "1.0")))] == 0
    assert got[("vestis_batch_size_bucket", (("batcher", "images"), ("le", "2.0")))] == 1
    assert got[("vestis_queue_depth", (("batcher", "texts"),))] == 0
    assert got[("vestis_catalog_items", (("catalog", "shop"),))] == catalog_table.num_rows
    assert got[("vestis_encoder_calls_total", (("batcher", "texts"),))] >= 1


def test_refused_requests_are_counted_too(make_client):
    from vestis.serve.security import hash_key

    from .conftest import KEY

    c = make_client(key_hashes=frozenset({hash_key(KEY)}))
    assert c.get("/v1/models").status_code == 401
    got = samples(c.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text)
    assert got[("vestis_requests_total", (("method", "GET"), ("route", "/v1/models"), ("status", "401")))] == 1


def test_no_encoder_call_is_larger_than_max_batch(make_client):
    """The articleType taxonomy's label embeddings are one request of 120 prompts; with
    --max-batch 16 they go to the encoder 16 at a time (largest_batch used to report the request)."""
    c = make_client(max_batch=16)
    photo = data_url(png())
    r = c.post("/v1/classify", json={"image": photo, "taxonomies": ["articleType"], "k": 1})
    assert r.status_code == 200, r.text
    many = c.post("/v1/embeddings", json={"input": [f"item {i}" for i in range(40)]})
    assert many.status_code == 200 and len(many.json()["data"]) == 40
    stats = c.get("/v1/stats").json()
    assert stats["max_batch"] == 16
    assert 0 < stats["texts"]["largest_batch"] <= 16 and stats["images"]["largest_batch"] <= 16
    assert stats["texts"]["requests"] == 2  # each request counted once, however it was split


def test_split_requests_give_the_same_vectors(make_client, mini):
    texts = [f"a {c} shirt" for c in ("red", "blue", "green", "black", "white", "grey", "navy")]
    small = make_client(max_batch=3).post("/v1/embeddings", json={"input": texts}).json()
    got = np.array([d["embedding"] for d in small["data"]])
    np.testing.assert_allclose(got, mini.encode_texts(texts), atol=1e-5)


# ------------------------------------------------------------------------ config file


def test_config_file_holds_what_the_flags_hold(tmp_path):
    (tmp_path / "serve.yaml").write_text(
        "catalog: indexes/shop\nmodel: vestis-mini\nport: 8123\napi-keys-file: keys.txt\nmax-batch: 32\n"
        "batching: false\nmax_wait_ms: 2.5\nlog-level: warning\n"
    )
    got = read_config_file(tmp_path / "serve.yaml")
    assert got == {"catalogs": [tmp_path / "indexes/shop"], "model": "vestis-mini", "port": 8123,
                   "api_keys_file": tmp_path / "keys.txt", "max_batch": 32, "batching": False, "max_wait_ms": 2.5,
                   "log_level": "warning"}  # fmt: skip
    (tmp_path / "serve.toml").write_text('catalogs = ["/srv/a", "b"]\nrate-limit = 0\n')
    assert read_config_file(tmp_path / "serve.toml") == {"catalogs": [__import__("pathlib").Path("/srv/a"),
                                                                      tmp_path / "b"], "rate_limit": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-batch: 0\n", "max_batch: Input should be greater than or equal to 1"),
        ("prot: 80\n", "prot: Extra inputs are not permitted.*the settings are: catalogs, model, host, port"),
        ("port: [1\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_files_are_named(tmp_path, text, message):
    (tmp_path / "serve.yaml").write_text(text)
    with pytest.raises(InputError, match=message):
        read_config_file(tmp_path / "serve.yaml")
    with pytest.raises(InputError, match="cannot read it"):
        read_config_file(tmp_path / "missing.yaml")
