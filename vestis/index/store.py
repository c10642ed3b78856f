"""The ``Store`` protocol: what any catalog backend (local directory, PostgreSQL) provides.

The search layer (:mod:`vestis.search`) and the builder (:mod:`vestis.index.build`)
speak only this protocol; ``tests/index/test_store_contract.py`` is the contract
suite any backend must pass. :class:`BaseStore` is what the two backends share: the
writer's nesting and its errors, the ``info`` values, the queries that read the same in
both SQL dialects, and the checks of what callers give.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vestis.errors import ConflictError, InputError, VestisError
from vestis.index.filters import Filter
from vestis.index.vectors import AnnConfig

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

    def set_ann(self, **changes) -> AnnConfig:
        """Change the ANN settings (those not given stay); a graph built with others is built again."""
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
        """Keep a build's report (:class:`vestis.index.steps.BuildReport` as a dict; the latest
        :data:`KEEP_REPORTS`)."""
        ...

    def reports(self, limit: int = 10) -> list[dict]:
        """The latest build reports, newest first."""
        ...

    def warm(self) -> None:
        """Load now what the first search would load (a server calls it before it says it is ready)."""
        ...

    def close(self) -> None: ...


class BaseStore:
    """What every store does the same way, over the few things each does its own way: ``_rows`` (a query's
    rows), ``_info_value``/``_set_info`` (the ``info`` table), ``_lock_for_writing``/``_unlock_after_writing``
    (the write lock across processes), ``_transaction`` (one write, moving the generation on), ``_drop_graph``,
    ``location`` (for messages) and ``close``."""

    #: The driver's parameter placeholder, and the column that orders items as they were added.
    _PARAM = "?"
    _ORDER = "row"

    def __init__(self, info: StoreInfo, *, writable: bool) -> None:
        self.info = info
        self.writable = writable
        self._lock = threading.RLock()  # shared by a server's threads: the writer's state, an embedded connection
        self._write_depth = 0

    # ----------------------------------------------------------------- each store's own

    @property
    def location(self) -> str:
        raise NotImplementedError

    def warm(self) -> None:
        """Nothing to load by default (PostgreSQL keeps its index in the server)."""

    def close(self) -> None:
        raise NotImplementedError

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        raise NotImplementedError

    def _info_value(self, key: str, default=None):
        raise NotImplementedError

    def _set_info(self, key: str, value) -> None:
        """Inside :meth:`writer`."""
        raise NotImplementedError

    def _lock_for_writing(self) -> bool:
        """Take the write lock that other processes see; False when another holds it."""
        raise NotImplementedError

    def _unlock_after_writing(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------ shared

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ann_config(self) -> AnnConfig:
        return AnnConfig.from_dict(self.info.settings.get("ann"))

    def generation(self) -> int:
        return int(self._info_value("generation", 0))

    def fields(self) -> list[str]:
        return list(self._info_value("fields", []))

    def count(self) -> int:
        return self._rows("SELECT count(*) FROM items")[0][0]

    def content_hashes(self) -> dict[str, str]:
        return dict(self._rows("SELECT id, content_hash FROM items"))

    def ids_with_image_hash(self, image_hash: str) -> list[str]:
        return [r[0] for r in self._rows(f"SELECT id FROM items WHERE image_hash = {self._PARAM}", [image_hash])]

    def sample_ids(self, n: int) -> list[str]:
        return [r[0] for r in self._rows(f"SELECT id FROM items ORDER BY {self._ORDER} LIMIT {self._PARAM}", [n])]

    def all_ids(self) -> list[str]:
        return [r[0] for r in self._rows(f"SELECT id FROM items ORDER BY {self._ORDER}")]

    def update_settings(self, **settings) -> None:
        """Change the catalog's settings (``weights``, ``ann``...; those not given stay): a write, which
        moves the generation on, so that what is derived from the catalog is derived again."""
        with self.writer(), self._transaction():
            merged = {**self.info.settings, **settings}
            self._set_info("settings", merged)
            self.info = dataclasses.replace(self.info, settings=merged)

    def set_ann(self, **changes) -> AnnConfig:
        """Change the ANN settings (:class:`AnnConfig`'s fields; those not given stay) and return them:
        ``ef_search`` applies to the next search, ``threshold`` now (a graph is built once the catalog
        has that many items); a graph built with another ``m``, ``ef_construction`` or ``quantizer`` is
        built again now. Other processes with the catalog open read the new settings when they open it."""
        with self.writer():
            old = self.ann_config
            new = old.changed(**changes)
            if new != old:
                self.update_settings(ann=new.to_dict())
                if new.graph != old.graph:
                    self._drop_graph()
                self.refresh()
        return new

    def _drop_graph(self) -> None:
        """Inside :meth:`writer`: drop the ANN graph, so that :meth:`refresh` builds it with the settings
        now in force."""
        raise NotImplementedError

    def _transaction(self):
        """A context manager: one write inside :meth:`writer`, committed with the generation moved on."""
        raise NotImplementedError

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the catalog's write lock: one writer at a time, across processes (and machines, for a
        database). Nests: a build holds it across its batches, each batch's write takes it again."""
        if not self.writable:
            raise VestisError(f"{self.location} was opened read-only")
        with self._lock:
            if self._write_depth == 0 and not self._lock_for_writing():
                raise ConflictError(f"{self.location} is being written by another process; try again later")
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if self._write_depth == 0:
                    self._unlock_after_writing()

    def search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        where: Filter | None = None,
        exclude: Sequence[str] = (),
        exact: bool = False,
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest items by inner product, best first, among those matching ``where`` and not in
        ``exclude``; ``exact``: a full scan even where an ANN index exists."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.info.dim,):
            raise InputError(f"query vector has dim {vector.shape[0]}; the index holds dim {self.info.dim}")
        if k <= 0:
            return []
        return self._search(vector, k, where, exclude, exact)

    def _search(self, vector: np.ndarray, k: int, where, exclude: Sequence[str], exact: bool):
        raise NotImplementedError

    # ------------------------------------------------------------ checks of what callers give

    def _check_vectors(self, records: Sequence[Record]) -> None:
        dim = self.info.dim
        for r in records:
            if r.vector.shape != (dim,):
                raise InputError(f"item {r.id!r}: vector shape {r.vector.shape}, the index holds dim {dim}")

    def _check_field(self, name: str) -> None:
        if name not in self.fields():
            raise InputError(f"no field {name!r}; the fields are: {', '.join(self.fields()) or 'none'}")


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
