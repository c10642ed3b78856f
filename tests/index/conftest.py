"""Catalog fixtures: real KAGL rows (validation split when the shared data is here, else the
bundled demo catalog) and indexes built from them."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vestis.data import demo_catalog_path, kagl_parquets
from vestis.data.split import select_split
from vestis.index.build import build_index
from vestis.models import load_encoder


def kagl_rows(n: int) -> pa.Table:
    files = kagl_parquets()
    if files:
        return select_split(pq.read_table(files[0]), "val").slice(0, n)
    return pq.read_table(demo_catalog_path()).slice(0, n)


@pytest.fixture(scope="session")
def kagl_small(tmp_path_factory):
    """60 KAGL products as a parquet file with the KAGL columns as-is."""
    path = tmp_path_factory.mktemp("catalog") / "kagl-60.parquet"
    pq.write_table(kagl_rows(60), path)
    return path


@pytest.fixture(scope="session")
def mini():
    return load_encoder("vestis-mini")


@pytest.fixture(scope="session")
def tiny():
    return load_encoder("vestis-tiny-random")


@pytest.fixture(scope="session")
def kagl_index(tmp_path_factory, mini):
    """An index of up to 2,000 KAGL validation products built with the bundled model."""
    table = kagl_rows(2000)
    folder = tmp_path_factory.mktemp("kagl-index")
    pq.write_table(table, folder / "catalog.parquet")
    build_index(folder / "catalog.parquet", folder / "index", encoder=mini, quiet=True)
    return folder / "index", table


def jpeg(colour=(200, 30, 30), size=(60, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()
