"""Values a careless catalog holds: NaN and infinities, ids that are not ids. The build never fails
on them: NaN/inf metadata is stored as null, a row with a bad id is refused and counted."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_cli import run
from vestis.data.catalog import normalize_id
from vestis.errors import InputError
from vestis.index.build import build_index
from vestis.index.local import LocalStore
from vestis.search import Catalog

from .test_cli_catalog import last_json


def test_nan_and_inf_metadata_is_stored_as_null(tmp_path, tiny):
    rows = [{"id": i, "image": None, "title": f"a red shirt {i}", "price": p}
            for i, p in enumerate([9.5, math.nan, math.inf, -math.inf, 12.0])]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    report = build_index(tmp_path / "c.parquet", tmp_path / "idx", encoder=tiny, quiet=True)
    assert report.added == 5 and report.total_items == 5
    with LocalStore.open(tmp_path / "idx") as store:
        got = store.get([str(i) for i in range(5)])
        assert [got[str(i)].metadata["price"] for i in range(5)] == [9.5, None, None, None, 12.0]
    with Catalog.open(tmp_path / "idx", encoder=tiny) as cat:
        assert sorted(h.id for h in cat.search("shirt", k=10, where="price > 10").hits) == [4]
        assert sorted(h.id for h in cat.search("shirt", k=10, where="price IS NULL").hits) == [1, 2, 3]
    # the same rows in memory (what the HTTP API hands over)
    memory = build_index(rows, tmp_path / "mem", encoder=tiny, quiet=True)
    assert memory.added == 5


def test_rows_with_bad_ids_are_refused_and_counted(tmp_path, tiny):
    rows = [{"id": 1.0, "title": "a"}, {"id": math.nan, "title": "b"}, {"id": math.inf, "title": "c"},
            {"id": 2.5, "title": "d"}, {"id": 3.0, "title": "e blue shirt"}]  # fmt: skip
    rows = [{**r, "image": None} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "f.parquet")
    report = build_index(tmp_path / "f.parquet", tmp_path / "idx", encoder=tiny, quiet=True)
    assert report.total_items == 2 and report.added == 2  # 1.0 and 3.0: whole numbers from a float column
    assert len(report.bad_ids) == 3 and all(b["reason"] for b in report.bad_ids)
    with LocalStore.open(tmp_path / "idx") as store:
        assert sorted(store.all_ids()) == ["1", "3"]
        assert store.get(["1"])["1"].id_value == 1
    lists = [{"id": [1, 2], "image": None, "title": "a"}, {"id": [3], "image": None, "title": "b"}]
    pq.write_table(pa.Table.from_pylist(lists), tmp_path / "l.parquet")
    report = build_index(tmp_path / "l.parquet", tmp_path / "idx2", encoder=tiny, quiet=True)
    assert report.total_items == 0 and len(report.bad_ids) == 2
    structs = [{"id": {"a": 1}, "image": None, "title": "a"}, {"id": {"a": 2}, "image": None, "title": "b"}]
    pq.write_table(pa.Table.from_pylist(structs), tmp_path / "s.parquet")
    report = build_index(tmp_path / "s.parquet", tmp_path / "idx3", encoder=tiny, quiet=True)
    assert report.total_items == 0 and len(report.bad_ids) == 2
    memory = build_index([{"id": True, "title": "a"}, {"id": 2**64, "title": "b"}, {"id": 7, "title": "c"}],
                         tmp_path / "mem", encoder=tiny, quiet=True)  # fmt: skip
    assert memory.total_items == 1 and len(memory.bad_ids) == 2


@pytest.mark.parametrize(
    ("value", "want"),
    [(7, 7), (-(2**63), -(2**63)), (2**63 - 1, 2**63 - 1), ("sku-1", "sku-1"), ("²", "²"), ("١٢", "١٢"),
     ("007", "007"), (12.0, 12)],
)  # fmt: skip
def test_what_an_id_is(value, want):
    got = normalize_id(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("value", [True, False, 2**63, -(2**63) - 1, 1.5, math.nan, math.inf, [1], {"a": 1}, b"x",
                                   "", "  ", "a\x00b", "\ud800", "x" * 1025])  # fmt: skip
def test_what_an_id_is_not(value):
    with pytest.raises(InputError):
        normalize_id(value)


def test_numeric_id_filters_compare_as_numbers_in_the_cli(tmp_path, tiny):
    ids = [5, 40, 300, 2000, 10000, 25000]
    rows = [{"id": i, "image": None, "title": f"a cotton shirt number {i}"} for i in ids]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    build_index(tmp_path / "c.parquet", tmp_path / "idx", model="vestis-mini", quiet=True)
    for where, want in (("id > 350", [2000, 10000, 25000]), ("id < 2000", [5, 40, 300]),
                        ("id BETWEEN 40 AND 2000", [40, 300, 2000]), ("id = 300", [300]),
                        ("id IN (5, 25000)", [5, 25000]), ("id != 5 AND id <= 300", [40, 300])):  # fmt: skip
        out = last_json(run("search", str(tmp_path / "idx"), "shirt", "--k", "10", "--where", where, "--json"))
        assert sorted(r["id"] for r in out["results"]) == want, where


def test_text_ids_still_compare_as_text(tmp_path, tiny):
    rows = [{"id": s, "title": f"a linen dress {s}"} for s in ("a-1", "b-2", "c-3")]
    build_index(rows, tmp_path / "idx", encoder=tiny, quiet=True)
    with Catalog.open(tmp_path / "idx", encoder=tiny) as cat:
        assert sorted(h.id for h in cat.search("dress", k=10, where="id > 'a-9'").hits) == ["b-2", "c-3"]
        assert [h.id for h in cat.search("dress", k=10, where="id = 'b-2'").hits] == ["b-2"]


def test_a_folder_of_parquet_and_images_says_what_it_indexes(tmp_path, tiny):
    from .conftest import jpeg

    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "a.jpg").write_bytes(jpeg())
    (tmp_path / "shop" / "b.jpg").write_bytes(jpeg((20, 20, 200)))
    rows = [{"id": 1, "image": "a.jpg", "title": "a red shirt"}, {"id": 2, "image": None, "title": "blue jeans"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "shop" / "rows.parquet")
    report = build_index(tmp_path / "shop", tmp_path / "idx", encoder=tiny, quiet=True)
    assert report.total_items == 2
    assert len(report.notes) == 1 and "2 image file(s)" in report.notes[0] and "parquet rows (2)" in report.notes[0]
    plain = build_index(tmp_path / "shop" / "rows.parquet", tmp_path / "idx2", encoder=tiny, quiet=True)
    assert plain.notes == []
