"""``vestis search --image PHOTO --garment ...`` as a user runs it."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.test_cli import run
from vestis.data import demo_catalog_path, demo_street_photo_path
from vestis.garments import find_garments
from vestis.index.build import build_index
from vestis.models import load_encoder


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("garment-cli")
    pq.write_table(pq.read_table(demo_catalog_path()).slice(0, 40), folder / "catalog.parquet")
    build_index(folder / "catalog.parquet", folder / "index", encoder=load_encoder("vestis-tiny-random"), quiet=True)
    return folder / "index"


def search(index, *args: str) -> dict:
    proc = run("search", str(index), "--image", str(demo_street_photo_path()), "--k", "3", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_garment_main_all_and_none(index, tmp_path):
    found = find_garments(demo_street_photo_path())
    main = search(index)  # --garment main is the default with --image
    assert main["garment"]["group"] == "dress" and len(main["results"]) == 3
    every = search(index, "--garment", "all", "--html", str(tmp_path / "r.html"))
    assert [g["garment"]["box"] for g in every["garments"]] == [list(g.box) for g in found]
    assert all(len(g["results"]) == 3 for g in every["garments"])
    assert "dress at" in (tmp_path / "r.html").read_text()
    whole = search(index, "--garment", "none")
    assert list(whole) == ["results"]
    assert [r["id"] for r in whole["results"]] != [r["id"] for r in main["results"]]


def test_an_unknown_garment_is_a_clear_error(index):
    proc = run("search", str(index), "--image", str(demo_street_photo_path()), "--garment", "cape")
    assert proc.returncode != 0
    assert "unknown garment 'cape'" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
