"""``vestis index update`` killed mid-run: the index stays consistent (whole batches only), and the
next update finishes the job. (A killed build is tested in test_build.py.)"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vestis.index.build import build_index
from vestis.index.local import LocalStore
from vestis.search import Catalog

from .conftest import kagl_rows

pytestmark = pytest.mark.slow
BATCH = 256  # build_index's default: what `vestis index update` commits at a time


def generation(index) -> int:
    con = sqlite3.connect(f"file:{index / 'index.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()[0])
    finally:
        con.close()


def test_kill_during_update_leaves_whole_batches_and_the_next_update_finishes(tmp_path, mini):
    rows = kagl_rows(300).to_pylist()
    rows = [{**r, "id": r["id"] * 10 + k} for k in range(2) for r in rows]  # 600 products with photos
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "old.parquet")
    out = tmp_path / "idx"
    build_index(tmp_path / "old.parquet", out, encoder=mini, quiet=True)
    changed = [{**r, "productDisplayName": f"{r['productDisplayName'] or 'item'} (new season)"} for r in rows]
    pq.write_table(pa.Table.from_pylist(changed), tmp_path / "new.parquet")
    start = generation(out)
    proc = subprocess.Popen([sys.executable, "-m", "vestis", "index", "update", str(out), str(tmp_path / "new.parquet"),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if generation(out) > start:  # the first batch is committed: kill it in the middle of the next
                proc.send_signal(signal.SIGKILL)
                break
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"the update ended before it could be killed: {proc.stderr.read()}"
    titles = {str(r["id"]): (r["productDisplayName"], c["productDisplayName"]) for r, c in zip(rows, changed)}
    with LocalStore.open(out) as store:
        check = store.check()
        assert check["ok"], check
        assert store.count() == 600
        got = store.get(list(titles))
        new = sum(got[i].title == titles[i][1] for i in titles)
        assert all(got[i].title in titles[i] for i in titles)  # each item is one version or the other
        assert new % BATCH == 0 and 0 < new < 600, new  # whole committed batches only
    resumed = build_index(tmp_path / "new.parquet", out, encoder=mini, mode="update", quiet=True)
    assert resumed.unchanged == new and resumed.updated == 600 - new and resumed.total_items == 600
    with Catalog.open(out, encoder=mini) as cat:
        assert len(cat.search("new season jeans", k=5).hits) == 5
