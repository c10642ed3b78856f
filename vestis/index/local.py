"""The embedded default store: one directory, SQLite (+FTS5) as the source of truth.

Layout of an index directory::

    index.sqlite        items, their vectors, thumbnails, an FTS5 keyword index (WAL mode)
    cache/g<N>/         derived, rebuildable: what searching generation N reads, in arrays:
                        the vector matrix (and HNSW graph), the metadata columns
                        (:mod:`vestis.index.columns`), the keyword term table
                        (:mod:`vestis.index.keywords`)
    write.lock          held by the one writer
    reports/            build reports (JSON, the latest KEEP_REPORTS)

Vectors (format 2): float16 blobs (half of float32; recall@10 of KAGL searches against
float32 ≥ 0.99, ``benchmarks/search.py``), and only the vectors a query needs:

* ``vec``, the item's document vector (image and title mixed): every search, "more like
  this", the cosine of a hybrid hit;
* ``img_vec``, the image's own vector, read by tagging an index (labels score images,
  not titles); ``b''`` when it equals ``vec`` (an item without a title: most of a
  catalog), NULL when the image could not be read;
* ``txt_vec`` (the title's vector) is not kept: no query reads it, and a change of
  title re-embeds the item anyway.

Format-1 indexes (float32, all three vectors) are read and written as they are;
:func:`upgrade_index` rewrites one in format 2 (float16), and brings any older index to format 3.

Keyword text (format 3): FTS5 indexes each title and body as :func:`vestis.index.words.keyword_text`
prepares it (Chinese cut into words, traditional characters folded, NFKC), kept in ``kw_title`` /
``kw_body`` where it differs from the text as given (NULL otherwise: every English catalog) and read
by FTS5 through the view ``items_kw``. An index of an earlier format is brought to it when opened
for writing (or by :func:`upgrade_index`): the two columns are filled and FTS5 rebuilt, in one
transaction (seconds at 40,000 items); opened read-only it is searched as it was built.

Thumbnails are what the build made (:func:`vestis.index.steps.thumbnail`: at most the size the
result page shows).

Every write is one SQLite transaction that also bumps ``generation``; a crash or
kill at any moment leaves the last committed generation readable. Readers see a
consistent snapshot (WAL) while one writer adds. The cache of a generation is
derived data: written to a temporary folder and renamed into place, rebuilt from
SQLite when it is missing or damaged, extended incrementally when rows are appended
(rows are never rewritten: a changed item is a new row, so a row's metadata and
tokens never change).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vestis.errors import InputError, VestisError
from vestis.index.columns import Column, Columns, Unsupported, evaluate
from vestis.index.filters import Filter
from vestis.index.keywords import TermTable, Tokenizer
from vestis.index.store import KEEP_REPORTS, BaseStore, Record, StoreInfo
from vestis.index.vectors import (
    VectorSet,
    build_vector_set,
    extend_vector_set,
    load_vector_set,
    save_vector_set,
)
from vestis.index.words import query_words, stored_keyword_text

#: Format 2: vectors as float16, an image vector only where it differs from the item's, no title vector
#: (``vector_dtype`` in ``info``: format-1 float32 vectors are kept until upgraded). Format 3: keyword
#: text prepared by :mod:`vestis.index.words`.
SCHEMA_VERSION = 3
#: Formats this vestis opens (format 1: every vector float32; read and written as such; 1 and 2: keyword
#: text as given, searched as such when opened read-only, converted when opened for writing).
READABLE_VERSIONS = (1, 2, 3)
#: The first format whose FTS5 index holds prepared keyword text.
KEYWORD_TEXT_VERSION = 3
DB_NAME = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    id_json TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    image_hash TEXT,
    meta TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    image_error TEXT,
    image_ref TEXT,
    kw_title TEXT,
    kw_body TEXT
);
CREATE INDEX IF NOT EXISTS items_image_hash ON items(image_hash);
CREATE TABLE IF NOT EXISTS vectors (row INTEGER PRIMARY KEY, vec BLOB NOT NULL, img_vec BLOB, txt_vec BLOB);
CREATE TABLE IF NOT EXISTS thumbs (row INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""

#: The keyword index (format 3): FTS5 over the prepared text, NULL meaning "as given".
_KEYWORD_SCHEMA = """
CREATE VIEW IF NOT EXISTS items_kw AS
    SELECT row, coalesce(kw_title, title) AS title, coalesce(kw_body, body) AS body FROM items;
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    title, body, content='items_kw', content_rowid='row', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS items_ai AFTER INSERT ON items BEGIN
    INSERT INTO fts(rowid, title, body)
    VALUES (new.row, coalesce(new.kw_title, new.title), coalesce(new.kw_body, new.body));
