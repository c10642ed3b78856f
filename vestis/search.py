"""Searching a catalog index: text, image or item queries, filters, hybrid, steering.

:class:`Catalog` pairs a store with the encoder it was built with. Every query
becomes one vector (weighted sum of its parts, normalised), optionally moved along
text directions ("darker", "casual->formal": the difference between the text
embeddings of the two ends, as in FashionCLIP's GradREC), then searched with the
filter applied inside the store. Hybrid search fuses the vector ranking with BM25
over titles and metadata by reciprocal rank fusion. Feedback (liked and disliked items,
:meth:`Catalog.recommend`) moves the query Rocchio-style and ``boost`` adds numeric fields
to the score (both in :mod:`vestis.recommend`). The CLI and the HTTP API both call
:meth:`Catalog.search` and :meth:`Catalog.recommend`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vestis.errors import InputError
from vestis.index.filters import Filter, combine, parse_filter
from vestis.index.store import Store, load_index_encoder
from vestis.index.stores import open_store, store_name
from vestis.models.base import Encoder, l2_normalize
from vestis.models.preprocess import ImageInput
from vestis.models.text import INVISIBLE, clean_text
from vestis.recommend import (
    ROCCHIO,
    RocchioWeights,
    boost_pool,
    boost_values,
    check_examples,
    parse_boost,
    rocchio,
    value_range,
)

#: Reciprocal rank fusion constant (Cormack et al. 2009).
RRF_K = 60
#: Weight of a ``-term`` without an explicit weight.
NEGATIVE_WEIGHT = -0.5
MAX_K = 1000
#: Facet counts are taken over this many of a query's best items by default.
FACET_DEPTH = 200
#: A field with more distinct values than this (or than half the items, when that is more) is no facet.
MAX_FACET_VALUES = 50

#: Built-in steering directions: name -> (towards, away from).
STEERS: dict[str, tuple[str, str]] = {
    "darker": ("dark", "light"),
    "lighter": ("light", "dark"),
    "more formal": ("formal", "casual"),
    "more casual": ("casual", "formal"),
    "sportier": ("sporty", "elegant"),
    "more elegant": ("elegant", "sporty"),
    "without sleeves": ("sleeveless", "long-sleeved"),
    "with sleeves": ("long-sleeved", "sleeveless"),
    "more colourful": ("colourful", "plain"),
    "plainer": ("plain", "patterned"),
    "warmer": ("winter", "summer"),
    "for summer": ("summer", "winter"),
}
STEER_TEMPLATES = ("a photo of a {} {}.", "a {} {}")
#: How far a steer moves a unit query by default; chosen on KAGL-val with vestis-mini so that
#: "darker" t-shirts stay t-shirts (benchmarks in the README).
DEFAULT_STEER_STRENGTH = {"text": 0.5, "image": 1.0}


@dataclass(frozen=True)
class QueryTerm:
    text: str
    weight: float


def parse_terms(query: str) -> list[QueryTerm]:
    """``"summer dress, -floral, beach:0.5"`` -> weighted terms.

    Terms are separated by commas; a leading ``-`` makes a term negative (weight
    -0.5 unless given); ``term:w`` sets the weight. A query without commas or
    signs is one term of weight 1. The query is read in NFKC, so the full-width comma, minus and colon
    of a Chinese keyboard ("连衣裙，－碎花") are the same syntax; invisible characters are removed
    (:func:`vestis.models.text.clean_text`).
    """
    terms = []
    for raw in unicodedata.normalize("NFKC", query).split(","):
        text = clean_text(raw)
        if not text:
            continue
        weight = 1.0
        m = re.fullmatch(r"(.*?):\s*(-?\d+(?:\.\d+)?)", text)
        if m and m.group(1).strip():
            text, weight = m.group(1).strip(), float(m.group(2))
        if text.startswith("-") and len(text) > 1:
            text = text[1:].strip()
            weight = -abs(weight) if m else NEGATIVE_WEIGHT
        terms.append(QueryTerm(text, weight))
    if not terms:
        invisible = " once invisible characters (zero-width spaces, direction marks) are removed"
        raise InputError("the query is empty" + (invisible if INVISIBLE.search(query) else ""))
    return terms


def parse_steer(spec: str) -> tuple[str, str]:
    """A built-in direction name, or ``"from->to"``."""
    key = spec.strip().lower()
    if key in STEERS:
        return STEERS[key]
    if "->" in key:
        a, b = (x.strip() for x in key.split("->", 1))
        if a and b:
            return b, a
    raise InputError(f"unknown steering {spec!r}; use one of: {', '.join(STEERS)}, or 'from->to' (e.g. casual->formal)")


@dataclass
class Hit:
    """One search result. ``score`` orders the results: the cosine to the query, or with hybrid
    search the reciprocal-rank-fusion value (about 1/60 at best); ``cosine`` is always the cosine."""

    id: object
    score: float
    metadata: dict
    cosine: float | None = None
    rank: int = 0  # 1-based, counting the skipped ``offset``
    keyword_rank: int | None = None
    vector_rank: int | None = None
    thumbnail: bytes | None = None
    image_ref: str | None = None

    def to_dict(self) -> dict:
        """The hit as strict JSON: ``id, score, cosine, rank, metadata`` (NaN metadata becomes null)."""
        return {
            "id": self.id,
            "score": round(float(self.score), 6),
            "cosine": None if self.cosine is None else round(float(self.cosine), 6),
            "rank": self.rank,
            "metadata": json_safe(self.metadata),
        }


@dataclass(frozen=True)
class Facet:
    """Value counts of one field over a set of items, most frequent first."""

    field: str
    counts: list[tuple[object, int]]
    distinct: int

    def to_dict(self, limit: int | None = None) -> dict:
        shown = self.counts if limit is None else self.counts[:limit]
        return {"field": self.field, "values": [{"value": json_safe(v), "count": n} for v, n in shown],
                "distinct": self.distinct, "truncated": len(shown) < self.distinct}  # fmt: skip


@dataclass
class SearchResults:
    hits: list[Hit]
    query: dict = field(default_factory=dict)
    facets: list[Facet] = field(default_factory=list)  # when asked for: counts over the query's best items

    def to_dict(self) -> dict:
        out = {"results": [h.to_dict() for h in self.hits], "query": json_safe(self.query)}
        if self.facets:
            out["facets"] = [f.to_dict() for f in self.facets]
        return out

    def to_pandas(self):
        """One row per hit, best first: id, score, cosine, rank, then the metadata columns (needs pandas)."""
        from vestis.eval.results import _frame

        rows = []
        for h in self.hits:
            d = h.to_dict()
            metadata = d.pop("metadata")
            rows.append({**d, **{k: v for k, v in metadata.items() if k not in d}})
        return _frame(rows)


def json_safe(value):
    """``value`` as strict JSON: NaN and infinities become null, other odd types text."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return str(value)


