"""``vestis export site`` as a user runs it: the installed CLI in a subprocess."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from tests.test_cli import run
from vestis.data import demo_catalog_path
from vestis.search import Catalog

from .conftest import need_runtime


def test_export_site_writes_a_complete_folder(site_index, tmp_path, mini):
    need_runtime()
    out = tmp_path / "site"
    proc = run("export", "site", str(site_index), "--out", str(out), "--text-precision", "fp32", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["items"] == 300 and report["dim"] == mini.dim and report["text_precision"] == "fp32"
    manifest = json.loads((out / "vestis-site.json").read_text())
    n, dim = manifest["vectors"]["shape"]
    assert (n, dim) == (300, mini.dim) and manifest["vectors"]["lossless"] is True
    for name in ("index.html", "site.js", "wordpiece.js", "style.css", "vocab.txt", "chars.json", "items.json",
                 "model/text_model.onnx", *(f"vendor/onnxruntime-web/{f}" for f in manifest["runtime"]["files"]),
                 "vendor/onnxruntime-web/LICENSE"):  # fmt: skip
        assert (out / name).is_file(), name
    assert "MIT License" in (out / "vendor/onnxruntime-web/LICENSE").read_text()
    # the vectors are the index's own, in the items' order
    vectors = np.fromfile(out / "vectors.f16", dtype="<f2").reshape(n, dim)
    items = json.loads((out / "items.json").read_text())
    with Catalog.open(site_index, encoder=mini) as catalog:
        records = catalog.store.get([str(i) for i in items["ids"]], vectors=True, thumbnails=True)
    for i, item_id in enumerate(items["ids"]):
        rec = records[str(item_id)]
        assert np.array_equal(vectors[i].astype(np.float32), rec.vector)
        ext = items["thumbs"]["values"][items["thumbs"]["codes"][i]]
        assert (out / "thumbs" / str(i // 1000) / f"{i}.{ext}").read_bytes() == rec.thumbnail
    kinds = items["fields"]["articleType"]
    demo = {r["id"]: r["articleType"] for r in pq.read_table(demo_catalog_path()).to_pylist()}
    assert [kinds["values"][c] if c >= 0 else "" for c in kinds["codes"]] == [demo[i] for i in items["ids"]]
    assert -1 in kinds["codes"]  # an empty value is missing, never a value
    assert report["sizes_mb"]["first_load"] < report["sizes_mb"]["total"]

    # an earlier site is replaced; the table output names the sizes
    again = run("export", "site", str(site_index), "--out", str(out), "--text-precision", "fp32", "--quiet")
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())  # rich wraps long lines
    assert "300 items, text tower fp32 (asked for)" in said and "MB before the first result" in said


def test_bad_index_and_out_are_named(site_index, tmp_path):
    need_runtime()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.md").write_text("mine")
    cases = [
        (["export", "site", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s1")], "nowhere"),
        (["export", "site", str(site_index), "--out", str(a_file)], "is a file"),
        (["export", "site", str(site_index), "--out", str(busy)], "holds other files"),
        (["export", "site", str(site_index), "--out", str(tmp_path / "no" / "such" / "s")], "does not exist"),
        (["export", "site", str(site_index)], "--out"),
        (["export", "site", str(site_index), "--out", str(tmp_path / "s2"), "--text-precision", "fp8"], "fp8"),
    ]
    for args, needle in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert (busy / "notes.md").read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["notes.md"]
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()


def test_an_index_of_another_model_is_refused(tmp_path):
    from vestis.index.build import build_index
    from vestis.models import load_encoder

    need_runtime()
    table = pq.read_table(demo_catalog_path()).slice(0, 8)
    pq.write_table(table, tmp_path / "c.parquet")
    build_index(tmp_path / "c.parquet", tmp_path / "tiny", encoder=load_encoder("vestis-tiny-random"), quiet=True)
    proc = run("export", "site", str(tmp_path / "tiny"), "--out", str(tmp_path / "site"))
    assert proc.returncode == 2 and "vestis-mini's text tower" in proc.stderr, proc.stderr
    assert not (tmp_path / "site").exists()
