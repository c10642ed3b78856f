"""Building and maintaining an index from real KAGL rows: incremental, atomic, resumable."""

from __future__ import annotations

import json
import pickle
import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vestis.data.catalog import CatalogReader
from vestis.errors import InputError
from vestis.index.build import build_index, delete_items
from vestis.index.distributed import RayOptions
from vestis.index.local import LocalStore
from vestis.search import Catalog

from .conftest import jpeg, kagl_rows


def test_build_then_rebuild_skips_everything(kagl_small, tmp_path, tiny):
    first = build_index(kagl_small, tmp_path / "idx", encoder=tiny, quiet=True)
    assert first.added == 60 and first.total_items == 60 and not first.unreadable_images
    again = build_index(kagl_small, tmp_path / "idx", encoder=tiny, quiet=True)
    assert again.added == again.updated == 0 and again.unchanged == 60
    with LocalStore.open(tmp_path / "idx") as store:
        assert store.check()["ok"]
        rec = store.get([str(pq.read_table(kagl_small).column("id")[0].as_py())], thumbnails=True)
        (only,) = rec.values()
        assert only.thumbnail[:2] == b"\xff\xd8" and isinstance(only.id_value, int)
    reports = sorted((tmp_path / "idx" / "reports").glob("build-*.json"))
    assert reports and json.loads(reports[-1].read_text())["unchanged"] == 60


def test_changes_are_picked_up(kagl_small, tmp_path, tiny):
    table = pq.read_table(kagl_small)
    build_index(kagl_small, tmp_path / "idx", encoder=tiny, quiet=True)
    rows = table.to_pylist()
    rows[0]["season"] = "Monsoon"  # metadata only: stored again without embedding
    rows[1]["image"] = jpeg((10, 200, 10))  # new image: re-embedded
    rows.append({**rows[2], "id": 999_999})  # new item
    changed = tmp_path / "changed.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), changed)
    report = build_index(changed, tmp_path / "idx", encoder=tiny, quiet=True)
    assert (report.metadata_updated, report.updated, report.added, report.unchanged) == (1, 1, 1, 58)
    with LocalStore.open(tmp_path / "idx") as store:
        assert store.get([str(rows[0]["id"])])[str(rows[0]["id"])].metadata["season"] == "Monsoon"
        assert store.count() == 61 and store.check()["ok"]
    # prune: the catalog without the new item removes it
    report = build_index(kagl_small, tmp_path / "idx", encoder=tiny, quiet=True, prune=True)
    assert report.pruned == 1 and report.total_items == 60


def test_add_update_delete_modes(kagl_small, tmp_path, tiny):
    table = pq.read_table(kagl_small)
    head, tail = tmp_path / "head.parquet", tmp_path / "tail.parquet"
    pq.write_table(table.slice(0, 40), head)
    pq.write_table(table.slice(30, 30), tail)
    with pytest.raises(InputError, match="not a vestis index"):
        build_index(tail, tmp_path / "idx", encoder=tiny, mode="add", quiet=True)
    build_index(head, tmp_path / "idx", encoder=tiny, quiet=True)
    added = build_index(tail, tmp_path / "idx", encoder=tiny, mode="add", quiet=True)
    assert added.added == 20 and len(added.skipped_existing) == 10 and added.total_items == 60
    updated = build_index(tail, tmp_path / "idx", encoder=tiny, mode="update", quiet=True)
    assert updated.unchanged == 30 and not updated.skipped_missing
    ids = [str(x) for x in table.column("id").to_pylist()[:3]]
    result = delete_items(tmp_path / "idx", [*ids, "no-such-id"])
    assert sorted(result["deleted"]) == sorted(ids) and result["not_found"] == ["no-such-id"]
    assert result["total_items"] == 57


def test_engine_and_ray_options_are_checked_before_anything_is_made(kagl_small, tmp_path, tiny):
    with pytest.raises(InputError, match="unknown engine 'spark'; use local or ray"):
        build_index(kagl_small, tmp_path / "idx", encoder=tiny, engine="spark", quiet=True)
    with pytest.raises(InputError, match="Ray options are for engine='ray', not 'local'"):
        build_index(kagl_small, tmp_path / "idx", encoder=tiny, ray=RayOptions(workers=4), quiet=True)
    for bad in ({"workers": 0}, {"worker_batch_size": -1}, {"shard_size": 2.5}, {"workers": True}):
        with pytest.raises(InputError, match=f"Ray option {next(iter(bad))} must be a whole number, at least 1"):
            RayOptions(**bad)
    assert not (tmp_path / "idx").exists()