END;
CREATE TRIGGER IF NOT EXISTS items_ad AFTER DELETE ON items BEGIN
    INSERT INTO fts(fts, rowid, title, body)
    VALUES ('delete', old.row, coalesce(old.kw_title, old.title), coalesce(old.kw_body, old.body));
    DELETE FROM vectors WHERE row = old.row;
    DELETE FROM thumbs WHERE row = old.row;
END;
"""

_CHUNK = 500  # SQLite parameters per IN (...) list


def is_index_dir(path: str | Path) -> bool:
    return (Path(path) / DB_NAME).is_file()


def _field_expr(name: str) -> str:
    """SQL for a metadata field; the same text in filters and in the field's expression index,
    so SQLite can use the index. ``name`` is a known field; quotes are escaped."""
    path = '$."' + name.replace('"', "") + '"'
    return "json_extract(meta, '" + path.replace("'", "''") + "')"


def _field_sql(name: str) -> tuple[str, list]:
    if name == "id":  # equality on the key: '15970' and 15970 name the same item (ids are unique as text)
        return "items.id", []
    return _field_expr(name), []


#: Integer ids as numbers, text ids as text, for ``< <= > >= BETWEEN`` (numbers sort before text).
_ORDERED_ID = "(CASE WHEN json_type(items.id_json) = 'integer' THEN CAST(items.id AS INTEGER) ELSE items.id END)"


def _ordered_field_sql(name: str) -> tuple[str, list]:
    return (_ORDERED_ID, []) if name == "id" else _field_sql(name)


def fts_query(words: Sequence[str]) -> str | None:
    """An FTS5 query matching any of ``words`` (quoted: no FTS syntax gets through)."""
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words)) or None


class LocalStore(BaseStore):
    """A catalog index in one directory (see the module docstring)."""

    def __init__(self, directory: Path, con: sqlite3.Connection, info: StoreInfo, *, writable: bool) -> None:
        super().__init__(info, writable=writable)
        self.directory = directory
        self._con = con  # one connection, shared by a server's threads under self._lock
        self._snap: tuple[int, VectorSet, Columns] | None = None
        self._filter_cache: dict[tuple[int, str], np.ndarray] = {}  # SQLite's rows of recent filters
        self._mask_cache: dict = {}  # recent filters' masks, under None the columns they were made from
        self._terms: tuple[int, np.ndarray, TermTable, int] | None = None  # generation, rows, table, format
        self._tokenizer = Tokenizer()
        self._lock_file = None
        self.vector_dtype = np.dtype(np.float16)  # as stored in SQLite; format 1 indexes: float32
        self.converted_keyword_text = False  # opening brought the keyword text to format 3

    # -------------------------------------------------------------------- open/create

    @staticmethod
    def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
        uri = f"file:{path}?mode={'ro' if readonly else 'rwc'}"
        try:
            con = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=60)
            con.execute("PRAGMA busy_timeout = 60000")
            if not readonly:
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise VestisError(f"{path}: cannot open the index database ({exc})") from None
        return con

    @classmethod
    def create(cls, directory: str | Path, info: StoreInfo) -> LocalStore:
        """Create an empty index, or open the existing one if it was built with the same model."""
        directory = Path(directory)
        if is_index_dir(directory):
            store = cls.open(directory, writable=True)
            if store.info.fingerprint != info.fingerprint or store.info.dim != info.dim:
                store.close()
                raise InputError(
                    f"{directory} was built with model {store.info.model!r} (dim {store.info.dim}); "
                    f"it cannot take vectors from {info.model!r} (dim {info.dim}). Use another --out folder."
                )
            return store
        if directory.exists() and not directory.is_dir():
            raise InputError(f"{directory} exists and is not a directory")
        if directory.is_dir() and any(p.name != "reports" for p in directory.iterdir()):
            raise InputError(f"{directory} exists and is not an empty folder or a vestis index")
        directory.mkdir(parents=True, exist_ok=True)
        con = cls._connect(directory / DB_NAME, readonly=False)
        con.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _split_sql(_SCHEMA + _KEYWORD_SCHEMA):
                con.execute(stmt)
            values = {
                "schema_version": SCHEMA_VERSION,
                "model": info.model,
                "fingerprint": info.fingerprint,
                "dim": info.dim,
                "settings": info.settings,
                "fields": [],
                "generation": 0,
                "vector_dtype": "float16",
            }
            con.executemany(
                "INSERT OR REPLACE INTO info VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            con.close()
            raise
        return cls(directory, con, info, writable=True)

    @classmethod
    def open(cls, directory: str | Path, *, writable: bool = False) -> LocalStore:
        directory = Path(directory)
        if not is_index_dir(directory):
            raise InputError(f"{directory} is not a vestis index (no {DB_NAME}); build one with `vestis index build`")
        con = cls._connect(directory / DB_NAME, readonly=False)
        try:
            info = dict(con.execute("SELECT key, value FROM info").fetchall())
        except sqlite3.DatabaseError as exc:
            con.close()
            raise VestisError(f"{directory}: the index database is damaged ({exc})") from None
        version = json.loads(info.get("schema_version", "0"))
        if version not in READABLE_VERSIONS:
            con.close()
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            fix = "written by a newer vestis: upgrade vestis" if newer else "rebuild it with `vestis index build`"
            readable = ", ".join(map(str, READABLE_VERSIONS))
            raise VestisError(f"{directory}: index format {version}, this vestis reads formats {readable}; {fix}")
        store_info = StoreInfo(
            model=json.loads(info["model"]),
            fingerprint=json.loads(info["fingerprint"]),
            dim=int(json.loads(info["dim"])),
            settings=json.loads(info["settings"]),
        )
        store = cls(directory, con, store_info, writable=writable)
        store.vector_dtype = np.dtype(json.loads(info.get("vector_dtype", '"float32"')))
        if writable and version < KEYWORD_TEXT_VERSION:
            try:
                store.converted_keyword_text = store._convert_keyword_text()
            except BaseException:
                store.close()
                raise
        return store

    def _keyword_version(self) -> int:
        return int(self._info_value("schema_version", 0))

    def _convert_keyword_text(self) -> bool:
        """Bring an index of format 1 or 2 to format 3 (see the module docstring); False when another
        process did it meanwhile."""
        try:
            with self.writer(), self._lock, self._transaction() as con:
                if int(json.loads(con.execute("SELECT value FROM info WHERE key = 'schema_version'").fetchone()[0])) \
                        >= KEYWORD_TEXT_VERSION:  # fmt: skip
                    return False
                con.execute("DROP TRIGGER IF EXISTS items_ai")
                con.execute("DROP TRIGGER IF EXISTS items_ad")
                con.execute("DROP TABLE IF EXISTS fts")
                con.execute("DROP VIEW IF EXISTS items_kw")
                have = {r[1] for r in con.execute("PRAGMA table_info(items)")}
                for column in ("kw_title", "kw_body"):
                    if column not in have:
                        con.execute(f"ALTER TABLE items ADD COLUMN {column} TEXT")
                changed = [
                    (stored_keyword_text(title), stored_keyword_text(body), row)
                    for row, title, body in con.execute("SELECT row, title, body FROM items")
                    if not (title.isascii() and body.isascii())
                ]
                con.executemany("UPDATE items SET kw_title = ?, kw_body = ? WHERE row = ?", changed)
                for stmt in _split_sql(_KEYWORD_SCHEMA):
                    con.execute(stmt)
                con.execute("INSERT INTO fts(fts) VALUES ('rebuild')")
                con.execute("UPDATE info SET value = ? WHERE key = 'schema_version'", (json.dumps(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise VestisError(f"{self.directory}: cannot bring the index to format {SCHEMA_VERSION} ({exc})") from None
        return True

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # ------------------------------------------------------------------------- basics

    @property
    def location(self) -> str:
        return str(self.directory)

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def _info_value(self, key: str, default=None):
        rows = self._rows("SELECT value FROM info WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def _set_info(self, key: str, value) -> None:
        with self._lock:
            self._con.execute("UPDATE info SET value = ? WHERE key = ?", (json.dumps(value), key))

    # ------------------------------------------------------------------------- writes

    def _lock_for_writing(self) -> bool:
        """``write.lock``, held with ``flock`` (released by the system if the process dies)."""
        self._lock_file = open(self.directory / "write.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            return False
        return True

    def _unlock_after_writing(self) -> None:
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("UPDATE info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self._check_vectors(records)
        with self.writer(), self._lock, self._transaction() as con:
            ids = [r.id for r in records]
            for s in range(0, len(ids), _CHUNK):
                part = ids[s : s + _CHUNK]
                con.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(part))})", part)
            for r in records:
                cur = con.execute(
                    "INSERT INTO items (id, id_json, content_hash, image_hash, meta, title, body, image_error, "
                    "image_ref, kw_title, kw_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.id, json.dumps(r.id if r.id_value is None else r.id_value), r.content_hash, r.image_hash,
                        json.dumps(r.metadata, default=str, allow_nan=False), r.title, r.body, r.image_error,
                        r.image_ref, stored_keyword_text(r.title), stored_keyword_text(r.body),
                    ),
                )  # fmt: skip
                row = cur.lastrowid
                con.execute("INSERT INTO vectors VALUES (?, ?, ?, ?)", (row, *self._vector_blobs(r)))
                if r.thumbnail:
                    con.execute("INSERT INTO thumbs VALUES (?, ?)", (row, r.thumbnail))
            known = set(self._info_value("fields", []))
            new_fields = sorted({k for r in records for k in r.metadata} - known)
            if new_fields:
                self._set_info("fields", sorted(known | set(new_fields)))
                for f in new_fields:  # expression indexes: filters on any field use an index, not a scan
                    name = "meta_" + hashlib.blake2b(f.encode(), digest_size=6).hexdigest()
                    con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON items({_field_expr(f)})")

    def _encode(self, v: np.ndarray | None) -> bytes | None:
        return None if v is None else np.ascontiguousarray(v, dtype=self.vector_dtype).tobytes()

    def _vector_blobs(self, r: Record) -> tuple[bytes, bytes | None, bytes | None]:
        """(vec, img_vec, txt_vec) as stored: format 1 keeps all three in float32; format 2 keeps
        the image vector only where it differs from ``vec`` (``b''`` when equal) and no title vector."""
        vec, img = self._encode(r.vector), self._encode(r.image_vector)
        if self.vector_dtype == np.float32:
            return vec, img, self._encode(r.text_vector)
        return vec, (b"" if img == vec else img), None

    def _decode(self, data: bytes, n: int) -> np.ndarray:
        """``n`` stored vectors as float32 (n, dim)."""
        return np.frombuffer(data, self.vector_dtype).astype(np.float32).reshape(n, self.info.dim)

    def delete(self, ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(str(i) for i in ids))
        deleted: list[str] = []
        if not ids:
            return deleted
        with self.writer(), self._lock, self._transaction() as con:
            for s in range(0, len(ids), _CHUNK):
                part = ids[s : s + _CHUNK]
                marks = ",".join("?" * len(part))
                deleted += [r[0] for r in con.execute(f"SELECT id FROM items WHERE id IN ({marks})", part)]
                con.execute(f"DELETE FROM items WHERE id IN ({marks})", part)
        return deleted

    # -------------------------------------------------------------------------- reads

    def _rows_for_ids(self, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for s in range(0, len(ids), _CHUNK):
            part = list(ids[s : s + _CHUNK])
            marks = ",".join("?" * len(part))
            found.update(self._con.execute(f"SELECT id, row FROM items WHERE id IN ({marks})", part).fetchall())
        return found

    def get(self, ids: Sequence[str], *, vectors: bool = False, thumbnails: bool = False) -> dict[str, Record]:
        ids = [str(i) for i in ids]
        out: dict[str, Record] = {}
        cols = (
            "items.row, id, id_json, content_hash, image_hash, meta, title, body, image_error, image_ref"
            + (", vec, img_vec, txt_vec" if vectors else "")
            + (", thumbs.data" if thumbnails else "")
        )
        joins = (" JOIN vectors USING (row)" if vectors else "") + (
            " LEFT JOIN thumbs ON thumbs.row = items.row" if thumbnails else ""
        )
        dim = self.info.dim
        with self._lock:
            for s in range(0, len(ids), _CHUNK):
                part = ids[s : s + _CHUNK]
                marks = ",".join("?" * len(part))
                for r in self._con.execute(f"SELECT {cols} FROM items{joins} WHERE id IN ({marks})", part):
                    rec = Record(
                        id=r[1], vector=np.zeros(dim, np.float32), metadata=json.loads(r[5]), content_hash=r[3],
                        image_hash=r[4], title=r[6], body=r[7], image_error=r[8], image_ref=r[9],
                        id_value=json.loads(r[2]),
                    )  # fmt: skip
                    i = 10
                    if vectors:
                        rec.vector = self._decode(r[10], 1)[0]
                        rec.image_vector = None if r[11] is None else self._decode(r[11] or r[10], 1)[0]
                        rec.text_vector = None if r[12] is None else self._decode(r[12], 1)[0]
                        i = 13
                    if thumbnails:
                        rec.thumbnail = r[i]
                    out[rec.id] = rec
        return out

    def image_vectors(self, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, image vectors) of the items whose image could be read, in index order."""
        with self._lock:
            rows = self._con.execute(
                "SELECT id, img_vec, vec FROM items JOIN vectors USING (row) WHERE img_vec IS NOT NULL ORDER BY row"
            ).fetchall()
        if ids is not None:
            want = set(map(str, ids))
            rows = [r for r in rows if r[0] in want]
        vecs = self._decode(b"".join(r[1] or r[2] for r in rows), len(rows))  # b'': the item's own vector
        return [r[0] for r in rows], vecs

    def facets(self, field: str, *, limit: int = 50) -> list[tuple[object, int]]:
        """The most frequent values of ``field`` over the catalog, with their counts."""
        self._check_field(field)
        if field == "id":
            return [(i, 1) for i in sorted(self.all_ids())[:limit]]
        vs, columns = self._state()
        return columns.counts(field, np.flatnonzero(vs.live))[:limit]

    def value_counts(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, list[tuple[object, int]]]:
        """Per field, how often each value occurs among the items ``ids`` (from the snapshot's columns)."""
        vs, columns = self._state()
        with self._lock:
            rows = np.array(sorted(self._rows_for_ids([str(i) for i in ids]).values()), dtype=np.int64)
        positions = vs.positions(rows)
        keys = sorted(str(i) for i in ids)  # "id" names the key (as in filters), one item each
        return {f: [(i, 1) for i in keys] if f == "id" else columns.counts(f, positions) for f in fields}

    def field_values(self, field: str) -> list[object]:
        """The distinct values of a metadata field (``[]`` for ``id`` and unknown fields)."""
        if field == "id" or field not in self.fields():
            return []
        sql, params = _field_sql(field)
        with self._lock:
            return [r[0] for r in self._con.execute(f"SELECT DISTINCT {sql} FROM items", params)]

    def _where_sql(self, where: Filter) -> tuple[str, list]:
        """The filter as SQL over ``items``, after checking it names only fields the index has;
        text equality ignores case (see :mod:`vestis.index.filters`)."""
        where.check_fields([*self.fields(), "id"])
        return where.compile(_field_sql, values_of=self.field_values, ordered_sql=_ordered_field_sql)

    def _check_filter(self, where: Filter) -> None:
        """Refuse a filter naming unknown fields or using what the language lacks (the SQL path's messages)."""
        where.check_fields([*self.fields(), "id"])
        where.compile(_field_sql)

    def _filter_rows(self, where: Filter) -> np.ndarray:
        """Rows matching ``where`` by SQLite; the last few filters' rows are kept per generation."""
        key = (self.generation(), where.text)
        if key in self._filter_cache:
            return self._filter_cache[key]
        sql, params = self._where_sql(where)
        try:
            rows = self._con.execute(f"SELECT row FROM items WHERE {sql}", params).fetchall()
        except sqlite3.Error as exc:
            raise InputError(f"filter {where.text!r} cannot be applied: {exc}") from None
        result = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if len(self._filter_cache) >= 32:
            self._filter_cache.pop(next(iter(self._filter_cache)))
        self._filter_cache[key] = result
        return result

    def _filter_mask(self, where: Filter, vs: VectorSet, columns: Columns) -> np.ndarray:
        """The positions of ``vs`` matching ``where``: evaluated over the snapshot's metadata
        columns (:mod:`vestis.index.columns`), or by SQLite for what those cannot answer exactly."""
        if self._mask_cache.get(None) is not columns:  # masks of another snapshot's columns: dropped
            self._mask_cache = {None: columns}
        key = where.text
        if key in self._mask_cache:  # facet clicks and pages of one query repeat a filter
            return self._mask_cache[key]
        self._check_filter(where)
        try:
            only = evaluate(where, columns)
        except Unsupported:
            only = np.zeros(len(vs.rows), dtype=bool)
            only[vs.positions(self._filter_rows(where))] = True
        if len(self._mask_cache) > 16:
            self._mask_cache.pop(next(k for k in self._mask_cache if k is not None))
        self._mask_cache[key] = only
        return only

    # ------------------------------------------------------------------- vector search

    def _snapshot(self) -> VectorSet:
        return self._state()[0]

    def _state(self) -> tuple[VectorSet, Columns]:
        """The vector snapshot of the current generation and its metadata columns: cached in
        memory, else on disk, else built from SQLite (incrementally from the newest older
        snapshot) and saved for next time."""
        with self._lock:
            self._con.execute("BEGIN")
            try:
                gen = int(self._info_value("generation", 0))
                if self._snap is not None and self._snap[0] == gen:
                    return self._snap[1], self._snap[2]
                cache = self.directory / "cache"
                loaded = load_vector_set(cache / f"g{gen}")
                columns = Columns.load(cache / f"g{gen}") if loaded is not None else None
                if loaded is not None and columns is not None and columns.n == len(loaded[0].rows):
                    vs = loaded[0]
                elif loaded is not None:  # a snapshot saved before columns were: add them (in memory)
                    vs, columns = loaded[0], self._columns_after(-1, loaded[0].rows)
                else:
                    vs, columns = self._build_snapshot(cache, gen)
            finally:
                self._con.execute("COMMIT")
            self._snap = (gen, vs, columns)
            return vs, columns

    def _vectors_after(self, after: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._con.execute("SELECT row, vec FROM vectors WHERE row > ? ORDER BY row", (after,)).fetchall()
        rows = np.fromiter((g[0] for g in got), dtype=np.int64, count=len(got))
        return rows, self._decode(b"".join(g[1] for g in got), len(got))

    def _columns_after(self, after: int, rows: np.ndarray) -> Columns:
        """The metadata columns of ``rows`` (all > ``after``), as SQLite's ``json_extract`` gives them."""
        fields = [f for f in self.fields() if f != "id"]
        values: dict[str, list] = {f: [None] * len(rows) for f in fields}
        for s in range(0, len(fields), 100):
            part = fields[s : s + 100]
            exprs = ", ".join(_field_expr(f) for f in part) or "NULL"
            got = self._con.execute(f"SELECT row, {exprs} FROM items WHERE row > ? ORDER BY row", (after,)).fetchall()
            found = np.fromiter((g[0] for g in got), np.int64, len(got))
            pos = np.searchsorted(rows, found)
            ok = (pos < len(rows)) & (rows[np.minimum(pos, max(len(rows) - 1, 0))] == found) if len(rows) else pos < 0
            for j, f in enumerate(part):
                column = values[f]
                for p, g, keep in zip(pos.tolist(), got, ok.tolist()):
                    if keep:
                        column[p] = g[j + 1]
        return Columns({f: Column.from_values(v) for f, v in values.items()}, len(rows))

    def _build_snapshot(self, cache: Path, gen: int) -> tuple[VectorSet, Columns]:
        previous = (self._snap[1], self._snap[2]) if self._snap is not None else None
        if previous is None:
            older = [int(p.name[1:]) for p in cache.glob("g*") if p.name[1:].isdigit() and int(p.name[1:]) < gen]
            loaded = load_vector_set(cache / f"g{max(older)}") if older else None
            if loaded is not None:
                columns = Columns.load(cache / f"g{max(older)}")
                if columns is not None and columns.n == len(loaded[0].rows):
                    previous = (loaded[0], columns)
        live_rows = np.fromiter((r[0] for r in self._con.execute("SELECT row FROM items ORDER BY row")), np.int64)
        vs = columns = None
        if previous is not None:
            after = int(previous[0].rows[-1]) if len(previous[0].rows) else -1
            new_rows, new_vectors = self._vectors_after(after)
            vs = extend_vector_set(previous[0], live_rows, new_rows, new_vectors, self.ann_config)
            if vs is not None:
                columns = previous[1].extend(self._columns_after(after, new_rows))
        if vs is None:
            rows, vectors = self._vectors_after(-1)
            vs = build_vector_set(rows, vectors, self.ann_config)
            columns = self._columns_after(-1, rows)
        if self.writable or os.access(cache.parent, os.W_OK):
            save_vector_set(vs, cache / f"g{gen}", {"generation": gen, "dim": self.info.dim}, extra=columns.save,
                            dtype=self.vector_dtype)  # fmt: skip
            for old in cache.glob("g*"):
                if old.name[1:].isdigit() and int(old.name[1:]) < gen:
                    shutil.rmtree(old, ignore_errors=True)
        return vs, columns

    def _drop_graph(self) -> None:
        """Nothing to drop: the next snapshot (a new generation, after the settings' write) builds its graph
        afresh when the previous one's was built with other settings (:func:`extend_vector_set`)."""

    def refresh(self) -> None:
        """Bring the derived vector snapshot up to date now (writers call this after a batch of writes)."""
        self._snapshot()

    def warm(self) -> None:
        """The snapshot, its metadata columns and the fp16 scan index, loaded or built now: a first
        search would otherwise pay for them (about a second at 40k items)."""
        self._snapshot().half_index()

    def _search(self, vector, k: int, where: Filter | None, exclude: Sequence[str], exact: bool):
        vs, columns = self._state()
        with self._lock:
            only = self._filter_mask(where, vs, columns) if where is not None else None
            excluded = np.array(list(self._rows_for_ids(list(exclude)).values()), dtype=np.int64) if exclude else None
            mask = vs.allowed_mask(None, excluded, only=only)
            rows, scores = vs.search(vector, k, mask, exact=exact, ef_search=self.ann_config.ef_search)
            return self._ids_for_rows(rows, scores)

    def _ids_for_rows(self, rows: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        found: dict[int, str] = {}
        row_list = [int(r) for r in rows]
        for s in range(0, len(row_list), _CHUNK):
            part = row_list[s : s + _CHUNK]
            marks = ",".join("?" * len(part))
            found.update(self._con.execute(f"SELECT row, id FROM items WHERE row IN ({marks})", part).fetchall())
        return [(found[r], float(sc)) for r, sc in zip(row_list, scores) if r in found]

    def keyword_search(self, text: str, k: int, *, where: Filter | None = None) -> list[tuple[str, float]]:
        """The ``k`` items whose title and metadata best match the words of ``text`` by BM25 (FTS5's
        ``bm25(fts, 2.0, 1.0)``, sign turned), computed over the snapshot's term table
        (:mod:`vestis.index.keywords`); a word FTS5 splits into a phrase is left to FTS5. The words are
        :func:`vestis.index.words.query_words` (an index of format 1 or 2 opened read-only: as it was built)."""
        if k <= 0:
            return []
        words = query_words(text, prepared=self._keyword_version() >= KEYWORD_TEXT_VERSION)
        if not words:
            return []
        vs, columns = self._state()
        with self._lock:
            phrases = [self._tokenizer.word(w) for w in words]
            if all(len(p) == 1 for p in phrases):
                only = self._filter_mask(where, vs, columns) if where is not None else None
                pos, scores = self._term_table(vs).search([p[0] for p in phrases], k, vs.live, only)
                return self._ids_for_rows(vs.rows[pos], scores)
            return self._fts_search(text, k, where)

    def _fts_search(self, text: str, k: int, where: Filter | None) -> list[tuple[str, float]]:
        """Keyword search by FTS5 itself (``bm25()`` for every matching row)."""
        match = fts_query(query_words(text, prepared=self._keyword_version() >= KEYWORD_TEXT_VERSION))
        if match is None or k <= 0:
            return []
        sql, params = ("", [])
        if where is not None:
            sql, params = self._where_sql(where)
            sql = f" AND ({sql})"
        with self._lock:
            try:
                rows = self._con.execute(
                    "SELECT items.id, bm25(fts, 2.0, 1.0) AS s FROM fts JOIN items ON items.row = fts.rowid "
                    f"WHERE fts MATCH ?{sql} ORDER BY s LIMIT ?",
                    [match, *params, k],
                ).fetchall()
            except sqlite3.Error as exc:
                raise InputError(f"keyword search failed: {exc}") from None
        return [(i, -float(s)) for i, s in rows]

    def _term_table(self, vs: VectorSet) -> TermTable:
        """The term table of the snapshot ``vs``: in memory, else in its cache folder, else made (from
        the previous generation's when ``vs`` extends it) and saved there."""
        gen = self._snap[0] if self._snap is not None else -1
        version = self._keyword_version()
        if self._terms is not None and self._terms[0] == gen and self._terms[3] == version:
            return self._terms[2]
        folder = self.directory / "cache" / f"g{gen}"
        table = TermTable.load(folder)
        if table is None or len(table.lengths) != len(vs.rows):
            table, start = None, 0
            if self._terms is not None and self._terms[3] == version:  # the same text: extended
                old_rows, old = self._terms[1], self._terms[2]
                if len(old_rows) <= len(vs.rows) and np.array_equal(vs.rows[: len(old_rows)], old_rows):
                    table, start = old, len(old_rows)
            new = TermTable.build(self._documents(vs.rows[start:]), self._tokenizer, start)
            table = new if table is None else table.extend(new)
            if self.writable or os.access(folder, os.W_OK):
                with contextlib.suppress(OSError):
                    tmp = folder / f".terms-{os.getpid()}-{threading.get_ident()}"
                    tmp.mkdir()
                    table.save(tmp)
                    for f in tmp.iterdir():
                        os.replace(f, folder / f.name)
                    tmp.rmdir()
        self._terms = (gen, vs.rows, table, version)
        return table

    def _documents(self, rows: np.ndarray) -> list[tuple[str, str]]:
        """(title, body) of ``rows`` (ascending) as FTS5 indexed them, ``('', '')`` for rows no longer in
        the index."""
        docs = [("", "")] * len(rows)
        if not len(rows):
            return docs
        table = "items_kw" if self._keyword_version() >= KEYWORD_TEXT_VERSION else "items"
        got = self._con.execute(
            f"SELECT row, title, body FROM {table} WHERE row >= ? AND row <= ? ORDER BY row",
            (int(rows[0]), int(rows[-1])),
        ).fetchall()
        found = np.fromiter((g[0] for g in got), np.int64, len(got))
        pos = np.minimum(np.searchsorted(rows, found), len(rows) - 1)
        for p, g, ok in zip(pos.tolist(), got, (rows[pos] == found).tolist()):
            if ok:
                docs[p] = (g[1], g[2])
        return docs

    # ------------------------------------------------------------------ build reports

    def save_report(self, report: dict) -> None:
        """``reports/MODE-TIME.json``; the oldest beyond :data:`KEEP_REPORTS` are removed."""
        folder = self.directory / "reports"
        folder.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        (folder / f"{report.get('mode', 'build')}-{stamp}.json").write_text(json.dumps(report, indent=1))
        for old in self._report_files()[KEEP_REPORTS:]:
            old.unlink(missing_ok=True)

    def _report_files(self) -> list[Path]:
        """The report files, newest first."""
        folder = self.directory / "reports"
        dated = []
        for p in folder.glob("*.json") if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                dated.append((p.stat().st_mtime_ns, p.name, p))
        return [p for *_, p in sorted(dated, reverse=True)]

    def reports(self, limit: int = 10) -> list[dict]:
        out: list[dict] = []
        for p in self._report_files():
            if len(out) >= limit:
                break
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(p.read_text()))
        return out

    def check(self) -> dict:
        """Consistency report: items, vectors and FTS rows agree, the FTS index is intact."""
        with self._lock:
            n_items = self._con.execute("SELECT count(*) FROM items").fetchone()[0]
            n_vectors = self._con.execute("SELECT count(*) FROM vectors").fetchone()[0]
            orphans = self._con.execute(
                "SELECT count(*) FROM items LEFT JOIN vectors USING (row) WHERE vectors.row IS NULL"
            ).fetchone()[0]
            integrity = self._con.execute("PRAGMA integrity_check").fetchone()[0]
            try:
                self._con.execute("INSERT INTO fts(fts) VALUES ('integrity-check')")
                fts_ok = True
            except sqlite3.DatabaseError:
                fts_ok = False
        return {
            "items": n_items,
            "vectors": n_vectors,
            "items_without_vector": orphans,
            "sqlite_integrity": integrity,
            "fts_ok": fts_ok,
            "ok": n_items == n_vectors and orphans == 0 and integrity == "ok" and fts_ok,
        }


def upgrade_index(directory: str | Path) -> dict:
    """Bring an index to the current format in place: its keyword text prepared (format 3, one
    transaction, done by opening it for writing) and float32 vectors (three per item, format 1) rewritten
    as float16 (one transaction: a crash leaves format 1 whole), then ``VACUUM`` to hand the space back.
    Returns the size on disk before and after; an index already in the current format is left as it is."""
    directory = Path(directory)
    before = _size_on_disk(directory)
    with LocalStore.open(directory, writable=True) as store, store.writer():
        if store.vector_dtype == np.float16:
            converted = store.converted_keyword_text
            return {"index": str(directory), "upgraded": converted, "mb_before": before,
                    "mb_after": _size_on_disk(directory) if converted else before}  # fmt: skip
        with store._lock, store._transaction() as con:
            old = LocalStore(directory, con, store.info, writable=True)
            old.vector_dtype = np.dtype(np.float32)
            new = LocalStore(directory, con, store.info, writable=True)
            last = -1
            while chunk := con.execute(
                "SELECT row, vec, img_vec FROM vectors WHERE row > ? ORDER BY row LIMIT 5000", (last,)
            ).fetchall():
                for row, vec, img in chunk:
                    rec = Record(id="", vector=old._decode(vec, 1)[0])
                    rec.image_vector = None if img is None else old._decode(img, 1)[0]
                    con.execute("UPDATE vectors SET vec = ?, img_vec = ?, txt_vec = ? WHERE row = ?",
                                (*new._vector_blobs(rec), row))  # fmt: skip
                last = chunk[-1][0]
            con.execute("INSERT OR REPLACE INTO info VALUES ('vector_dtype', ?)", (json.dumps("float16"),))
            con.execute("UPDATE info SET value = ? WHERE key = 'schema_version'", (json.dumps(SCHEMA_VERSION),))
        store._con.execute("VACUUM")
        store._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.rmtree(directory / "cache", ignore_errors=True)  # derived from float32 vectors: made again on use
    return {"index": str(directory), "upgraded": True, "mb_before": before, "mb_after": _size_on_disk(directory)}


def _size_on_disk(directory: Path) -> float:
    return round(sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20, 1)


def _split_sql(script: str) -> list[str]:
    """Statements of ``script``; trigger bodies (BEGIN ... END;) stay whole."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        in_trigger = text.upper().startswith("CREATE TRIGGER")
        if (in_trigger and text.upper().endswith("END;")) or (not in_trigger and text.endswith(";")):
            out.append(text)
            buf = []
    return out
