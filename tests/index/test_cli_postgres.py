"""The installed CLI on a PostgreSQL store: ``--store`` and ``VESTIS_STORE`` name it in place of INDEX."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
    bad = vestis("search", "shirt", "--store", pg_store_url.replace("schema=", "schema=nothing_here_"))
    assert bad.returncode == 2 and "holds no vestis catalog" in bad.stderr and "Traceback" not in bad.stderr
    newer_dir = vestis("index", "info", "--store", "postgresql://nobody@/nodb?host=/nonexistent")
    assert newer_dir.returncode == 2 and "cannot connect" in newer_dir.stderr


def test_vestis_db_start_and_stop(tmp_path):
    data = tmp_path / "pg" / "data"
    started = last_json(vestis("db", "start", "--data", str(data), "--json"))
    try:
        assert started["url"].startswith("postgresql://")
        again = last_json(vestis("db", "start", "--data", str(data), "--json"))  # already running: the same server
        assert again["url"] == started["url"]
        empty = vestis("index", "info", "--store", started["url"])
        assert empty.returncode == 2 and "holds no vestis catalog" in empty.stderr
    finally:
        stopped = vestis("db", "stop", "--data", str(data))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    gone = vestis("index", "info", "--store", started["url"])
    assert gone.returncode == 2 and "cannot connect" in gone.stderr
    bad = vestis("db", "start", "--data", str(tmp_path / "pg"))  # a folder with other things in it
    assert bad.returncode == 2 and "not a PostgreSQL data directory" in bad.stderr
