"""The vector engine of the local store: exact search, and faiss HNSW above a size threshold.

A :class:`VectorSet` is an immutable snapshot: ``rows`` (ascending store row ids,
one per position), their unit vectors, a ``live`` mask (rows deleted since the
snapshot was built stay in the HNSW graph but are masked out), and optionally an
HNSW graph over the same positions. Filters and exclusions are passed *into* the
search as a set of allowed positions (faiss ``IDSelectorBitmap``); when that set
is small, an exact scan over it is both faster and exact, so that is used instead.

Exact scans over the whole snapshot (no filter, or one that allows at least
:data:`HALF_SCAN_SHARE` of it, the others skipped by a selector) read the vectors as float16
through faiss' scalar quantizer when every vector is a float16 value (format-2 stores hold them
so; a check on first use decides): the same scores (to float32 rounding) from half the memory
traffic. At 40k x 256 (``benchmarks/search.py --parts scan``, ``results/bench/search_scan.md``):
1.0 ms against numpy's float32 product's 3.2 ms (1.8x less CPU with the machine busy, 6.9x
with OpenBLAS's two threads spinning on an idle one), and 1.0 ms against 2.8 ms for numpy
gathering a quarter of the rows. Fewer allowed rows are gathered and scored in numpy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Default size from which an HNSW graph is built (below it, exact search is fast enough).
DEFAULT_ANN_THRESHOLD = 50_000
#: A filtered search scans exactly when at most this many positions are allowed.
EXACT_SUBSET_MAX = 20_000
#: Whole-snapshot exact scans of at least this many float16-valued vectors run on faiss' fp16 scan.
HALF_SCAN_MIN = 4096
#: A filtered exact scan allowing at least this share of the snapshot runs on that fp16 scan too, which skips
#: the rows not allowed (faiss' selector), rather than gathering the allowed rows for numpy: gathering costs
#: about 0.5 us a row, the selector's pass a fixed 4 us or so per 1,000 items; they cross at 2-4% of 40k, 200k
#: and 1M x 256 (at 25% of 40k: 1.8 ms instead of 5.3; ``benchmarks/search.py --parts subset``).
HALF_SCAN_SHARE = 0.03


#: What an HNSW graph may hold its vectors as.
QUANTIZERS = ("float32", "float16", "int8")
#: Each setting's allowed range: pgvector's limits (m 2-100, ef_construction 4-1000, ef_search 1-1000),
#: which the embedded store keeps too, so that a catalog's settings mean the same in either.
ANN_LIMITS = {"threshold": (0, 2**62), "m": (2, 100), "ef_construction": (4, 1000), "ef_search": (1, 1000)}


@dataclass(frozen=True)
class AnnConfig:
    """HNSW settings: ``quantizer`` is float32 (flat), float16 or int8 (faiss scalar quantizers; a
    PostgreSQL catalog takes float16 and int8 as a halfvec index). ``m``, ``ef_construction`` and
    ``quantizer`` shape the graph (:attr:`graph`); ``threshold`` says from how many items on one is
    built, ``ef_search`` how widely a search explores it."""

    threshold: int = DEFAULT_ANN_THRESHOLD
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 96
    quantizer: str = "float32"

    @classmethod
    def from_dict(cls, d: dict | None) -> AnnConfig:
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def graph(self) -> tuple[int, int, str]:
        """What a built graph is made with: a change of one means building it again."""
        return self.m, self.ef_construction, self.quantizer

    def changed(self, **changes) -> AnnConfig:
        """These settings with ``changes`` (None: unchanged), checked: an :class:`InputError` names a
        setting that does not exist or a value out of its range (:data:`ANN_LIMITS`, :data:`QUANTIZERS`)."""
        from vestis.errors import InputError

        given = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(given) - set(self.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown ANN setting {unknown[0]!r}; the settings are {', '.join(self.to_dict())}")
        for name, value in given.items():
            if name == "quantizer":
                if value not in QUANTIZERS:
                    raise InputError(f"quantizer {value!r}: use {', '.join(QUANTIZERS)}")
                continue
            low, high = ANN_LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{name} {value!r}: give a whole number from {low} to {high}")
        new = AnnConfig(**{**self.to_dict(), **given})
        if new.ef_construction < 2 * new.m:
            raise InputError(f"ef_construction {new.ef_construction} is less than twice m ({new.m}): "
                             "the graph's candidates must fill its neighbour lists")  # fmt: skip
        return new


def make_hnsw(dim: int, config: AnnConfig):
    import faiss

    if config.quantizer == "float32":
        index = faiss.IndexHNSWFlat(dim, config.m, faiss.METRIC_INNER_PRODUCT)
    else:
        qtype = {"float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}.get(config.quantizer)
        if qtype is None:
            raise ValueError(f"unknown quantizer {config.quantizer!r}; use {', '.join(QUANTIZERS)}")
        index = faiss.IndexHNSWSQ(dim, qtype, config.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.ef_construction
    return index


def _add_to_hnsw(index, vectors: np.ndarray, chunk: int = 65536) -> None:
    if not index.is_trained:
        index.train(np.ascontiguousarray(vectors[: min(len(vectors), 200_000)], dtype=np.float32))
    for s in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[s : s + chunk], dtype=np.float32))


@dataclass
class VectorSet:
    rows: np.ndarray  # int64 (n,), ascending
    vectors: np.ndarray  # float32 (n, dim)
    live: np.ndarray  # bool (n,)
    hnsw: object | None = None
    config: AnnConfig = field(default_factory=AnnConfig)
    # faiss' fp16 flat index over ``vectors`` (built on first use), or False where it does not apply
    _half: object | None = field(default=None, repr=False, compare=False)

    @property
    def n_live(self) -> int:
        return int(self.live.sum())

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Positions of the given store rows that are in this snapshot (others dropped)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.rows):
            return np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        return pos[self.rows[pos] == rows]

    def allowed_mask(
        self, allowed_rows: np.ndarray | None, excluded_rows: np.ndarray | None, *, only: np.ndarray | None = None
    ) -> np.ndarray | None:
        """The live positions a search may return, or None when it is every position. ``only``:
        a mask over positions (a filter evaluated over the snapshot's columns)."""
        no_exclusions = excluded_rows is None or not len(excluded_rows)
        if allowed_rows is None and only is None and no_exclusions and self.live.all():
            return None
        mask = self.live.copy() if only is None else self.live & only
        if allowed_rows is not None:
            only = np.zeros(len(self.rows), dtype=bool)
            only[self.positions(allowed_rows)] = True
            mask &= only
        if excluded_rows is not None and len(excluded_rows):
            mask[self.positions(excluded_rows)] = False
        return mask

    def search(
        self,
        query: np.ndarray,
        k: int,
        mask: np.ndarray | None = None,
        *,
        exact: bool = False,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` best inner products among allowed positions, best first.
        ``ef_search``: how widely the graph is explored (the snapshot's own setting when None)."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        n_allowed = len(self.rows) if mask is None else int(mask.sum())
        k = min(k, n_allowed)
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        use_exact = exact or self.hnsw is None or (mask is not None and n_allowed <= EXACT_SUBSET_MAX)
        if use_exact:
            whole = mask is None or n_allowed * 3 >= 2 * len(self.rows)
            half = self.half_index() if whole or n_allowed >= HALF_SCAN_SHARE * len(self.rows) else None
            if half is not None:
                return self._faiss_search(half, query, k, mask, None)
            if mask is None:
                pos, scores = _top_k(np.asarray(self.vectors) @ query, k)
            elif whole:  # most allowed: score all, drop the rest (no gather)
                every = np.asarray(self.vectors) @ query
                every[~mask] = -np.inf
                pos, scores = _top_k(every, k)
            else:
                cand = np.flatnonzero(mask)
                p, scores = _top_k(np.asarray(self.vectors[cand]) @ query, k)
                pos = cand[p]
            return self.rows[pos], scores
        return self._faiss_search(self.hnsw, query, k, mask, max(ef_search or self.config.ef_search, k))

    def _faiss_search(self, index, query: np.ndarray, k: int, mask: np.ndarray | None, ef_search: int | None):
        import faiss

        params = faiss.SearchParameters() if ef_search is None else faiss.SearchParametersHNSW()
        if ef_search is not None:
            params.efSearch = ef_search
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        # One query runs on one OpenMP thread: faiss parallelises over queries, so a second thread
        # has nothing to do but spin after the call, on the core the text encoder's threads need
        # next (a text query end to end took 11.9 ms with two, 4.7 ms with one, at 4k items).
        # omp_set_num_threads sets the calling thread's own setting: other threads keep theirs.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, pos = index.search(query[None, :], k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        pos, scores = pos[0], scores[0]
        found = pos >= 0
        return self.rows[pos[found]], scores[found].astype(np.float32)

    def half_index(self):
        """faiss' flat fp16 index over this snapshot's vectors when they are all float16 values
        and there are at least :data:`HALF_SCAN_MIN` of them (else None); built once."""
        if self._half is None:
            index = _flat_half(np.asarray(self.vectors))
            self._half = False if index is None else index
        return None if self._half is False else self._half


def _flat_half(vectors: np.ndarray, chunk: int = 65536):
    """A faiss IndexScalarQuantizer (fp16, inner product) holding ``vectors``, or None when they
    are too few or not all exactly float16 values (the scan would then round them)."""
    if len(vectors) < HALF_SCAN_MIN or vectors.ndim != 2:
        return None
    for s in range(0, len(vectors), chunk):
        part = vectors[s : s + chunk]
        if not np.array_equal(part.astype(np.float16).astype(np.float32), part):
            return None
    import faiss

    index = faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    for s in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[s : s + chunk], dtype=np.float32))
    return index


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(scores))
    order = part[np.argsort(-scores[part], kind="stable")]
    return order, scores[order].astype(np.float32)


def build_vector_set(rows: np.ndarray, vectors: np.ndarray, config: AnnConfig) -> VectorSet:
    """A fresh snapshot of ``rows`` (ascending) and their vectors; an HNSW graph from ``config.threshold``."""
    rows = np.asarray(rows, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    hnsw = None
    if len(rows) and len(rows) >= config.threshold:
        hnsw = make_hnsw(vectors.shape[1], config)
        _add_to_hnsw(hnsw, vectors)
    return VectorSet(rows, vectors, np.ones(len(rows), dtype=bool), hnsw, config)


def extend_vector_set(
    previous: VectorSet, live_rows: np.ndarray, new_rows: np.ndarray, new_vectors: np.ndarray, config: AnnConfig
) -> VectorSet | None:
    """``previous`` with ``new_rows`` appended (and added to its graph) and rows no longer in
    ``live_rows`` masked; None when a fresh build is due (a quarter of the positions dead,
    ``previous`` is not a prefix of the live rows, or its graph was built with other settings than
    ``config``'s :attr:`AnnConfig.graph`). Reuses, and extends, ``previous``'s graph."""
    last = int(previous.rows[-1]) if len(previous.rows) else -1
    live_rows = np.asarray(live_rows, dtype=np.int64)
    new_rows = np.asarray(new_rows, dtype=np.int64)
    old_live = live_rows[live_rows <= last]
    if len(new_rows) and int(new_rows.min()) <= last:
        return None
    if previous.hnsw is not None and previous.config.graph != config.graph:
        return None
    positions = previous.positions(old_live)
    if len(positions) != len(old_live):
        return None
    total = len(previous.rows) + len(new_rows)
    if total - len(live_rows) > 0.25 * max(total, 1):
        return None
    live = np.zeros(len(previous.rows), dtype=bool)
    live[positions] = True
    new_vectors = np.ascontiguousarray(new_vectors, dtype=np.float32)
    rows = np.concatenate([previous.rows, new_rows])
    vectors = np.concatenate([np.asarray(previous.vectors), new_vectors]) if len(new_rows) else previous.vectors
    hnsw = previous.hnsw
    if hnsw is not None and len(new_rows):
        _add_to_hnsw(hnsw, new_vectors)
    elif hnsw is None and len(rows) >= config.threshold:
        hnsw = make_hnsw(new_vectors.shape[1], config)
        _add_to_hnsw(hnsw, np.asarray(vectors))
    return VectorSet(rows, vectors, np.concatenate([live, np.ones(len(new_rows), dtype=bool)]), hnsw, config)


# ------------------------------------------------------------------------------ on disk


def save_vector_set(
    vs: VectorSet, directory: Path, meta: dict, extra: Callable[[Path], None] | None = None, dtype=np.float32
) -> None:
    """Write the snapshot to ``directory`` atomically (a temporary folder renamed into place);
    ``extra(folder)`` writes more files into it first (the metadata columns). ``dtype``: the
    vectors' type on disk (float16 when the store holds them so: no loss; read back as float32)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    try:
        np.save(tmp / "rows.npy", vs.rows)
        np.save(tmp / "vectors.npy", np.asarray(vs.vectors, dtype=dtype))
        np.save(tmp / "live.npy", vs.live)
        if vs.hnsw is not None:
            import faiss

            faiss.write_index(vs.hnsw, str(tmp / "hnsw.faiss"))
        (tmp / "meta.json").write_text(json.dumps({**meta, "ann": vs.config.to_dict(), "n": len(vs.rows)}))
        if extra is not None:
            extra(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, directory)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        # EEXIST/ENOTEMPTY: another reader saved this generation first (and a newer one may
        # already have pruned it); the snapshot in memory is just as good. Anything else is real.
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not directory.is_dir():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_vector_set(directory: Path) -> tuple[VectorSet, dict] | None:
    """The snapshot in ``directory`` (vectors memory-mapped), or None if it is absent or damaged."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
        rows = np.load(directory / "rows.npy")
        vectors = np.load(directory / "vectors.npy", mmap_mode="r")
        if vectors.dtype != np.float32:  # stored as float16: searched as float32, in memory
            vectors = np.asarray(vectors, dtype=np.float32)
        live = np.load(directory / "live.npy")
        hnsw = None
        if (directory / "hnsw.faiss").is_file():
            import faiss

            hnsw = faiss.read_index(str(directory / "hnsw.faiss"))
    except (OSError, ValueError, RuntimeError):
        return None
    if len(rows) != len(vectors) or len(rows) != len(live):
        return None
    return VectorSet(rows, vectors, live, hnsw, AnnConfig.from_dict(meta.get("ann"))), meta
