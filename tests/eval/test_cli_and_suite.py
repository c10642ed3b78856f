"""`vestis eval ...`: the JSON contract scripts rely on, the suite, and the embedding cache."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from vestis.data import demo_catalog_path
from vestis.errors import InputError
from vestis.eval.suite import run_suite


def vestis(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vestis", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def demo_gt(tmp_path):
    rows = pq.read_table(demo_catalog_path()).to_pylist()
    gt = {}
    for r in rows:
        if r["masterCategory"]:  # empty means unknown, never a query
            gt.setdefault(r["masterCategory"], {})[str(r["id"])] = 1
    path = tmp_path / "ground_truth_category1-image+text.json"
    path.write_text(json.dumps(gt))
    return path


def test_eval_retrieval_json_contract(demo_gt, tmp_path):
    env = {**__import__("os").environ, "VESTIS_CACHE_DIR": str(tmp_path / "cache")}
    proc = vestis("eval", "retrieval", "--data", str(demo_catalog_path()), "--image-column", "image",
                  "--ground-truth", str(demo_gt), "--json", "--model", "vestis-tiny-random", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("recall@1", "recall@10", "precision@1", "precision@10", "mrr@10", "ndcg@10", "avg_recall",
                "avg_precision", "n_queries", "n_docs"):  # fmt: skip
        assert key in res
    assert (
        res["n_docs"] == pq.read_metadata(demo_catalog_path()).num_rows
        and res["model"] == "vestis-tiny-random"
        and res["doc_fields"] == "image+text"
    )


def test_eval_classify_json_contract(tmp_path):
    proc = vestis("eval", "classify", "--data", str(demo_catalog_path()), "--image-column", "image",
                  "--label-column", "masterCategory", "--json", "--no-cache", "--model", "vestis-tiny-random",
                  "--confusion", str(tmp_path / "cm.png"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    labelled = [x for x in pq.read_table(demo_catalog_path()).column("masterCategory").to_pylist() if x]
    assert {"weighted_f1", "accuracy", "n"} <= set(res) and res["n"] == len(labelled)
    assert (tmp_path / "cm.png").is_file()


def test_eval_errors_are_one_line(tmp_path):
    proc = vestis("eval", "classify", "--data", str(demo_catalog_path()), "--label-column", "nope")
    assert proc.returncode == 2 and "no column 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_suite_writes_results_leaderboard_and_reuses_cache(tmp_path, demo_gt, monkeypatch):
    import vestis.embed

    monkeypatch.setenv("VESTIS_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "suite.yaml"
    config.write_text(
        f"""
name: demo
output: {tmp_path / "results"}
leaderboard: {tmp_path / "docs" / "leaderboard.md"}
models: [vestis-tiny-random]
tasks:
  - {{kind: retrieval, name: demo categories, data: {demo_catalog_path()}, ground_truth: {demo_gt},
      published: kagl/category-to-product}}
  - {{kind: classify, name: demo articleType, data: {demo_catalog_path()}, label_column: articleType}}
"""
    )
    summary = run_suite(config, quiet=True)
    assert len(summary["results"]) == 2
    assert len(list((tmp_path / "results").glob("*.json"))) == 2
    board = (tmp_path / "docs" / "leaderboard.md").read_text()
    assert "measured here" in board and "not measured here" in board and "Marqo-FashionCLIP" in board
    measured_part, published_part = board.split("## Published", 1)
    assert "Marqo-FashionCLIP" not in measured_part  # published figures never mixed with measured ones
    assert (tmp_path / "docs" / "leaderboard" / "retrieval-avgp.png").is_file()

    calls = []
    original = vestis.embed.embed_images
    monkeypatch.setattr(vestis.embed, "embed_images", lambda *a, **k: calls.append(1) or original(*a, **k))
    run_suite(config, quiet=True)
    assert calls == []  # second run: every image embedding came from the cache


def test_suite_models_may_name_their_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("VESTIS_CACHE_DIR", str(tmp_path / "cache"))
    task = f"{{kind: classify, name: demo, data: {demo_catalog_path()}, label_column: masterCategory, limit: 20}}"
    config = tmp_path / "suite.yaml"
    config.write_text(f"output: {tmp_path}\nmodels: [{{model: vestis-mini, precision: fp32}}]\ntasks: [{task}]\n")
    (record,) = run_suite(config, quiet=True)["results"]
    assert record["model"] == "vestis-mini" and "fp32" in record["runtime"]
    config.write_text(f"output: {tmp_path}\nmodels: [{{model: vestis-mini, speed: fast}}]\ntasks: [{task}]\n")
    with pytest.raises(InputError, match="a model is a name or"):
        run_suite(config, quiet=True)
