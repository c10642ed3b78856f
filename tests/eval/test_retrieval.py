"""Retrieval pipeline end to end on a catalog whose right answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vestis.data.catalog import read_catalog
from vestis.errors import InputError
from vestis.eval.retrieval import doc_fields_from_name, document_embeddings, evaluate_retrieval, top_k


def write_gt(tmp_path, name, gt):
    path = tmp_path / name
    path.write_text(json.dumps(gt))
    return path


def test_colour_queries_find_their_products(tmp_path, colour_catalog, colour_encoder):
    gt = {
        "red": {str(100 + i): 1 for i in range(0, 12, 3)},
        "green": {str(100 + i): 1 for i in range(1, 12, 3)},
        "blue": {str(100 + i): 1 for i in range(2, 12, 3)} | {"999999": 1},  # 999999 is not in the catalog
        "purple": {"888888": 1},  # a query whose only item is missing
    }
    path = write_gt(tmp_path, "ground_truth_baseColour-image+text.json", gt)
    res = evaluate_retrieval(colour_encoder, read_catalog(colour_catalog), path)
    assert res["doc_fields"] == "image+text" and res["titled_docs"] == 5  # id 111 (titled) is unreadable
    assert res["unreadable_images"] == 1 and res["n_docs"] == 11
    assert res["dropped_ids"] == 3 and res["dropped_queries"] == 1  # 999999, 888888, and unreadable 111
    assert res["n_queries"] == 3 and res["n_queries_in_ground_truth"] == 4
    assert res["precision@1"] == 1.0 and res["recall@10"] == 1.0 and res["mrr@10"] == 1.0
    assert res["precision@10"] == pytest.approx((4 + 4 + 3) / 30)  # only 4, 4 and 3 relevant items exist


def test_ground_truth_naming_no_catalog_id_is_an_error(tmp_path, colour_catalog, colour_encoder):
    path = write_gt(tmp_path, "ground_truth_text-image.json", {"red": {"1": 1}})
    with pytest.raises(InputError, match="names no item of this catalog"):
        evaluate_retrieval(colour_encoder, read_catalog(colour_catalog), path)


def test_bad_ground_truth_files(tmp_path, colour_catalog, colour_encoder):
    catalog = read_catalog(colour_catalog)
    with pytest.raises(InputError, match="no such ground-truth file"):
        evaluate_retrieval(colour_encoder, catalog, tmp_path / "missing.json")
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        evaluate_retrieval(colour_encoder, catalog, tmp_path / "c.json")
    with pytest.raises(InputError, match="expected an object"):
        evaluate_retrieval(colour_encoder, catalog, write_gt(tmp_path, "d.json", ["red"]))
    with pytest.raises(InputError, match="no column 'sku'"):
        evaluate_retrieval(colour_encoder, catalog, write_gt(tmp_path, "e.json", {"red": {"100": 1}}), id_column="sku")


def test_doc_fields_follow_marqo_file_names():
    assert doc_fields_from_name("ground_truth_text-image.json") == ("image",)
    assert doc_fields_from_name("x/ground_truth_category2-image+text.json") == ("image", "text")


def test_multi_field_documents():
    img = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    txt = np.array([[0.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    docs = document_embeddings(img, txt, np.array([True, False]), (0.9, 0.1))
    expected = np.array([0.9, 0.1]) / np.linalg.norm([0.9, 0.1])
    assert np.allclose(docs[0], expected) and np.allclose(docs[1], [0.0, 1.0])  # no title: image alone


def test_top_k_is_exact_and_ordered():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(300, 5)).astype(np.float32)
    got = top_k(q, d, 10, chunk=3)
    want = np.argsort(-(q @ d.T), axis=1)[:, :10]
    assert np.array_equal(got, want)


def test_queries_judged_by_label_rules(tmp_path, colour_catalog, colour_encoder):
    rules = tmp_path / "queries.yaml"
    rules.write_text(
        "- {query: something red, match: {baseColour: [Red]}}\n"
        "- {query: green or blue things, match: {baseColour: [Green, Blue]}}\n"
    )
    res = evaluate_retrieval(colour_encoder, read_catalog(colour_catalog), rules)
    assert res["doc_fields"] == "image" and res["n_queries"] == 2
    per_query = res["per_query_precision@10"]
    assert per_query["something red"] == pytest.approx(4 / 10)  # all four red products come first
    # the toy encoder embeds "green or blue things" as green: its top 10 still holds 7 green/blue items
    assert per_query["green or blue things"] == pytest.approx(7 / 10)
    assert res["precision@1"] == 1.0 and res["dropped_ids"] == 1  # blue product 111 is unreadable


def test_bad_rule_files(tmp_path, colour_catalog, colour_encoder):
    catalog = read_catalog(colour_catalog)
    cases = {
        "a.yaml": ("- {query: red, match: {colour: [Red]}}\n", "matches on 'colour', which the catalog lacks"),
        "b.yaml": ("query: red\n", "expected a list"),
        "c.yaml": ("- [unclosed\n", "not valid YAML"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=message):
            evaluate_retrieval(colour_encoder, catalog, tmp_path / name)
    with pytest.raises(InputError, match="no such query file"):
        evaluate_retrieval(colour_encoder, catalog, tmp_path / "missing.yaml")
