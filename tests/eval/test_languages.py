"""Chinese beside English in ``vestis eval``: classes named through the term table, composed caption
queries with the same items and relevance in both languages (issue #21)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vestis.data.terms import load_terms
from vestis.embed import EmbeddingCache
from vestis.errors import InputError
from vestis.eval.datasets import LabelledImages, in_language, labelled_images
from vestis.eval.retrieval import caption_ground_truth
from vestis.eval.suite import expand_tasks, run_task


def test_every_class_gets_a_distinct_chinese_name():
    terms = load_terms("zh")
    # Scarves and Mufflers are both 围巾 first: each then takes a name the other lacks
    names = terms.labels("articleType", ["Scarves", "Mufflers", "Dresses"])
    assert names == {"Scarves": "丝巾", "Mufflers": "围脖", "Dresses": "连衣裙"}
    assert terms.labels("articleType", ["Scarves", "Dresses"])["Scarves"] == "围巾"  # no clash, the caption name
    every = terms.labels("articleType", list(terms.table["articleType"]))
    assert len(set(every.values())) == len(every)
    with pytest.raises(InputError, match="no name for articleType"):
        terms.labels("articleType", ["Dresses", "Hoverboards"])


def test_labels_in_chinese_keep_the_items_and_classes():
    data = LabelledImages(["a", "b", "c", "d"], ["Dresses", None, "Jeans", "Scarves"], "toy", field="articleType")
    zh, labels, names = in_language(data, "zh", ["Dresses", "Jeans", "Mufflers"])
    assert zh.labels == ["连衣裙", None, "牛仔裤", "丝巾"] and zh.images == data.images
    assert labels == ["连衣裙", "牛仔裤", "围脖"] and names["Mufflers"] == "围脖"
    assert in_language(data, "en", None) == (data, None, {})
    with pytest.raises(InputError, match="no field of the zh term table"):
        in_language(LabelledImages(["a"], ["Trouser"], "Fashion-MNIST"), "zh")


def test_chinese_zero_shot_names_the_colours_in_chinese(colour_catalog, colour_encoder, tmp_path):
    """The toy encoder knows 红/绿/蓝: every readable image is classified right only if the classes
    reach it in Chinese with the Chinese template, and the truth is mapped the same way."""
    task = {"kind": "classify", "name": "colour (zh)", "data": str(colour_catalog), "label_column": "baseColour",
            "language": "zh"}  # fmt: skip
    (task,) = expand_tasks([task])
    result = run_task(colour_encoder, task, EmbeddingCache(tmp_path / "cache"), tmp_path, quiet=True)
    assert result["language"] == "zh" and sorted(result["labels"]) == ["红色", "绿色", "蓝色"]
    assert result["templates"] == ["一张{}的照片"] and result["label_names"]["Red"] == "红色"
    assert result["accuracy"] == 1.0 and result["n"] == 11  # the unreadable image is counted apart
    english = run_task(colour_encoder, {**task, "language": "en"}, EmbeddingCache(tmp_path / "cache"), tmp_path, True)
    assert english["accuracy"] == 1.0 and english["labels"] == ["Blue", "Green", "Red"]


def _catalog(tmp_path, rows):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return pq.read_table(path)


def test_caption_queries_have_the_same_items_in_both_languages(tmp_path):
    rows = [
        {"id": 1, "baseColour": "Black", "articleType": "Tshirts"},
        {"id": 2, "baseColour": "Black", "articleType": "Tshirts"},
        {"id": 3, "baseColour": "Red", "articleType": "Dresses"},
        {"id": 4, "baseColour": "", "articleType": "Dresses"},  # no colour: in no query
        {"id": 5, "baseColour": "Navy Blue", "articleType": "Scarves"},
        {"id": 6, "baseColour": "Navy Blue", "articleType": "Mufflers"},
    ]
    catalog = _catalog(tmp_path, rows)
    en = caption_ground_truth(catalog, ["baseColour", "articleType"], "en")
    zh = caption_ground_truth(catalog, ["baseColour", "articleType"], "zh")
    assert en["black t-shirt"] == {"1": 1, "2": 1} and en["red dress"] == {"3": 1} and len(en) == 4
    assert zh == {"黑色T恤": {"1": 1, "2": 1}, "红色连衣裙": {"3": 1}, "藏青色丝巾": {"5": 1}, "藏青色围脖": {"6": 1}}
    assert sorted(map(sorted, en.values())) == sorted(map(sorted, zh.values()))  # the same items, the same relevance
    with pytest.raises(InputError, match="no column 'colour'"):
        caption_ground_truth(catalog, ["colour"], "zh")


def test_chinese_caption_retrieval_scores_as_english_does_for_a_bilingual_model(colour_catalog, colour_encoder,
                                                                                 tmp_path):  # fmt: skip
    tasks = expand_tasks([{"kind": "retrieval", "name": f"colour ({lang})", "data": str(colour_catalog),
                           "captions": ["baseColour"], "language": lang} for lang in ("en", "zh")])  # fmt: skip
    en, zh = (run_task(colour_encoder, t, EmbeddingCache(tmp_path / "cache"), tmp_path, True) for t in tasks)
    assert zh["language"] == "zh" and zh["captions"] == ["baseColour"]
    assert en["n_queries"] == zh["n_queries"] == 3 and en["precision@1"] == zh["precision@1"] == 1.0
    assert zh["recall@10"] == en["recall@10"] > 0.9


def test_chinese_query_file_runs_and_language_errors_are_named(colour_catalog, colour_encoder, tmp_path):
    queries = tmp_path / "zh.yaml"
    queries.write_text("- query: 红色的衣服\n  match: {baseColour: [Red]}\n"
                       "- query: 蓝色\n  match: {baseColour: [Blue]}\n")  # fmt: skip
    (task,) = expand_tasks([{"kind": "retrieval", "name": "zh file", "data": str(colour_catalog),
                             "ground_truth": str(queries), "language": "zh"}])  # fmt: skip
    result = run_task(colour_encoder, task, EmbeddingCache(tmp_path / "cache"), tmp_path, True)
    assert result["precision@1"] == 1.0 and result["language"] == "zh"
    marqo = tmp_path / "ground_truth_text-image.json"
    marqo.write_text(json.dumps({"red shirt": {"100": 1}}))
    bad = [
        ({"kind": "retrieval", "name": "t", "data": "x", "ground_truth": str(marqo), "language": "zh"}, "query file"),
        ({"kind": "retrieval", "name": "t", "data": "x", "language": "zh"}, "ground_truth or captions"),
        ({"kind": "classify", "name": "t", "data": "x", "label_column": "a", "language": "fr"}, "language must be"),
    ]
    for spec, message in bad:
        with pytest.raises(InputError, match=message):
            expand_tasks([spec])


def test_parquet_labels_know_their_field(colour_catalog):
    assert labelled_images(data=colour_catalog, label_column="baseColour").field == "baseColour"


def test_the_bilingual_suite_config_pairs_every_chinese_task_with_its_english_twin(monkeypatch, tmp_path):
    import yaml

    monkeypatch.setenv("VESTIS_DATA_DIR", str(tmp_path))
    config = Path(__file__).resolve().parents[2] / "configs" / "eval-zh.yaml"
    tasks = expand_tasks(yaml.safe_load(config.read_text())["tasks"])
    chinese = [t for t in tasks if t.get("language") == "zh"]
    assert len(chinese) == 4
    for task in chinese:
        (twin,) = [t for t in tasks if t["name"] == task["name"].removesuffix(" (zh)")]
        same = {k: v for k, v in task.items() if k not in ("name", "language", "ground_truth")}
        assert same == {k: v for k, v in twin.items() if k not in ("name", "language", "ground_truth")}


def test_eval_classify_takes_a_language_through_the_cli(tmp_path):
    import subprocess
    import sys

    from vestis.data import demo_catalog_path

    args = ["eval", "classify", "--data", str(demo_catalog_path()), "--label-column", "masterCategory",
            "--model", "vestis-tiny-random", "--json", "--no-cache", "-q"]  # fmt: skip
    cmd = [sys.executable, "-m", "vestis", *args]
    proc = subprocess.run([*cmd, "--language", "zh"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["language"] == "zh" and "服装" in res["labels"] and res["label_names"]["Apparel"] == "服装"
    assert res["templates"] == ["一张{}的照片"]
    proc = subprocess.run([*cmd, "--language", "fr"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2 and "label language must be one of" in proc.stderr and "Traceback" not in proc.stderr
