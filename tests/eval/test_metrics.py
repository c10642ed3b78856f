"""Metric code against the reference implementations (trec_eval via pytrec_eval, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval
from sklearn.metrics import accuracy_score, classification_report, f1_score

from vestis.eval.metrics import classification_metrics, per_query_retrieval, retrieval_metrics


def random_case(seed: int, n_queries: int = 40, n_docs: int = 300):
    """Queries with 1 to 60 relevant documents (graded 1-3) and a ranked run of 10."""
    rng = np.random.default_rng(seed)
    qrels, run, scored = {}, {}, {}
    for q in range(n_queries):
        n_rel = int(rng.integers(1, 60))
        rel_docs = rng.choice(n_docs, size=n_rel, replace=False)
        qrels[f"q{q}"] = {f"d{d}": int(rng.integers(1, 4)) for d in rel_docs}
        # a run that finds some relevant documents, ranked by distinct scores
        pool = np.concatenate([rel_docs[: rng.integers(0, n_rel + 1)], rng.choice(n_docs, 20)])
        pool = list(dict.fromkeys(int(d) for d in pool))
        rng.shuffle(pool)
        ranked = pool[:10]
        run[f"q{q}"] = [f"d{d}" for d in ranked]
        scored[f"q{q}"] = {f"d{d}": float(100 - i) for i, d in enumerate(ranked)}
    return qrels, run, scored


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_metrics_agree_with_trec_eval(seed):
    qrels, run, scored = random_case(seed)
    measures = {"recall.1,10", "P.1,10", "ndcg_cut.1,10", "map_cut.1,10", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(scored)
    ours = per_query_retrieval(qrels, run, ks=(1, 10))
    for q in qrels:
        for k in (1, 10):
            assert ours[q][f"recall@{k}"] == pytest.approx(ref[q][f"recall_{k}"], abs=1e-6)
            assert ours[q][f"precision@{k}"] == pytest.approx(ref[q][f"P_{k}"], abs=1e-6)
            assert ours[q][f"ndcg@{k}"] == pytest.approx(ref[q][f"ndcg_cut_{k}"], abs=1e-6)
            assert ours[q][f"map@{k}"] == pytest.approx(ref[q][f"map_cut_{k}"], abs=1e-6)
        # run has 10 documents, so trec_eval's reciprocal rank equals MRR@10
        assert ours[q]["mrr@10"] == pytest.approx(ref[q]["recip_rank"], abs=1e-6)
    means = retrieval_metrics(qrels, run)
    assert means["recall@10"] == pytest.approx(np.mean([ref[q]["recall_10"] for q in qrels]), abs=1e-6)
    assert means["avg_recall"] == pytest.approx((means["recall@1"] + means["recall@10"]) / 2)
    assert means["n_queries"] == len(qrels)


def test_hand_made_run_with_known_answers():
    qrels = {"red dress": {"a": 1, "b": 1, "c": 1, "d": 1}, "boots": {"x": 1}}
    run = {"red dress": ["z", "a", "y", "b"] + [f"n{i}" for i in range(6)], "boots": ["q"] * 0 + ["x"]}
    m = per_query_retrieval(qrels, run)
    assert m["red dress"]["recall@1"] == 0 and m["red dress"]["recall@10"] == 0.5  # 2 of 4, not a hit rate
    assert m["red dress"]["precision@10"] == 0.2 and m["red dress"]["mrr@10"] == 0.5
    assert m["red dress"]["map@10"] == pytest.approx((1 / 2 + 2 / 4) / 4)
    assert m["red dress"]["hit@10"] == 1.0
    assert m["boots"]["recall@1"] == 1 and m["boots"]["precision@10"] == 0.1
    # a relevant document first found at rank 11 counts nothing
    late = per_query_retrieval({"q": {"r": 1}}, {"q": [f"n{i}" for i in range(10)] + ["r"]})["q"]
    assert late["mrr@10"] == 0 and late["recall@10"] == 0


def test_queries_without_relevant_documents_are_not_scored():
    means = retrieval_metrics({"a": {"x": 1}, "b": {"y": 0}}, {"a": ["x"], "b": ["y"]})
    assert means["n_queries"] == 1 and means["recall@1"] == 1.0
    with pytest.raises(ValueError):
        retrieval_metrics({"b": {"y": 0}}, {})


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = [f"c{i}" for i in range(7)]
    y_true = rng.integers(0, 6, 500)  # class 6 has no examples
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 7, 500))
    y_pred[y_pred == 5] = 4  # class 5 is never predicted
    ours = classification_metrics(y_true, y_pred, labels)
    all_classes = list(range(7))
    assert ours["weighted_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=all_classes, average="weighted", zero_division=0), abs=1e-6
    )
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    report = classification_report(y_true, y_pred, labels=all_classes, output_dict=True, zero_division=0)
    for i, name in enumerate(labels):
        assert ours["per_class"][name]["f1"] == pytest.approx(report[str(i)]["f1-score"], abs=1e-6)
        assert ours["per_class"][name]["precision"] == pytest.approx(report[str(i)]["precision"], abs=1e-6)
        assert ours["per_class"][name]["recall"] == pytest.approx(report[str(i)]["recall"], abs=1e-6)
    present = sorted(set(y_true))
    assert ours["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0), abs=1e-6
    )
