"""The installed CLI on a PostgreSQL store: ``--store`` and ``VESTIS_STORE`` name it in place of INDEX."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from vestis.index.pgserver import default_shared_buffers

pytestmark = pytest.mark.slow


def vestis(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vestis", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})  # fmt: skip


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_build_search_info_delete_with_store(kagl_small, pg_store_url, tmp_path):
    built = last_json(vestis("index", "build", str(kagl_small), "--store", pg_store_url, "--json", "--quiet"))
    assert built["added"] == 60 and built["total_items"] == 60
    env = {"VESTIS_STORE": pg_store_url}
    hits = last_json(vestis("search", "shirt", "--where", "masterCategory = 'apparel'", "--json", env=env))
    assert hits["results"] and all(h["metadata"]["masterCategory"] == "Apparel" for h in hits["results"])
    first = str(hits["results"][0]["id"])
    like = last_json(vestis("similar", first, "--k", "3", "--json", env=env))
    assert first not in [str(h["id"]) for h in like["results"]] and len(like["results"]) == 3
    info = last_json(vestis("index", "info", "--facet", "masterCategory", "--json", env=env))
    assert info["items"] == 60 and info["check"]["ok"] and sum(n for _, n in info["facets"]["masterCategory"]) == 60
    gone = last_json(vestis("index", "delete", first, "nope", "--json", env=env))
    assert gone == {"deleted": [first], "not_found": ["nope"], "total_items": 59}
    again = last_json(vestis("index", "add", str(kagl_small), "--json", "--quiet", env=env))
    assert again["added"] == 1 and again["skipped_existing"] and again["total_items"] == 60
    tags = tmp_path / "tags.parquet"
    assert vestis("tag", "--labels", "articleType", "--out", str(tags), env=env).returncode == 0 and tags.exists()
    tuned = last_json(vestis("index", "settings", "--ef-search", "150", "--ann-threshold", "10", "--json", env=env))
    assert tuned["changed"] == ["threshold", "ef_search"] and tuned["ann"]["ef_search"] == 150
    assert last_json(vestis("index", "info", "--json", env=env))["check"]["hnsw"]  # 60 items, threshold 10: built
    half = last_json(vestis("index", "settings", "--quantizer", "float16", "--json", env=env))
    assert half["graph_rebuilt"] and half["ann"] == {**tuned["ann"], "quantizer": "float16"}
    assert last_json(vestis("search", "shirt", "--k", "3", "--json", env=env))["results"]
    bad = vestis("search", "shirt", "--store", pg_store_url.replace("schema=", "schema=nothing_here_"))
    assert bad.returncode == 2 and "holds no vestis catalog" in bad.stderr and "Traceback" not in bad.stderr
    newer_dir = vestis("index", "info", "--store", "postgresql://nobody@/nodb?host=/nonexistent")
    assert newer_dir.returncode == 2 and "cannot connect" in newer_dir.stderr


@pytest.fixture
def pg_folder():
    """A folder of the test's own for a server's data, not pytest's: another pytest session on the machine sets
    pytest's base folder back to 0700, and the server's user must reach into it (as for :func:`pg_server`)."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="vestis-pg-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_vestis_db_start_and_stop(pg_folder):
    tmp_path = pg_folder
    data = tmp_path / "pg" / "data"
    started = last_json(vestis("db", "start", "--data", str(data), "--json"))
    try:
        assert started["url"].startswith("postgresql://")
        # a new server's buffer cache is sized to the machine, not PostgreSQL's built-in 128 MB
        assert started["shared_buffers"] == default_shared_buffers() and buffers(started["url"]) == size_bytes(
            default_shared_buffers()
        )
        again = last_json(vestis("db", "start", "--data", str(data), "--json"))  # already running: the same server
        assert again["url"] == started["url"]
        empty = vestis("index", "info", "--store", started["url"])
        assert empty.returncode == 2 and "holds no vestis catalog" in empty.stderr
        running = vestis("db", "start", "--data", str(data), "--shared-buffers", "256MB")
        assert running.returncode == 2 and "stop it first" in running.stderr and buffers(started["url"]) > 2**28
    finally:
        stopped = vestis("db", "stop", "--data", str(data))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    try:  # given once, kept for the starts after
        assert last_json(vestis("db", "start", "--data", str(data), "--shared-buffers", "256MB", "--json"))
        assert vestis("db", "stop", "--data", str(data)).returncode == 0
        restarted = last_json(vestis("db", "start", "--data", str(data), "--json"))
        assert restarted["shared_buffers"] == "256MB" and buffers(restarted["url"]) == 2**28
        bad = vestis("db", "start", "--data", str(data), "--shared-buffers", "lots")
        assert bad.returncode == 2 and "give a size such as" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        stopped = vestis("db", "stop", "--data", str(data))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    gone = vestis("index", "info", "--store", started["url"])
    assert gone.returncode == 2 and "cannot connect" in gone.stderr
    bad = vestis("db", "start", "--data", str(tmp_path / "pg"))  # a folder with other things in it
    assert bad.returncode == 2 and "not a PostgreSQL data directory" in bad.stderr


def buffers(url: str) -> int:
    """The running server's shared_buffers, in bytes."""
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute("SELECT pg_size_bytes(current_setting('shared_buffers'))").fetchone()[0]


