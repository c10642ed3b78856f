"""``import vestis``: the documented user API, and the README's Python example run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vestis

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The Python block after the ``readme-example`` marker in README.md."""
    text = README.read_text()
    match = re.search(r"<!-- readme-example:[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its marked Python example"
    return match.group(1)


def test_the_readme_example_searches_a_catalog(tmp_path, catalog_rows):
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 6  # import + five lines
    rows = [dict(r, usage="Casual") for r in catalog_rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "products.parquet")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5 and all(float(line.split()[0]) > 0 for line in lines), proc.stdout
    titled = {str(r["id"]): (r["productDisplayName"] or "").strip() for r in rows}
    for line in lines:  # score, id, title (some products have none)
        score, item, *title = line.split(maxsplit=2)
        assert " ".join(title) == titled[item], line


def test_every_documented_name_is_there_and_documented():
    for name in vestis.__all__:
        value = getattr(vestis, name)
        if name != "__version__":
            assert (value.__doc__ or "").strip(), f"vestis.{name} has no docstring"
        assert f"{name}" in vestis.__doc__ or name.startswith("__") or name.endswith("Error"), name


def test_import_vestis_is_light():
    heavy = ("torch", "sqlglot", "matplotlib", "transformers")
    code = f"import sys, vestis; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_tag_catalog_takes_taxonomy_names_and_returns_a_typed_report(tmp_path, catalog_rows):
    pq.write_table(pa.Table.from_pylist(catalog_rows), tmp_path / "c.parquet")
    enc = vestis.load_encoder("vestis-tiny-random")
    report = vestis.tag_catalog(tmp_path / "c.parquet", "season,usage", tmp_path / "t.parquet", encoder=enc, k=2)
    assert isinstance(report, vestis.TagReport) and report.tagged == report.items == len(catalog_rows)
    assert set(report.to_dict()["taxonomies"]) == {"season", "usage"}
    assert report.table().num_rows == len(catalog_rows)
    with pytest.raises(vestis.InputError, match="taxonomy names"):
        vestis.tag_catalog(tmp_path / "c.parquet", [3], tmp_path / "u.parquet", encoder=enc)


def test_classify_is_callable_and_the_module_stays_importable(image_files, tmp_path):
    from vestis.classify import DEFAULT_TEMPLATES, label_embeddings  # noqa: F401

    result = vestis.classify([image_files[0], str(tmp_path / "gone.jpg")], "a,b,c", model="vestis-tiny-random", k=2)
    assert isinstance(result, vestis.Classification)
    data = result.to_dict()
    assert len(data["results"]) == 1 and len(data["results"][0]["labels"]["label"]) == 2
    assert data["failed"][0]["image"].endswith("gone.jpg")


def test_eval_results_are_typed_and_keep_their_keys():
    images = [bytes(pq.read_table(vestis_demo()).column("image")[i].as_py()) for i in range(12)]
    truth = pq.read_table(vestis_demo()).column("masterCategory").to_pylist()[:12]
    res = vestis.evaluate_zero_shot(vestis.load_encoder("vestis-tiny-random"), images, truth)
    assert isinstance(res, vestis.ZeroShotResult)
    assert res.weighted_f1 == res["weighted_f1"] == res.to_dict()["weighted_f1"] and res.n == 12
    assert set(res.per_class) == set(res.labels)


def vestis_demo() -> Path:
    from vestis.data import demo_catalog_path

    return demo_catalog_path()


def test_results_become_dataframes(tmp_path, catalog_rows, image_files):
    pytest.importorskip("pandas")
    pq.write_table(pa.Table.from_pylist(catalog_rows), tmp_path / "c.parquet")
    enc = vestis.load_encoder("vestis-tiny-random")
    vestis.build_index(tmp_path / "c.parquet", tmp_path / "idx", encoder=enc, quiet=True)
    with vestis.Catalog.open(tmp_path / "idx", encoder=enc) as cat:
        results = cat.search("shirt", k=4)
    frame = results.to_pandas()
    assert list(frame["id"]) == [h.id for h in results.hits] and "score" in frame.columns
    tags = vestis.tag_catalog(tmp_path / "c.parquet", "season", tmp_path / "t.parquet", encoder=enc, k=2).to_pandas()
    assert len(tags) == len(catalog_rows) and {"id", "season", "season_score"} <= set(tags.columns)
    labels = vestis.classify(image_files[:2], "a,b,c", encoder=enc, k=2).to_pandas()
    assert len(labels) == 2 * 2 and set(labels.columns) == {"image", "taxonomy", "rank", "label", "score"}
    images = [r["image"] for r in catalog_rows]
    zero_shot = vestis.evaluate_zero_shot(enc, images, [r["masterCategory"] for r in catalog_rows]).to_pandas()
    assert set(zero_shot.columns) == {"label", "precision", "recall", "f1", "support"}
    assert zero_shot["support"].sum() == len(catalog_rows)


def test_retrieval_result_reads_by_metric_and_k():
    pytest.importorskip("pandas")
    res = vestis.RetrievalResult({"recall@1": 0.25, "recall@10": 0.5, "mrr@10": 0.3, "n_queries": 4, "n_docs": 9})
    assert res.at("recall", 10) == 0.5 == res["recall@10"] and res.n_queries == 4
    assert res.metrics == {"recall@1": 0.25, "recall@10": 0.5, "mrr@10": 0.3}
    frame = res.to_pandas()
    assert sorted(zip(frame["metric"], frame["k"], frame["value"])) == [
        ("mrr", 10, 0.3), ("recall", 1, 0.25), ("recall", 10, 0.5)
    ]  # fmt: skip
