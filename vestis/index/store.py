"""The ``Store`` protocol: what any catalog backend (local directory, PostgreSQL) provides.

The search layer (:mod:`vestis.search`) and the builder (:mod:`vestis.index.build`)
speak only this protocol; ``tests/index/test_store_contract.py`` is the contract
suite any backend must pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vestis.index.filters import Filter

#: Build reports a store keeps, the latest (every ``index build|add|update`` and API write makes one).
KEEP_REPORTS = 100


@dataclass
class Record:
    """One catalog item as stored: its id, embeddings, metadata and a small thumbnail."""

    id: str  # the item id as text (the key)
    vector: np.ndarray  # the searchable document vector (unit norm)
    metadata: dict = field(default_factory=dict)  # catalog columns, JSON-able
    content_hash: str = ""  # digest of what the vectors were computed from
    image_hash: str | None = None  # digest of the image bytes (exact duplicates share it)
    title: str = ""  # keyword-searchable title
    body: str = ""  # other keyword-searchable text (metadata values)
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    image_error: str | None = None  # why the image could not be read (the text vector stands in)
    image_ref: str | None = None  # where the image lives, when it is a file
    thumbnail: bytes | None = None
    id_value: object = None  # the id in its catalog type (int ids stay ints in results)


@dataclass(frozen=True)
class StoreInfo:
    """What an index was built with; a store refuses vectors from another model."""

    model: str
    fingerprint: str
    dim: int
    settings: dict = field(default_factory=dict)  # field weights, ANN config, columns, ...


class Store(Protocol):
    info: StoreInfo

    def count(self) -> int: ...

    def fields(self) -> list[str]:
        """The metadata field names present in the store (for filters and facets)."""
        ...

    def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace ``records`` in one atomic step."""
        ...

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Remove items atomically; returns the ids that existed."""
        ...

    def get(self, ids: Sequence[str], *, vectors: bool = False, thumbnails: bool = False) -> dict[str, Record]: ...

    def content_hashes(self) -> dict[str, str]: ...

    def ids_with_image_hash(self, image_hash: str) -> list[str]: ...

    def search(
        self, vector: np.ndarray, k: int, *, where: Filter | None = None, exclude: Sequence[str] = (), exact=False
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest items by inner product, best first, among those matching ``where``."""
        ...

    def keyword_search(self, text: str, k: int, *, where: Filter | None = None) -> list[tuple[str, float]]:
        """BM25 ranking of the items' title and metadata text, best first."""
        ...

    def facets(self, field: str, *, limit: int = 50) -> list[tuple[object, int]]: ...

    def value_counts(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, list[tuple[object, int]]]:
        """Per field, how often each value (not NULL or ``''``) occurs among the items ``ids``."""
        ...

    def sample_ids(self, n: int) -> list[str]: ...

    def save_report(self, report: dict) -> None:
        """Keep a build's report (:class:`vestis.index.build.BuildReport` as a dict; the latest
        :data:`KEEP_REPORTS`)."""
        ...

    def reports(self, limit: int = 10) -> list[dict]:
        """The latest build reports, newest first."""
        ...

    def close(self) -> None: ...


def load_index_encoder(info: StoreInfo, **load_kwargs):
    """The encoder an index was built with: its model, in the precision it was built in.

    Vectors of one model in another precision (bf16 vs fp32) differ slightly, and the
    model fingerprint tells them apart, so the build's precision is recorded and reused.
    """
    from vestis.models import load_encoder

    precision = info.settings.get("precision")
    if precision and "precision" not in load_kwargs:
        load_kwargs["precision"] = precision
    encoder = load_encoder(info.model, **load_kwargs)
    if encoder.fingerprint != info.fingerprint and "runtime" not in load_kwargs:
        # Built before a faster verified runtime became the default (vestis-mini's ONNX text
        # tower): the torch encoder may be the one that made the vectors.
        from vestis.errors import VestisError

        try:
            torch_encoder = load_encoder(info.model, runtime="torch", **load_kwargs)
        except VestisError:
            return encoder
        if torch_encoder.fingerprint == info.fingerprint:
            return torch_encoder
    return encoder