class Catalog:
    """An index opened for search, with the encoder that built it."""

    def __init__(self, store: Store, encoder: Encoder) -> None:
        if encoder.fingerprint != store.info.fingerprint:
            built = f"{store.info.model!r} ({store.info.settings.get('precision', 'fp32')})"
            mine = f"{encoder.name!r} ({getattr(encoder, 'precision', 'fp32')})"
            raise InputError(
                f"the index was built with {built}; searching it needs that model in that precision, not {mine}"
                + (" (same name: its weight files differ from the build's)" if built == mine else "")
            )
        self.store = store
        self.encoder = encoder
        self._direction_cache: dict[tuple, np.ndarray] = {}
        self._facet_fields: tuple[int, list[str]] | None = None
        self._ranges: dict[tuple[int, str], tuple[float, float] | None] = {}

    @classmethod
    def open(cls, location: str | Path, *, encoder: Encoder | None = None, **load_kwargs) -> Catalog:
        """The catalog at ``location``: an index directory or a ``postgresql://`` URL."""
        store = open_store(location)
        if encoder is None:
            try:
                encoder = load_index_encoder(store.info, **load_kwargs)
            except BaseException:
                store.close()
                raise
        return cls(store, encoder)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------- queries

    def direction(self, towards: str, away: str, subject: str) -> np.ndarray:
        """Unit vector from ``away`` to ``towards`` for ``subject`` (prompt-ensembled)."""
        key = (towards, away, subject)
        if key not in self._direction_cache:
            prompts = [t.format(a, subject) for a in (towards, away) for t in STEER_TEMPLATES]
            e = self.encoder.encode_texts(prompts).reshape(2, len(STEER_TEMPLATES), -1).mean(axis=1)
            d = e[0] - e[1]
            self._direction_cache[key] = d / max(float(np.linalg.norm(d)), 1e-12)
        return self._direction_cache[key]

    def query_vector(
        self,
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        item_id: str | None = None,
        steer: Sequence[str] = (),
        steer_strength: float | None = None,
        like: Sequence[object] = (),
        dislike: Sequence[object] = (),
        rocchio_weights: RocchioWeights = ROCCHIO,
    ) -> tuple[np.ndarray, dict]:
        """The normalised query vector and a description of how it was made.

        Text, photo and item are summed and normalised; liked and disliked items then move it
        (:func:`vestis.recommend.rocchio`), and steering last of all.
        """
        parts: list[np.ndarray] = []
        described: dict = {}
        subject = "garment"
        if text is not None:
            terms = parse_terms(text)
            emb = self.encoder.encode_texts([t.text for t in terms])
            parts.append(sum(t.weight * e for t, e in zip(terms, emb)))
            described["terms"] = [{"text": t.text, "weight": t.weight} for t in terms]
            positive = [t.text for t in terms if t.weight > 0]
            subject = " ".join(positive) or subject
        if image is not None:
            parts.append(self.encoder.encode_images([image])[0])
            described["image"] = True
        if item_id is not None:
            rec = self.store.get([str(item_id)], vectors=True).get(str(item_id))
            if rec is None:
                raise InputError(f"no item {item_id!r} in the index")
            parts.append(rec.vector)
            described["item"] = rec.id_value
            subject = str(rec.metadata.get("articleType") or rec.title or subject)
        liked, disliked = check_examples(like, dislike)
        if not parts and not liked:
            raise InputError(
                "give a text query, an image, an item id or a liked item"
                if not disliked
                else "give a query or at least one liked item: dislikes alone say nothing to look for"
            )
        q = None
        if parts:
            q = np.sum(parts, axis=0)
            if float(np.linalg.norm(q)) < 1e-6:
                raise InputError("the query's terms cancel out; give it a positive term")
            q = l2_normalize(q[None, :])[0]
        if liked or disliked:
            examples = self.store.get([*liked, *disliked], vectors=True)
            missing = [i for i in (*liked, *disliked) if i not in examples]
            if missing:
                raise InputError(f"no item {missing[0]!r} in the index (liked or disliked)")
            vectors = {i: r.vector for i, r in examples.items()}
            dim = self.store.info.dim
            q = rocchio(
                q,
                np.array([vectors[i] for i in liked], dtype=np.float32).reshape(-1, dim),
                np.array([vectors[i] for i in disliked], dtype=np.float32).reshape(-1, dim),
                rocchio_weights,
            )
            described["like"] = [examples[i].id_value for i in liked]
            described["dislike"] = [examples[i].id_value for i in disliked]
            described["rocchio"] = rocchio_weights.to_dict()
            if text is None and item_id is None and liked:
                first = examples[liked[0]]
                subject = str(first.metadata.get("articleType") or first.title or subject)
        if steer:
            if steer_strength is None:  # image vectors sit further from text directions than texts do
                textual = text is not None and image is None and item_id is None
                steer_strength = DEFAULT_STEER_STRENGTH["text" if textual else "image"]
            moves = []
            for spec in steer:
                towards, away = parse_steer(spec)
                q = q + steer_strength * self.direction(towards, away, subject)
                moves.append(f"{away}->{towards}")
            q = l2_normalize(q[None, :])[0]
            described["steer"] = moves
            described["steer_strength"] = steer_strength
        return q.astype(np.float32), described

    def search(
        self,
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        item_id: str | None = None,
        k: int = 10,
        offset: int = 0,
        where: str | Filter | None = None,
        selections: Mapping[str, object] | None = None,
        hybrid: float = 0.0,
        steer: Sequence[str] = (),
        steer_strength: float | None = None,
        min_score: float | None = None,
        exclude: Sequence[str] = (),
        exact: bool = False,
        thumbnails: bool = False,
        facets: Sequence[str] | bool = (),
        facet_depth: int = FACET_DEPTH,
        boost: str | Mapping[str, float] | Sequence[str] | None = None,
    ) -> SearchResults:
        """The ``k`` best items after ``offset``: see the module docstring for each option.

        ``item_id`` alone is "more like this" (:meth:`similar`); with a text or an image it joins
        the query and the item itself is left out. ``selections`` (facet choices, field -> values)
        narrow the search like ``where``. ``facets`` (field names, or ``True`` for
        :meth:`facet_fields`) adds value counts over the query's ``facet_depth`` best items; a field
        with a selection is counted as if it had none, so its other values stay in view. ``boost``
        (field -> weight, or ``"rating:0.1"``) adds numeric fields to the score
        (:mod:`vestis.recommend`).
        """
        if item_id is not None and text is None and image is None:
            return self.similar(str(item_id), k=k, offset=offset, where=where, selections=selections, hybrid=hybrid,
                                steer=steer, steer_strength=steer_strength, min_score=min_score, exclude=exclude,
                                exact=exact, thumbnails=thumbnails, facets=facets, facet_depth=facet_depth,
                                boost=boost)  # fmt: skip
        if item_id is not None:
            exclude = [*exclude, str(item_id)]
        return self._search(text, image=image, item_id=item_id, k=k, offset=offset, where=where, selections=selections,
                            hybrid=hybrid, steer=steer, steer_strength=steer_strength, min_score=min_score,
                            exclude=exclude, exact=exact, thumbnails=thumbnails, facets=facets,
                            facet_depth=facet_depth, boost=boost)  # fmt: skip

    def recommend(
        self,
        like: Sequence[object] = (),
        dislike: Sequence[object] = (),
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        rocchio_weights: RocchioWeights = ROCCHIO,
        exclude: Sequence[str] = (),
        **kwargs,
    ) -> SearchResults:
        """Items like the ``like`` ones and unlike the ``dislike`` ones, optionally for a text and/or
        photo query: the query moves Rocchio-style (:mod:`vestis.recommend`), then searches with
        every option of :meth:`search` (filters, steering, ``boost``, ...). The examples and the
        exact duplicates of liked items are never among the results."""
        liked, disliked = check_examples(like, dislike)
        hidden = [*liked, *disliked] + ([str(kwargs["item_id"])] if kwargs.get("item_id") is not None else [])
        for rec in self.store.get(liked).values():
            if rec.image_hash:
                hidden += [i for i in self.store.ids_with_image_hash(rec.image_hash) if i not in hidden]
        return self._search(text, image=image, like=liked, dislike=disliked, rocchio_weights=rocchio_weights,
                            exclude=[*map(str, exclude), *hidden], **kwargs)  # fmt: skip

    def explain(self, item_id: object, query: str, **kwargs):
        """Why ``item_id`` matches ``query``: a map over its photo and each word's contribution
        (an :class:`vestis.explain.Explanation`; options in :func:`vestis.explain.explain`)."""
        from vestis.explain import explain  # torch for the gradient map: imported when asked for

        return explain(self, item_id, query, **kwargs)

    def similar(self, item_id: str, *, k: int = 10, **kwargs) -> SearchResults:
        """Items most like ``item_id``, excluding it and its exact duplicates (same image bytes)."""
        rec = self.store.get([str(item_id)]).get(str(item_id))
        if rec is None:
            raise InputError(f"no item {item_id!r} in the index")
        exclude = [rec.id]
        if rec.image_hash:
            exclude += [i for i in self.store.ids_with_image_hash(rec.image_hash) if i != rec.id]
        kwargs.setdefault("exclude", ())
        kwargs["exclude"] = [*kwargs["exclude"], *exclude]
        results = self._search(item_id=rec.id, k=k, **kwargs)
        results.query["excluded_duplicates"] = len(exclude) - 1
        return results

    def _search(
        self,
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        item_id: str | None = None,
        k: int = 10,
        offset: int = 0,
        where: str | Filter | None = None,
        selections: Mapping[str, object] | None = None,
        hybrid: float = 0.0,
        steer: Sequence[str] = (),
        steer_strength: float | None = None,
        min_score: float | None = None,
        exclude: Sequence[str] = (),
        exact: bool = False,
        thumbnails: bool = False,
        facets: Sequence[str] | bool = (),
        facet_depth: int = FACET_DEPTH,
        boost: str | Mapping[str, float] | Sequence[str] | None = None,
        like: Sequence[object] = (),
        dislike: Sequence[object] = (),
        rocchio_weights: RocchioWeights = ROCCHIO,
    ) -> SearchResults:
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        if offset < 0:
            raise InputError(f"offset must be >= 0, got {offset}")
        if not 0.0 <= hybrid <= 1.0:
            raise InputError(f"hybrid weight must be between 0 and 1, got {hybrid}")
        if not 1 <= facet_depth <= MAX_K:
            raise InputError(f"facet_depth must be between 1 and {MAX_K}, got {facet_depth}")
        base = parse_filter(where) if isinstance(where, str) or where is None else where
        flt = combine(base, Filter.from_mapping(selections))
        boost = parse_boost(boost)
        ranges = self.boost_ranges(boost)
        if boost and hybrid > 0 and text is not None:
            raise InputError("boost adds to cosine scores: use it without hybrid (rank fusion has no cosine scale)")
        q, described = self.query_vector(text, image=image, item_id=item_id, steer=steer, steer_strength=steer_strength,
                                         like=like, dislike=dislike, rocchio_weights=rocchio_weights)  # fmt: skip
        want = k + offset
        exclude = [str(x) for x in exclude]
        if boost:
            vec = self.store.search(q, boost_pool(want), where=flt, exclude=exclude, exact=exact)
            if min_score is not None:
                vec = [x for x in vec if x[1] >= min_score]
            metas = self.store.get([i for i, _ in vec])
            boosted = [(i, c + boost_values(metas[i].metadata, boost, ranges), c, r)
                       for r, (i, c) in enumerate(vec, 1) if i in metas]  # fmt: skip
            boosted.sort(key=lambda x: -x[1])
            scored = [(i, s, c, r, None) for i, s, c, r in boosted]
        elif hybrid > 0 and text is not None:
            keyword_text = " ".join(t["text"] for t in described["terms"] if t["weight"] > 0)
            pool = max(50, 3 * want)
            vec = self.store.search(q, pool, where=flt, exclude=exclude, exact=exact)
            kw = [
                h
                for h in self.store.keyword_search(keyword_text, pool + len(exclude), where=flt)
                if h[0] not in exclude
            ]
            ranked = _rrf(vec, kw, hybrid)
            cosines = dict(vec)
            missing = [i for i, _ in ranked[:want] if i not in cosines]
            if missing:
                got = self.store.get(missing, vectors=True)
                cosines.update({i: float(r.vector @ q) for i, r in got.items()})
            vranks = {i: r for r, (i, _) in enumerate(vec, 1)}
            kranks = {i: r for r, (i, _) in enumerate(kw, 1)}
            scored = [(i, s, cosines.get(i), vranks.get(i), kranks.get(i)) for i, s in ranked]
            if min_score is not None:
                scored = [x for x in scored if x[2] is not None and x[2] >= min_score]
        else:
            vec = self.store.search(q, want, where=flt, exclude=exclude, exact=exact)
            scored = [(i, s, s, r, None) for r, (i, s) in enumerate(vec, 1)]
            if min_score is not None:
                scored = [x for x in scored if x[1] >= min_score]
        page = scored[offset:want]
        records = self.store.get([x[0] for x in page], thumbnails=thumbnails)
        hits = [
            Hit(
                id=records[i].id_value, score=s, metadata=records[i].metadata, cosine=c, rank=rank, vector_rank=vr,
                keyword_rank=kr, thumbnail=records[i].thumbnail, image_ref=records[i].image_ref,
            )
            for rank, (i, s, c, vr, kr) in enumerate(page, offset + 1)
            if i in records
        ]  # fmt: skip
        score = "cosine + boost" if boost else "rank fusion" if hybrid > 0 and text is not None else "cosine"
        described.update(k=k, offset=offset, filter=flt.text if flt else None, hybrid=hybrid, min_score=min_score,
                         score=score)  # fmt: skip
        if boost:
            described["boost"] = boost
        counted = self._facets(q, facets, base, selections, facet_depth, exclude, exact, min_score) if facets else []
        return SearchResults(hits, described, counted)

    def boost_ranges(self, boost: Mapping[str, float]) -> dict[str, tuple[float, float]]:
        """(min, max) over the catalog of each boosted field (kept per index generation); a field
        the index lacks, or one without a number, is an error naming it."""
        out = {}
        known = None
        for name in boost:
            key = (self.store.generation(), name)
            if key not in self._ranges:
                known = known if known is not None else set(self.store.fields())
                if name not in known:
                    raise InputError(f"cannot boost by {name!r}: no such field; the fields are: "
                                     f"{', '.join(sorted(known)) or 'none'}")  # fmt: skip
                values = [v for v, _ in self.store.facets(name, limit=10_000_000)]
                if len(self._ranges) >= 64:
                    self._ranges.pop(next(iter(self._ranges)))
                self._ranges[key] = value_range(values)
            if self._ranges[key] is None:
                raise InputError(f"cannot boost by {name!r}: it holds no numbers")
            out[name] = self._ranges[key]
        return out

    # ----------------------------------------------------------------------- facets

    def facet_fields(self) -> list[str]:
        """Fields that make useful filters: text fields whose values repeat, with at least 2 and at
        most ``max(50, items / 2)`` of them (not titles, ids or numbers such as image sizes)."""
        from vestis.data.catalog import TITLE_COLUMNS  # here, not at the top: pyarrow costs a CLI search start-up

        key = self.store.generation()
        if self._facet_fields is None or self._facet_fields[0] != key:
            most = max(MAX_FACET_VALUES, self.store.count() // 2)
            chosen = []
            for f in self.store.fields():
                if f in TITLE_COLUMNS or f == "id":
                    continue
                counts = self.store.facets(f, limit=most + 1)
                if not counts or not all(isinstance(v, str) for v, _ in counts):
                    continue
                if 2 <= len(counts) <= most and counts[0][1] >= 2:
                    chosen.append(f)
            self._facet_fields = (key, chosen)
        return list(self._facet_fields[1])

    def catalog_facets(self, fields: Sequence[str] | None = None, *, limit: int = 1000) -> list[Facet]:
        """Value counts over the whole catalog (default fields: :meth:`facet_fields`)."""
        out = []
        for f in self.facet_fields() if fields is None else fields:
            counts = self.store.facets(f, limit=100_000)
            out.append(Facet(f, counts[:limit], len(counts)))
        return out

    def _facets(self, q, fields, where, selections, depth, exclude, exact, min_score) -> list[Facet]:
        fields = self.facet_fields() if fields is True else list(fields)
        known = set(self.store.fields())
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise InputError(f"no field {unknown[0]!r} to count; the fields are: {', '.join(sorted(known))}")
        selections = {f: v for f, v in (selections or {}).items() if v not in (None, [], ())}
        pools: dict[str | None, list[str]] = {}

        def pool(without: str | None) -> list[str]:
            """The ids of the query's ``depth`` best items, with every selection but ``without``'s."""
            if without not in pools:
                rest = {f: v for f, v in selections.items() if f != without}
                hits = self.store.search(q, depth, where=combine(where, Filter.from_mapping(rest)), exclude=exclude,
                                         exact=exact)  # fmt: skip
                pools[without] = [i for i, s in hits if min_score is None or s >= min_score]
            return pools[without]

        by_pool: dict[str | None, list[str]] = {}
        for f in fields:
            by_pool.setdefault(f if f in selections else None, []).append(f)
        counted: dict[str, list[tuple[object, int]]] = {}
        for without, names in by_pool.items():  # counted from the snapshot's metadata columns
            counted.update(self.store.value_counts(pool(without), names))
        out = []
        for f in fields:
            ordered = sorted(counted[f], key=lambda x: (-x[1], str(x[0])))
            out.append(Facet(f, ordered, len(ordered)))
        return out


def _rrf(vector: list[tuple[str, float]], keyword: list[tuple[str, float]], keyword_weight: float):
    scores: dict[str, float] = {}
    for weight, ranking in ((1.0 - keyword_weight, vector), (keyword_weight, keyword)):
        for rank, (item, _) in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank)
    return sorted(scores.items(), key=lambda x: -x[1])


