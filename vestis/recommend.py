"""Feedback that steers a search: Rocchio-style recommend and numeric score modifiers.

Recommend (Rocchio, 1971): the query vector moves towards the items a user liked and
away from those they disliked::

    q' = query * q + like * mean(liked vectors) - dislike * mean(disliked vectors)

then normalised; ``q`` is the unit vector of the text/photo query (left out when there is
none). The default weights, :data:`ROCCHIO`, were chosen on KAGL's validation split
(``benchmarks/recommend.py``): one like and one dislike lift the share of the top 20 that
match the wanted article type and colour without losing the query. Liked and disliked items
are never among the results (as in Qdrant's and Marqo's recommend).

Score modifiers (Marqo's ``score_modifiers``, the "add to score" kind): ``boost={"rating": 0.1}``
adds ``0.1 * v`` to each result's cosine, where ``v`` is the item's ``rating`` scaled to
0..1 over the catalog (min-max); an item without a numeric value (missing, null, NaN) gets
0. A negative weight pushes high values down. The boosted score re-ranks the query's
best :func:`boost_pool` items by cosine.

Everything here is a pure function of vectors and metadata; :class:`vestis.search.Catalog`
applies them (``Catalog.recommend``, ``Catalog.search(boost=...)``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from vestis.errors import InputError

#: Most liked or disliked items one request may name.
MAX_EXAMPLES = 100
#: Most fields one request may boost by.
MAX_BOOSTS = 8


@dataclass(frozen=True)
class RocchioWeights:
    """Weights of the query, the liked items' mean and the disliked items' mean."""

    query: float = 1.0
    like: float = 0.75
    dislike: float = 0.25

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 10.0):
                raise InputError(f"Rocchio weight {name!r} must be a number from 0 to 10, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


#: The default weights (the classic 1 / 0.75 with a stronger push away, see the module docstring).
ROCCHIO = RocchioWeights()


def check_examples(like: Iterable[object], dislike: Iterable[object]) -> tuple[list[str], list[str]]:
    """Liked and disliked ids as text, de-duplicated; an id in both lists is an error."""
    liked = list(dict.fromkeys(str(i) for i in like))
    disliked = list(dict.fromkeys(str(i) for i in dislike))
    if len(liked) > MAX_EXAMPLES or len(disliked) > MAX_EXAMPLES:
        raise InputError(f"at most {MAX_EXAMPLES} liked and {MAX_EXAMPLES} disliked items per request")
    both = sorted(set(liked) & set(disliked))
    if both:
        raise InputError(f"item {both[0]!r} is both liked and disliked")
    return liked, disliked


def rocchio(
    query: np.ndarray | None,
    liked: np.ndarray,
    disliked: np.ndarray,
    weights: RocchioWeights = ROCCHIO,
) -> np.ndarray:
    """The moved query, unit length: see the module docstring. ``query`` is a unit vector or None;
    ``liked`` and ``disliked`` are (n, dim) item vectors (n may be 0)."""
    dim = liked.shape[1] if query is None else query.shape[0]
    q = np.zeros(dim, dtype=np.float64)
    if query is not None:
        q += weights.query * np.asarray(query, dtype=np.float64)
    if len(liked):
        q += weights.like * np.asarray(liked, dtype=np.float64).mean(axis=0)
    if len(disliked):
        q -= weights.dislike * np.asarray(disliked, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(q))
    if query is None and not len(liked):
        raise InputError("give a query or at least one liked item: dislikes alone say nothing to look for")
    if norm < 1e-6:
        raise InputError("the likes and dislikes cancel out; like another item or lower the dislike weight")
    return (q / norm).astype(np.float32)


# ------------------------------------------------------------------------------ boost


def parse_boost(spec: str | Mapping[str, float] | Iterable[str] | None) -> dict[str, float]:
    """``"rating:0.1"``, ``["rating:0.1", "price:-0.05"]`` or ``{"rating": 0.1}`` -> field -> weight."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in [spec] if isinstance(spec, str) else list(spec):
            for piece in str(part).split(","):
                if not piece.strip():
                    continue
                m = re.fullmatch(r"\s*(.+?)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*", piece)
                if not m:
                    raise InputError(f"boost {piece.strip()!r}: write FIELD:WEIGHT, e.g. rating:0.1")
                items.append((m.group(1), float(m.group(2))))
    out: dict[str, float] = {}
    for name, weight in items:
        if not isinstance(name, str) or not name.strip():
            raise InputError("a boost needs a field name")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise InputError(f"boost weight of {name!r} must be a finite number, got {weight!r}")
        if not -10.0 <= weight <= 10.0:
            raise InputError(f"boost weight of {name!r} must be between -10 and 10, got {weight}")
        out[name.strip()] = float(weight)
    if len(out) > MAX_BOOSTS:
        raise InputError(f"at most {MAX_BOOSTS} boosted fields per request")
    return out


def numeric(value: object) -> float | None:
    """A metadata value as a finite number, or None (text, booleans, null, NaN and infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def value_range(values: Iterable[object]) -> tuple[float, float] | None:
    """(min, max) of the finite numbers among ``values``; None when there is none."""
    nums = [v for v in map(numeric, values) if v is not None]
    return (min(nums), max(nums)) if nums else None


def boost_values(metadata: Mapping[str, object], boost: Mapping[str, float],
                 ranges: Mapping[str, tuple[float, float]]) -> float:  # fmt: skip
    """What ``boost`` adds to one item's score: sum of weight x the value scaled to 0..1 by its
    catalog range (a field whose values are all equal scales to 1); missing or NaN values add 0."""
    total = 0.0
    for name, weight in boost.items():
        v = numeric(metadata.get(name))
        if v is None:
            continue
        lo, hi = ranges[name]
        total += weight * ((v - lo) / (hi - lo) if hi > lo else 1.0)
    return total


def boost_pool(want: int) -> int:
    """How many of the best items by cosine a boosted search re-ranks."""
    return min(max(200, 4 * want), 5000)
