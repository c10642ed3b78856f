"""Evaluation metrics, as the papers compute them.

Retrieval follows Marqo's evaluation (BEIR's ``EvaluateRetrieval``, i.e.
trec_eval through pytrec_eval, plus Marqo's own MRR):

* ``recall@k``  = |relevant ∩ top-k| / |relevant|   (TREC recall, not a hit rate)
* ``precision@k`` = |relevant ∩ top-k| / k
* ``ndcg@k``    trec_eval's ``ndcg_cut``: linear gain = relevance, log2 discount
* ``map@k``     trec_eval's ``map_cut``: precision at each relevant hit in the
  top k, summed and divided by the number of relevant documents (all of them)
* ``mrr@10``    1 / rank of the first relevant document within the top 10, else 0
* ``avg_recall`` = mean(R@1, R@10) and ``avg_precision`` = mean(P@1, P@10),
  the summaries of Marqo's leaderboard.

``hit@k`` (any relevant document in the top k) is what Chinese-CLIP calls R@k;
it is reported under its own name so the two are never confused.

Classification follows FashionCLIP: support-weighted macro F1 over the classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]


def per_query_retrieval(qrels: Qrels, run: Run, ks: Sequence[int] = (1, 10)) -> dict[str, dict[str, float]]:
    """Metrics for each query of ``qrels`` that has at least one relevant document.

    ``run`` maps a query to its ranked document ids, best first.
    """
    ks = sorted(set(int(k) for k in ks))
    mrr_cut = 10
    out: dict[str, dict[str, float]] = {}
    for query, judged in qrels.items():
        relevant = {doc for doc, rel in judged.items() if rel > 0}
        if not relevant:
            continue
        ranked = list(run.get(query, ()))
        hits = [doc in relevant for doc in ranked]
        row: dict[str, float] = {}
        for k in ks:
            top = hits[:k]
            n_hit = sum(top)
            row[f"recall@{k}"] = n_hit / len(relevant)
            row[f"precision@{k}"] = n_hit / k
            row[f"hit@{k}"] = float(n_hit > 0)
            ap, seen = 0.0, 0
            for rank, is_hit in enumerate(top, start=1):
                if is_hit:
                    seen += 1
                    ap += seen / rank
            row[f"map@{k}"] = ap / len(relevant)
            dcg = sum(judged.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1))
            ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:k]
            idcg = sum(rel / math.log2(rank + 1) for rank, rel in enumerate(ideal, start=1))
            row[f"ndcg@{k}"] = dcg / idcg if idcg > 0 else 0.0
        first = next((rank for rank, is_hit in enumerate(hits[:mrr_cut], start=1) if is_hit), None)
        row[f"mrr@{mrr_cut}"] = 1.0 / first if first else 0.0
        out[query] = row
    return out


def retrieval_metrics(qrels: Qrels, run: Run, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Mean of :func:`per_query_retrieval` over the queries, plus Marqo's summaries."""
    rows = per_query_retrieval(qrels, run, ks)
    if not rows:
        raise ValueError("no query has a relevant document")
    keys = next(iter(rows.values())).keys()
    means = {key: float(np.mean([r[key] for r in rows.values()])) for key in keys}
    if "recall@1" in means and "recall@10" in means:
        means["avg_recall"] = (means["recall@1"] + means["recall@10"]) / 2
        means["avg_precision"] = (means["precision@1"] + means["precision@10"]) / 2
    means["n_queries"] = len(rows)
    return means


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy, macro and support-weighted F1, per-class precision/recall/F1, confusion matrix.

    A class never predicted has precision 0; a class with no examples has
    weight 0 in the weighted mean (as scikit-learn's ``classification_report``).
    """
    n = len(labels)
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-d and of equal length")
    if t.size == 0:
        raise ValueError("nothing to score: no examples")
    confusion = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    present = support > 0
    return {
        "n": int(t.size),
        "accuracy": float(tp.sum() / t.size),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "macro_f1": float(f1[present].mean()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": confusion.tolist(),
    }
