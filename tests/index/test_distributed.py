"""``engine="ray"`` (``--engine ray``): the catalog read, decoded and embedded by Ray workers, written
by one driver, in each mode (build, add, update) as the local engine does.

One local Ray (3 CPUs: two workers and Ray Data's reading, a small object store, no dashboard)
serves the module; the CLI test starts its own in a subprocess, as a user's command does. The
model is the tiny random-weight one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vestis.errors import InputError
from vestis.index.build import build_index
from vestis.index.distributed import RayOptions
from vestis.index.stores import open_store

from .conftest import kagl_rows

pytestmark = pytest.mark.slow
MODEL = "vestis-tiny-random"


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=3, object_store_memory=128 * 1024**2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """40 KAGL products, and the rows a build must count rather than index: a later row repeating
    an id (with another title: the first row wins), a row without an id, and a damaged image
    (indexed by its title)."""
    rows = kagl_rows(40).to_pylist()
    rows.append({**rows[3], "productDisplayName": "a later row with the same id"})
    rows.append({**rows[4], "id": None})
    rows.append({**rows[5], "id": 1_000_001, "image": b"\xff\xd8 not really a jpeg", "productDisplayName": "Red Shirt"})
    path = tmp_path_factory.mktemp("ray-catalog") / "catalog.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=16)  # three row groups: three reading tasks
    return path


def on_ray(catalog, out, *, workers=2, worker_batch_size=32, **kw):
    """``build_index`` with ``engine="ray"`` (the Ray of ``ray_local``, or a new local one)."""
    return build_index(
        catalog, out, engine="ray", ray=RayOptions(workers=workers, worker_batch_size=worker_batch_size), quiet=True,
        **kw,
    )  # fmt: skip


def stored(location) -> dict:
    with open_store(location) as store:
        ids = list(store.content_hashes())
        return store.get(ids, vectors=True, thumbnails=True)


def assert_same_items(local, on_ray) -> dict:
    """The two stores hold the same items, the same vectors (to float error); returns the second's."""
    want, got = stored(local), stored(on_ray)
    assert sorted(got) == sorted(want)
    for key, rec in want.items():
        other = got[key]
        assert (other.content_hash, other.title, other.metadata, other.id_value) == (
            rec.content_hash, rec.title, rec.metadata, rec.id_value
        )  # fmt: skip
        assert other.thumbnail == rec.thumbnail and other.image_error == rec.image_error
        np.testing.assert_allclose(other.vector, rec.vector, atol=2e-3)
        if rec.image_vector is not None:
            np.testing.assert_allclose(other.image_vector, rec.image_vector, atol=2e-3)
    return got


#: What a report counts, engine aside (the time and the workers are each run's own).
COUNTS = ("seen", "added", "updated", "metadata_updated", "unchanged", "skipped_existing", "skipped_missing",
          "duplicate_ids", "missing_id", "unreadable_images", "not_indexed", "total_items")  # fmt: skip