def test_corrupt_images_duplicates_and_missing_ids(tmp_path, tiny):
    rows = kagl_rows(10).to_pylist()
    rows[1]["image"] = b"not an image at all"
    rows[2]["image"] = rows[2]["image"][:200]  # truncated JPEG
    rows[3]["image"], rows[3]["productDisplayName"] = b"", ""  # nothing to embed
    rows[4]["productDisplayName"] = rows[4]["productDisplayName"] or "Titled product"
    rows[4]["image"] = b"\x89PNG\r\n\x1a\n broken"
    rows.append({**rows[5], "productDisplayName": "duplicate row"})  # same id again
    rows.append({**rows[6], "id": None})
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    report = build_index(path, tmp_path / "idx", encoder=tiny, quiet=True)
    bad = {r["id"] for r in report.unreadable_images}
    assert {str(rows[1]["id"]), str(rows[2]["id"]), str(rows[4]["id"])} <= bad | {r["id"] for r in report.not_indexed}
    assert str(rows[4]["id"]) in bad  # unreadable image but a title: indexed by its title
    assert [r["id"] for r in report.not_indexed] == [str(rows[3]["id"])] or str(rows[3]["id"]) in {
        r["id"] for r in report.not_indexed
    }
    assert report.duplicate_ids == [str(rows[5]["id"])] and report.missing_id == 1
    with LocalStore.open(tmp_path / "idx") as store:
        assert store.count() == 10 - len(report.not_indexed)
        kept = store.get([str(rows[5]["id"])])[str(rows[5]["id"])]
        assert kept.title != "duplicate row"  # the first row with an id wins
        assert store.check()["ok"]


def test_empty_catalog_gives_an_empty_index(tmp_path, tiny):
    path = tmp_path / "empty.parquet"
    pq.write_table(kagl_rows(5).slice(0, 0), path)
    report = build_index(path, tmp_path / "idx", encoder=tiny, quiet=True)
    assert report.seen == 0 and report.total_items == 0
    with Catalog.open(tmp_path / "idx", encoder=tiny) as cat:
        assert cat.search("jeans").hits == []


def test_csv_jsonl_and_image_folder_catalogs(tmp_path, tiny):
    rows = kagl_rows(6).to_pylist()
    images = tmp_path / "photos" / "shirts"
    images.mkdir(parents=True)
    for r in rows:
        (images / f"{r['id']}.jpg").write_bytes(r["image"])
    meta = [{k: v for k, v in r.items() if k != "image"} | {"image": f"photos/shirts/{r['id']}.jpg"} for r in rows]
    meta[0]["image"] = "photos/shirts/missing.jpg"
    meta[1]["image"] = "https://example.com/a.jpg"
    (tmp_path / "cat.jsonl").write_text("\n".join(json.dumps(m) for m in meta))
    csv_lines = ["id,image,productDisplayName,baseColour"] + [
        f'{m["id"]},{m["image"]},"{m["productDisplayName"]}",{m["baseColour"]}' for m in meta
    ]
    (tmp_path / "cat.csv").write_text("\n".join(csv_lines))
    for name in ("cat.jsonl", "cat.csv"):
        report = build_index(tmp_path / name, tmp_path / f"idx-{name}", encoder=tiny, quiet=True)
        reasons = {r["id"]: r["reason"] for r in report.unreadable_images + report.not_indexed}
        assert "not found" in reasons[str(meta[0]["id"])] and "remote" in reasons[str(meta[1]["id"])]
        assert report.seen == 6
    report = build_index(tmp_path / "photos", tmp_path / "idx-folder", encoder=tiny, quiet=True)
    assert report.added == 6
    with LocalStore.open(tmp_path / "idx-folder") as store:
        assert dict(store.facets("folder")) == {"shirts": 6}
    with pytest.raises(InputError, match="no column 'sku'"):
        build_index(tmp_path / "cat.csv", tmp_path / "idx-x", encoder=tiny, id_column="sku", quiet=True)
    with pytest.raises(InputError, match="unknown catalog format"):
        (tmp_path / "cat.txt").write_text("x")
        build_index(tmp_path / "cat.txt", tmp_path / "idx-y", encoder=tiny, quiet=True)