def size_bytes(size: str) -> int:
    return int(size.removesuffix("MB")) * 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vestis_db_start_on_tcp(pg_folder, kagl_small):
    import psycopg

    data = pg_folder / "pg" / "data"
    port = free_port()
    refused = vestis("db", "start", "--data", str(data), "--host", "0.0.0.0", "--port", str(port))
    assert refused.returncode == 2 and "without a password" in refused.stderr and not data.exists()
    try:
        started = last_json(vestis("db", "start", "--data", str(data), "--port", str(port), "--json"))
        url = started["url"]
        assert url == f"postgresql://postgres@127.0.0.1:{port}/postgres"  # TCP, loopback by default
        with psycopg.connect(url) as con:  # a client over TCP, not the socket
            assert con.execute("SELECT inet_server_port()").fetchone()[0] == port
        again = last_json(vestis("db", "start", "--data", str(data), "--json"))  # running: its URL, as it listens
        assert again["url"] == url
        other = vestis("db", "start", "--data", str(data), "--port", str(free_port()))
        assert other.returncode == 2 and "already running" in other.stderr and "vestis db stop" in other.stderr
        built = last_json(vestis("index", "build", str(kagl_small), "--store", url, "--json", "--quiet"))
        assert built["total_items"] == 60
        hits = last_json(vestis("search", "shirt", "--store", url, "--json"))
        assert hits["results"]
    finally:
        stopped = vestis("db", "stop", "--data", str(data))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)


def test_build_reports_are_kept_and_shown_alike_by_both_stores(tmp_path, pg_store_url, kagl_small):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(kagl_small).slice(0, 12).to_pylist()
    rows.append({**rows[0], "id": 900001, "image": b"not an image", "productDisplayName": "Navy linen shirt"})
    rows.append({**rows[1], "id": 900002, "image": None, "productDisplayName": ""})  # nothing to embed
    rows.append(dict(rows[2]))  # its id again
    catalog = tmp_path / "catalog.parquet"
    pq.write_table(pa.Table.from_pylist(rows), catalog)
    infos = {}
    for name, location in (("local", str(tmp_path / "idx")), ("postgres", pg_store_url)):
        built = last_json(vestis("index", "build", str(catalog), "--store", location, "--json", "--quiet"))
        info = last_json(vestis("index", "info", "--store", location, "--json"))
        last = info["last_build"]
        assert last == built, name  # what the build printed is what the store kept
        assert (last["mode"], last["seen"], last["added"], last["total_items"]) == ("build", 15, 13, 13), name
        assert [p["id"] for p in last["unreadable_images"]] == ["900001"] and last["unreadable_images"][0]["reason"]
        assert [p["id"] for p in last["not_indexed"]] == ["900002"]
        assert last["duplicate_ids"] == [str(rows[2]["id"])]
        assert last["seconds"] > 0 and last["items_per_second"] > 0 and last["finished_at"].endswith("+00:00")
        text = vestis("index", "info", "--store", location)
        assert text.returncode == 0, text.stderr
        line = next(x for x in text.stdout.splitlines() if x.startswith("last build:"))
        assert "build of" in line and "read from the catalog 15" in line and "added 13" in line, line
        assert "unreadable images (indexed by title) 1" in line and "not indexed (no image, no title) 1" in line
        last_json(vestis("index", "add", str(catalog), "--store", location, "--json", "--quiet"))
        added = last_json(vestis("index", "info", "--store", location, "--json"))["last_build"]
        assert added["mode"] == "add" and len(added["skipped_existing"]) == 13 and added["added"] == 0, name
        infos[name] = (info, last)
    (local, local_last), (pg, pg_last) = infos["local"], infos["postgres"]
    assert set(local) == set(pg)  # index info: the same fields on both stores
    timing = {"index", "seconds", "items_per_second", "finished_at"}
    assert {k: v for k, v in local_last.items() if k not in timing} == {
        k: v for k, v in pg_last.items() if k not in timing
    }


def outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_vestis_db_start_on_every_address_lets_others_in_by_password_only(pg_folder):
    import psycopg

    outward = outward_address()
    if outward is None:
        pytest.skip("this machine has no address but loopback")
    data, port = pg_folder / "data", free_port()
    env = {"VESTIS_DB_PASSWORD": "a-long-test-password"}
    try:
        started = last_json(vestis("db", "start", "--data", str(data), "--host", "0.0.0.0", "--port", str(port),
                                   "--json", env=env))  # fmt: skip
        assert started["url"] == f"postgresql://postgres@{socket.gethostname()}:{port}/postgres"
        with pytest.raises(psycopg.OperationalError, match="password"):  # from another address: no trust
            psycopg.connect(
                f"postgresql://postgres@{outward}:{port}/postgres", connect_timeout=10, passfile="/dev/null"
            )
        url = f"postgresql://postgres:a-long-test-password@{outward}:{port}/postgres"
        with psycopg.connect(url, connect_timeout=10) as con:
            assert str(con.execute("SELECT inet_server_addr()").fetchone()[0]) == outward
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as con:  # this machine: as the socket
            assert con.execute("SELECT 1").fetchone()[0] == 1
    finally:
        stopped = vestis("db", "stop", "--data", str(data))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