def write(rows, path):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_ray_build_stores_what_the_local_build_stores_and_a_rerun_skips_everything(catalog, tmp_path, ray_local):
    local = build_index(catalog, tmp_path / "local", model=MODEL, quiet=True)
    ray_report = on_ray(catalog, tmp_path / "ray", model=MODEL, worker_batch_size=8)
    assert ray_report.engine == "ray" and local.engine == "local"
    for name in ("seen", "added", "duplicate_ids", "missing_id", "not_indexed", "total_items"):
        assert getattr(ray_report, name) == getattr(local, name), name
    assert ray_report.added == 41 and ray_report.missing_id == 1 and len(ray_report.duplicate_ids) == 1
    assert [p["id"] for p in ray_report.unreadable_images] == ["1000001"] and not ray_report.not_indexed
    assert sum(ray_report.workers.values()) == 41 and len(ray_report.workers) >= 1
    assert all(name.rsplit(":", 1)[1].isdigit() for name in ray_report.workers)  # host:pid of each worker

    got = assert_same_items(tmp_path / "local", tmp_path / "ray")
    dup = str(ray_report.duplicate_ids[0])
    assert got[dup].title != "a later row with the same id"  # the first row of an id wins, as locally
    reports = list((tmp_path / "ray" / "reports").glob("build-*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["engine"] == "ray"

    again = on_ray(catalog, tmp_path / "ray")  # the index's model, as locally
    assert (again.added, again.updated, again.metadata_updated, again.unchanged) == (0, 0, 0, 41)
    assert again.workers == {} and again.total_items == 41  # nothing was embedded


def test_ray_add_and_update_do_what_the_local_engine_does(catalog, tmp_path, ray_local):
    """The same index (20 items, built locally) grown by ``add`` and refreshed by ``update``, once
    in this process and once on Ray: the same reports and items; ``update`` on Ray embeds only
    the item whose title changed."""
    rows = pq.read_table(catalog).to_pylist()  # 40 products, a repeated id, a row without one, a damaged image
    build_index(write(rows[:20], tmp_path / "first.parquet"), tmp_path / "local", model=MODEL, quiet=True)
    shutil.copytree(tmp_path / "local", tmp_path / "ray")

    more = [dict(r) for r in rows]
    more[0]["productDisplayName"] = "a title add must not take: the item is in the index"
    added = write(more, tmp_path / "add.parquet")
    local = build_index(added, tmp_path / "local", mode="add", quiet=True)
    ray_report = on_ray(added, tmp_path / "ray", mode="add", worker_batch_size=8)
    assert ray_report.engine == "ray" and ray_report.mode == "add"
    for name in COUNTS:
        assert getattr(ray_report, name) == getattr(local, name), name
    assert (ray_report.added, len(ray_report.skipped_existing), ray_report.updated) == (21, 20, 0)
    assert sum(ray_report.workers.values()) == 21  # only the new items were embedded
    got = assert_same_items(tmp_path / "local", tmp_path / "ray")
    first_id = str(rows[0]["id"])
    assert got[first_id].title == rows[0]["productDisplayName"]

    changed = [dict(r) for r in rows[:40]]
    changed[1]["productDisplayName"] = "a new title"  # re-embedded
    changed[2]["season"] = "Monsoon"  # metadata only: stored again, not embedded
    changed.append({**rows[5], "id": 2_000_002})  # not in the index: update skips it
    updated = write(changed, tmp_path / "update.parquet")
    before = stored(tmp_path / "ray")
    local = build_index(updated, tmp_path / "local", mode="update", quiet=True)
    ray_report = on_ray(updated, tmp_path / "ray", mode="update")
    for name in COUNTS:
        assert getattr(ray_report, name) == getattr(local, name), name
    assert (ray_report.updated, ray_report.metadata_updated, ray_report.unchanged) == (1, 1, 38)
    assert ray_report.skipped_missing == ["2000002"] and ray_report.added == 0 and ray_report.total_items == 41
    assert sum(ray_report.workers.values()) == 1  # the changed title, and nothing else, embedded
    after = assert_same_items(tmp_path / "local", tmp_path / "ray")
    retitled, reseasoned = str(rows[1]["id"]), str(rows[2]["id"])
    assert after[retitled].title == "a new title"
    assert after[retitled].content_hash != before[retitled].content_hash
    assert not np.allclose(after[retitled].vector, before[retitled].vector, atol=1e-3)  # its title's part is new
    assert after[reseasoned].metadata["season"] == "Monsoon"
    for key, rec in before.items():
        if key != retitled:  # every other item keeps the vectors it had
            assert np.array_equal(after[key].vector, rec.vector), key


def test_a_killed_worker_is_restarted_and_every_item_is_stored_once(tmp_path, ray_local):
    rows = kagl_rows(40).to_pylist()
    rows = [{**r, "id": r["id"] * 10 + k} for k in range(3) for r in rows]  # 120 items: work left after the kill
    path = tmp_path / "catalog.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    killed: list[int] = []
    before: set[str] = set()

    def kill_a_worker(report) -> None:
        if killed or not report.workers:
            return
        name = next(iter(report.workers))  # host:pid, as the worker itself reported it
        killed.append(int(name.rsplit(":", 1)[1]))
        before.update(report.workers)
        os.kill(killed[0], signal.SIGKILL)

    # One worker: what is left after the kill can only be embedded by the worker Ray restarts.
    report = on_ray(
        path, tmp_path / "idx", model=MODEL, workers=1, worker_batch_size=2, batch_size=4, on_commit=kill_a_worker
    )
    assert killed, "no worker was killed"
    assert set(report.workers) - before, f"no worker was restarted after the kill: {report.workers}"
    assert report.added == 120 and report.seen == 120 and sum(report.workers.values()) == 120
    assert not report.duplicate_ids and not report.not_indexed
    with open_store(tmp_path / "idx") as store:
        assert store.count() == 120 and store.check()["ok"]
        assert sorted(store.content_hashes()) == sorted(str(r["id"]) for r in rows)


def test_ray_build_into_postgres_then_a_changed_catalog(catalog, pg_store_url, tmp_path, ray_local):
    first = on_ray(catalog, pg_store_url, model=MODEL)
    assert first.added == 41 and first.total_items == 41
    rows = pq.read_table(catalog).to_pylist()[:40]
    rows[0]["season"] = "Monsoon"  # metadata only: stored again, not embedded
    rows[1]["productDisplayName"] = "a new title"  # re-embedded
    changed = tmp_path / "changed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), changed)
    report = on_ray(changed, pg_store_url, prune=True)
    assert (report.metadata_updated, report.updated, report.unchanged, report.pruned) == (1, 1, 38, 1)
    assert sum(report.workers.values()) == 1 and report.total_items == 40
    got = stored(pg_store_url)
    assert got[str(rows[0]["id"])].metadata["season"] == "Monsoon" and got[str(rows[1]["id"])].title == "a new title"


def test_cli_engine_ray_starts_a_local_ray(catalog, tmp_path):
    """The installed CLI in a subprocess: it starts (and stops) its own small Ray."""
    out = tmp_path / "idx"
    cmd = [sys.executable, "-m", "vestis", "index", "build", str(catalog), "--store", str(out), "--engine", "ray",
           "--workers", "1", "--model", MODEL, "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["engine"] == "ray" and report["added"] == 41 and len(report["workers"]) == 1
    assert "Traceback" not in proc.stderr
    rows = pq.read_table(catalog).to_pylist()[:40]
    rows[0]["productDisplayName"] = "a new title"
    changed = write(rows, tmp_path / "changed.parquet")
    update = [sys.executable, "-m", "vestis", "index", "update", str(changed), "--engine", "ray", "--workers", "1",
              "--json"]  # fmt: skip
    proc = subprocess.run(
        update, capture_output=True, text=True, timeout=600, env={**os.environ, "VESTIS_STORE": str(out)}
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["engine"], report["mode"], report["updated"], report["unchanged"]) == ("ray", "update", 1, 39)
    assert sum(report["workers"].values()) == 1
    # (not "auto": Ray's auto finds any Ray running on the machine, such as this module's)
    bad = subprocess.run([*cmd[:10], "--address", "nowhere:port", "--workers", "1", "--model", MODEL],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode != 0 and "cannot connect to Ray at nowhere:port" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_more_workers_than_the_cluster_can_hold_is_refused(catalog, tmp_path, ray_local):
    with pytest.raises(InputError, match=r"3 worker\(s\) need 4 CPUs on the Ray cluster .* it has 3: use --workers 2"):
        on_ray(catalog, tmp_path / "idx", model=MODEL, workers=3)
    assert not (tmp_path / "idx").exists()  # refused before anything was created