def test_catalog_parts_cover_the_catalog_in_order(tmp_path):
    """CatalogReader.shards (what Ray's reading tasks get, pickled): parquet row groups, parts of an
    image folder, of CSV rows and of products in memory, read anywhere, give every row once, in order."""
    rows = kagl_rows(10).to_pylist()
    photo = {str(r["id"]): r["image"] for r in rows}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "cat.parquet", row_group_size=4)
    (tmp_path / "photos").mkdir()
    for r in rows:
        (tmp_path / "photos" / f"{r['id']}.jpg").write_bytes(r["image"])
    lines = [f'{r["id"]},photos/{r["id"]}.jpg,"{r["productDisplayName"]}"' for r in rows]
    (tmp_path / "cat.csv").write_text("\n".join(["id,image,productDisplayName", *lines]))
    ids = [r["id"] for r in rows]
    cases = [
        (CatalogReader.open(tmp_path / "cat.parquet"), 3, ids),  # row groups of 4, 4 and 2
        (CatalogReader.open(tmp_path / "photos"), 4, sorted(f"{i}.jpg" for i in ids)),
        (CatalogReader.open(tmp_path / "cat.csv"), 4, [str(i) for i in ids]),
        (CatalogReader.from_rows(rows), 4, ids),
    ]
    for reader, parts, want in cases:
        shards = reader.shards(3)
        assert len(shards) == parts
        items = [item for s in shards for item in pickle.loads(pickle.dumps(s)).read()]
        assert [i.id for i in items] == want
        for item in items:
            data = item.image if isinstance(item.image, bytes) else item.image.read_bytes()
            assert data == photo[str(item.id).removesuffix(".jpg")]


def test_kill_during_build_leaves_a_consistent_index_that_resumes(tmp_path):
    rows = kagl_rows(300).to_pylist()
    rows = [{**r, "id": r["id"] * 10 + k} for k in range(4) for r in rows]  # 1,200 products
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    out = tmp_path / "idx"
    cmd = [sys.executable, "-m", "vestis", "index", "build", str(path), "--out", str(out), "--batch-size", "16",
           "--model", "vestis-mini", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, committed = time.time() + 240, 0
    while time.time() < deadline and proc.poll() is None:
        try:
            con = sqlite3.connect(f"file:{out / 'index.sqlite'}?mode=ro", uri=True, timeout=5)
            committed = con.execute("SELECT count(*) FROM items").fetchone()[0]
            con.close()
        except sqlite3.Error:
            committed = 0
        if committed >= 100:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"the build ended before it could be killed: {proc.stderr.read()}"
    with LocalStore.open(out) as store:
        check = store.check()
        assert check["ok"], check
        n = store.count()
        assert n >= 100 and n % 16 == 0  # whole batches only
    resumed = build_index(path, out, quiet=True)
    assert resumed.unchanged == n and resumed.added == 1200 - n and resumed.total_items == 1200
    with Catalog.open(out) as cat:
        assert len(cat.search("jeans", k=5).hits) == 5


def test_items_in_memory_build_like_a_file(kagl_small, tmp_path, tiny):
    rows = pq.read_table(kagl_small).slice(0, 8).to_pylist()
    rows.append({"id": 99, "image": None, "productDisplayName": "Red Silk Scarf", "articleType": "Scarves"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "items.parquet")
    from_file = build_index(tmp_path / "items.parquet", tmp_path / "a", encoder=tiny, quiet=True)
    in_memory = build_index(rows, tmp_path / "b", encoder=tiny, quiet=True)
    assert (in_memory.added, in_memory.total_items) == (from_file.added, from_file.total_items) == (9, 9)
    assert in_memory.catalog == "9 items in memory" and not list(tmp_path.glob("b/*.parquet"))
    with LocalStore.open(tmp_path / "a") as a, LocalStore.open(tmp_path / "b") as b:
        ids = a.all_ids()
        ra, rb = a.get(ids, vectors=True), b.get(ids, vectors=True)
        for i in ids:
            assert ra[i].metadata == rb[i].metadata and ra[i].id_value == rb[i].id_value
            assert (ra[i].vector == rb[i].vector).all()
    again = build_index(rows, tmp_path / "b", encoder=tiny, quiet=True, mode="add")
    assert again.added == 0 and len(again.skipped_existing) == 9


def test_items_in_memory_are_checked(tmp_path, tiny):
    with pytest.raises(InputError, match="field 'size' has values of different types"):
        build_index([{"id": 1, "size": 1, "title": "a"}, {"id": 2, "size": "L", "title": "b"}], tmp_path / "i",
                    encoder=tiny, quiet=True)  # fmt: skip
    with pytest.raises(InputError, match="no items"):
        build_index([], tmp_path / "i", encoder=tiny, quiet=True)
    mixed_ids = build_index([{"id": 1, "title": "a red shoe"}, {"id": "sku-2", "title": "a blue shirt"}],
                            tmp_path / "j", encoder=tiny, quiet=True)  # fmt: skip
    assert mixed_ids.added == 2
    with LocalStore.open(tmp_path / "j") as store:
        assert sorted(store.all_ids()) == ["1", "sku-2"]
