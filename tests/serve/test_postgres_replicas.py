"""Two ``vestis serve --store postgresql://...`` processes on one database are replicas: an item
added through one is found through the other, a delete through the other is seen by the first,
both serve the page, both answer on new connections after theirs were dropped, and a database
that is down is a 503 until it is back."""

from __future__ import annotations

import httpx2
import psycopg
import pytest

from vestis.index.build import build_index
from vestis.index.postgres import split_url

from .test_cli import free_port, vestis_serve

pytestmark = pytest.mark.slow


def test_two_servers_on_one_database_see_each_others_writes(pg_store_url, pg_restart, catalog_table, mini):
    rows = catalog_table.slice(0, 40).to_pylist()
    assert build_index(rows, pg_store_url, encoder=mini, quiet=True).total_items == 40
    name = pg_store_url.rsplit("schema=", 1)[1]
    pa, pb = free_port(), free_port()
    a_url, b_url = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
    with (
        vestis_serve("--store", pg_store_url, "--port", str(pa), port=pa) as a,
        vestis_serve("--catalog", pg_store_url, "--port", str(pb), port=pb) as b,
    ):
        assert a["ready"]["catalogs"] == [name] and b["ready"]["catalogs"] == [name]
        item = {"id": "zx-1", "metadata": {"productDisplayName": "Zorblax storm coat", "articleType": "Zorblax"}}
        added = httpx2.post(f"{a_url}/v1/catalogs/{name}/items", json={"items": [item]}, timeout=120).json()
        assert added["added"] == 1, added
        found = httpx2.post(f"{b_url}/v1/search", json={"query": "storm coat", "where": "articleType = 'zorblax'",
                                                        "k": 5}, timeout=60).json()  # fmt: skip
        assert [r["id"] for r in found["results"]] == ["zx-1"]
        hybrid = httpx2.post(f"{b_url}/v1/search", json={"query": "zorblax", "hybrid": 0.9, "k": 3}, timeout=60)
        assert hybrid.json()["results"][0]["id"] == "zx-1"
        info = httpx2.get(f"{b_url}/v1/catalogs/{name}", timeout=30).json()
        assert info["items"] == 41
        assert httpx2.delete(f"{b_url}/v1/catalogs/{name}/items/zx-1", timeout=60).status_code == 200
        assert httpx2.get(f"{a_url}/v1/catalogs/{name}/items/zx-1", timeout=30).status_code == 404
        for url in (a_url, b_url):
            page = httpx2.get(f"{url}/", timeout=30)
            assert page.status_code == 200 and "<html" in page.text.lower()
        with psycopg.connect(split_url(pg_store_url)[0], autocommit=True) as admin:  # both servers' links dropped
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE application_name = %s",
                [f"vestis/{name}"],
            ).fetchone()[0]
        assert dropped >= 2
        search = {"query": "storm coat", "k": 3}
        for url in (a_url, b_url):  # answered on new connections
            assert httpx2.post(f"{url}/v1/search", json=search, timeout=60).status_code == 200
        with pg_restart():  # the database is down: a clear 503, then served again once it is back
            down = httpx2.post(f"{a_url}/v1/search", json=search, timeout=60)
            assert down.status_code == 503 and down.headers["retry-after"]
            error = down.json()["error"]
            assert error["code"] == "store_unavailable" and "no working connection to the database" in error["message"]
        for url in (a_url, b_url):
            assert httpx2.post(f"{url}/v1/search", json=search, timeout=60).status_code == 200
    assert "Traceback" not in a["log"] + b["log"]
