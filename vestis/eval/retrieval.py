"""Marqo's retrieval protocol: queries -> ranked catalog items -> recall/precision/MRR/nDCG/mAP.

Tasks as Marqo's evaluation defines them for KAGL (``configs/KAGL.json`` of
marqo-ai/marqo-FashionCLIP): text-to-image searches image embeddings with
product titles; the category, colour, season and usage tasks search
multi-field documents, normalise(0.9 * image + 0.1 * title) -- the image alone
where an item has no title.  Queries are the ground truth's raw strings
(optionally behind a prefix), retrieval keeps the top 10 by cosine similarity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from vestis.embed import EmbeddingCache, cached_image_embeddings, cached_text_embeddings
from vestis.errors import InputError
from vestis.eval.metrics import per_query_retrieval, retrieval_metrics
from vestis.eval.results import RetrievalResult
from vestis.models.base import Encoder, l2_normalize

DEFAULT_WEIGHTS = (0.9, 0.1)
#: Marqo's KAGL tasks: (task name, ground-truth file).
MARQO_KAGL_TASKS = (
    ("text-to-image", "ground_truth_text-image.json"),
    ("category-to-product", "ground_truth_category1-image+text.json"),
    ("sub-category-to-product", "ground_truth_category2-image+text.json"),
    ("fine-category-to-product", "ground_truth_category3-image+text.json"),
    ("color-to-product", "ground_truth_baseColour-image+text.json"),
    ("season-to-product", "ground_truth_season-image+text.json"),
    ("usage-to-product", "ground_truth_usage-image+text.json"),
)
_GT_NAME = re.compile(r"ground_truth_(?P<query>.+)-(?P<docs>[a-z+]+)\.json$")


def doc_fields_from_name(path: str | Path) -> tuple[str, ...]:
    """``ground_truth_category2-image+text.json`` -> ("image", "text") (Marqo's naming)."""
    m = _GT_NAME.search(Path(path).name)
    return tuple(m.group("docs").split("+")) if m else ("image",)


def load_ground_truth(path: str | Path) -> dict[str, dict[str, int]]:
    """Marqo's ``{query: {item_id: relevance}}`` JSON, validated."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such ground-truth file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{p}: expected an object mapping each query to {{item_id: relevance}}")
    try:
        return {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in data.items()}
    except (TypeError, ValueError):
        raise InputError(f"{p}: relevance values must be integers") from None


def rules_ground_truth(path: str | Path, catalog: pa.Table, id_column: str = "id") -> dict[str, dict[str, int]]:
    """Ground truth for queries with no judged items, from rules over the catalog's label columns.

    The YAML file lists ``{query: ..., match: {column: [values]}}``; an item is
    relevant when any named column holds one of its values.  Written down before
    measuring, it turns free-form queries ("something to carry my laptop") into
    a retrieval task scored like Marqo's.
    """
    p = Path(path)
    try:
        rules = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such query file") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(rules, list) or not all(isinstance(r, dict) and r.get("query") and r.get("match") for r in rules):
        raise InputError(f"{p}: expected a list of {{query: text, match: {{column: [values]}}}}")
    ids = [str(x) for x in catalog.column(id_column).to_pylist()]
    qrels: dict[str, dict[str, int]] = {}
    for rule in rules:
        relevant = np.zeros(len(ids), dtype=bool)
        for column, values in rule["match"].items():
            if column not in catalog.column_names:
                raise InputError(f"{p}: query {rule['query']!r} matches on {column!r}, which the catalog lacks")
            wanted = {str(v) for v in (values if isinstance(values, list) else [values])}
            relevant |= np.array([str(v) in wanted for v in catalog.column(column).to_pylist()])
        qrels[str(rule["query"])] = {ids[i]: 1 for i in np.flatnonzero(relevant)}
    return qrels


def caption_ground_truth(
    catalog: pa.Table, fields: Sequence[str], lang: str = "en", id_column: str = "id"
) -> dict[str, dict[str, int]]:
    """Queries composed from the catalog's values, each relevant to every item that has all of them.

    One query per combination of ``fields`` values present ("black t-shirt" for baseColour and
    articleType; in Chinese the term table's names joined as shop titles join them, "黑色T恤"),
    so that two languages are measured on the same items with the same relevance: only the
    words differ. Items missing a value give no query; combinations that read the same share one.
    """
    from vestis.data.terms import load_terms, natural_name

    fields = list(fields)
    if not fields:
        raise InputError("captions needs at least one catalog field")
    for column in fields:
        if column not in catalog.column_names:
            raise InputError(f"captions: the catalog has no column {column!r}")
    columns = {f: [str(v).strip() if v is not None else "" for v in catalog.column(f).to_pylist()] for f in fields}
    terms = None if lang == "en" else load_terms(lang)
    names: dict[str, dict[str, str]] = {}
    for f in fields:
        values = sorted({v for v in columns[f] if v})
        if terms is not None:
            names[f] = terms.labels(f, values)
        else:
            names[f] = {v: natural_name(v) if f == "articleType" else v.lower() for v in values}
    joiner = " " if terms is None else ""
    ids = [str(x) for x in catalog.column(id_column).to_pylist()]
    qrels: dict[str, dict[str, int]] = {}
    for n, item in enumerate(ids):
        values = [columns[f][n] for f in fields]
        if all(values):
            query = joiner.join(names[f][v] for f, v in zip(fields, values))
            qrels.setdefault(query, {})[item] = 1
    return qrels


def restrict_to_corpus(qrels: dict[str, dict[str, int]], corpus: set[str]) -> tuple[dict[str, dict[str, int]], dict]:
    """Drop judged ids that are not in the corpus, and queries left with no relevant id."""
    kept: dict[str, dict[str, int]] = {}
    dropped_ids = set()
    for query, docs in qrels.items():
        inside = {d: r for d, r in docs.items() if d in corpus}
        dropped_ids.update(d for d in docs if d not in corpus)
        if any(r > 0 for r in inside.values()):
            kept[query] = inside
    return kept, {"dropped_ids": len(dropped_ids), "dropped_queries": len(qrels) - len(kept)}


def top_k(queries: np.ndarray, docs: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Indices of the ``k`` most similar documents per query, best first (exact search)."""
    k = min(k, docs.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start : start + chunk] @ docs.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def document_embeddings(
    image_vectors: np.ndarray, title_vectors: np.ndarray | None, has_title: np.ndarray, weights: Sequence[float]
) -> np.ndarray:
    """Marqo's multi-field documents: normalise(w_img * image + w_txt * title); image alone without a title."""
    if title_vectors is None:
        return image_vectors
    w_img, w_txt = weights
    mixed = w_img * image_vectors + w_txt * title_vectors
    return np.where(has_title[:, None], l2_normalize(mixed), image_vectors)


def evaluate_retrieval(
    encoder: Encoder,
    catalog: pa.Table,
    ground_truth: str | Path | Mapping[str, Mapping[str, int]],
    *,
    id_column: str = "id",
    image_column: str = "image",
    title_column: str = "productDisplayName",
    doc_fields: Sequence[str] | None = None,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    query_prefix: str = "",
    ks: Sequence[int] = (1, 10),
    cache: EmbeddingCache | None = None,
    quiet: bool = False,
) -> RetrievalResult:
    """Run one retrieval task on ``catalog`` and score it against ``ground_truth``.

    ``ground_truth``: Marqo's JSON, or a YAML file of queries with label rules
    (:func:`rules_ground_truth`), whose results also list each query's P@10, or the
    ``{query: {item_id: relevance}}`` mapping itself (:func:`caption_ground_truth`).
    """
    given = isinstance(ground_truth, Mapping)
    fields = tuple(doc_fields) if doc_fields else ("image",) if given else doc_fields_from_name(ground_truth)
    if not set(fields) <= {"image", "text"} or "image" not in fields:
        raise InputError(f"document fields must be image or image+text, got {'+'.join(fields)}")
    if len(fields) == 2 and len(weights) != 2:
        raise InputError("multi-field documents need two weights (image, text)")
    for col in (id_column, image_column) + ((title_column,) if "text" in fields else ()):
        if col not in catalog.column_names:
            raise InputError(f"catalog has no column {col!r}; it has {', '.join(catalog.column_names)}")
    by_rules = not given and Path(ground_truth).suffix in (".yaml", ".yml")
    if given:
        qrels_all = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in ground_truth.items()}
    elif by_rules:
        qrels_all = rules_ground_truth(ground_truth, catalog, id_column)
    else:
        qrels_all = load_ground_truth(ground_truth)
    ids = [str(x) for x in catalog.column(id_column).to_pylist()]
    if len(set(ids)) != len(ids):
        raise InputError(f"column {id_column!r} has duplicate ids")
    images = catalog.column(image_column).to_pylist()
    embedded = cached_image_embeddings(encoder, images, cache, quiet=quiet)
    ok = embedded.ok
    corpus_ids = [i for i, good in zip(ids, ok) if good]
    image_vectors = embedded.vectors[ok]
    title_vectors, has_title = None, np.zeros(len(corpus_ids), dtype=bool)
    if "text" in fields:
        titles = [t or "" for t, good in zip(catalog.column(title_column).to_pylist(), ok) if good]
        has_title = np.array([bool(t.strip()) for t in titles])
        title_vectors = np.zeros_like(image_vectors)
        titled = [t for t in titles if t.strip()]
        title_vectors[has_title] = cached_text_embeddings(encoder, titled, cache, quiet=quiet)
    docs = document_embeddings(image_vectors, title_vectors, has_title, weights)

    qrels, dropped = restrict_to_corpus(qrels_all, set(corpus_ids))
    if not qrels:
        source = "the queries" if given else ground_truth
        raise InputError(f"{source}: the ground truth names no item of this catalog (by {id_column!r})")
    queries = list(qrels)
    query_vectors = cached_text_embeddings(encoder, [query_prefix + q for q in queries], cache, quiet=quiet)
    ranked = top_k(query_vectors, docs, max(ks))
    run = {q: [corpus_ids[j] for j in row] for q, row in zip(queries, ranked)}
    metrics = retrieval_metrics(qrels, run, ks)
    if by_rules:
        per_query = per_query_retrieval(qrels, run, ks)
        metrics[f"per_query_precision@{max(ks)}"] = {q: r[f"precision@{max(ks)}"] for q, r in per_query.items()}
    return RetrievalResult(
        {
            **metrics,
            "n_docs": len(corpus_ids),
            "n_queries_in_ground_truth": len(qrels_all),
            **dropped,
            "unreadable_images": len(embedded.failed),
            "unreadable_examples": [f"{ids[i]}: {why}" for i, why in embedded.failed[:5]],
            "doc_fields": "+".join(fields),
            "weights": list(weights) if len(fields) == 2 else [1.0],
            "titled_docs": int(has_title.sum()),
            "query_prefix": query_prefix,
        }
    )