def catalogs_encoder(directories: Sequence[str | Path], model: str | None = None, **load_kwargs) -> Encoder:
    """The one encoder that can search every index in ``directories``: ``model`` (default: the first
    index's), in the precision the indexes were built in. An index built with another model is an
    error that names it and the fix."""
    from vestis.errors import VestisError
    from vestis.models import load_encoder

    infos = []
    for path in directories:
        with open_store(path) as store:
            infos.append((path, store.info))
    if not infos:
        return load_encoder(model, **load_kwargs)
    first = infos[0][1]
    if model is None or model == first.model:
        encoder = load_index_encoder(first, **load_kwargs)
    else:
        encoder = load_encoder(model, **load_kwargs)
    wanted = {info.fingerprint for _, info in infos}
    if encoder.fingerprint not in wanted:
        # built with this model in another precision/runtime (fp32 where the default is bf16):
        # vectors only compare within one, so load the one they were built with
        for precision in ("fp32", "bf16", "int8"):
            try:
                other = load_encoder(model or first.model, **{**load_kwargs, "precision": precision})
            except VestisError:
                continue
            if other.fingerprint in wanted:
                encoder = other
                break
    for path, info in infos:
        if info.fingerprint != encoder.fingerprint:
            raise InputError(
                f"catalog {store_name(path)} ({path}) was built with model {info.model!r}, not "
                f"{encoder.name!r}: give --model {info.model} (catalogs searched together need one model)"
            )
    return encoder
