"""The shared store: a catalog in PostgreSQL with pgvector (``postgresql://user@host/db``).

Several ``vestis serve`` processes on several machines share one database; a process
holds nothing but caches. The layout, in one PostgreSQL schema per catalog (``vestis``
unless the URL says ``?schema=shop``)::

    schema_version  the layout version; a newer one than this code knows is refused
    info            model, fingerprint, dim, settings, fields, generation (JSONB values)
    reports         build reports (JSONB, the latest KEEP_REPORTS), as an index folder's reports/
    items           id, metadata (``doc`` JSON as given, ``meta`` JSONB for filters), titles,
                    vectors (pgvector ``vector``), the keyword text (``kw_title``/``kw_body`` as
                    :mod:`vestis.index.words` prepares it, NULL where it is the text as given)
    words           each item's ``tsv`` (tsvector of its keyword text: title weight A, text B), with
                    a GIN index; a table of its own, so that ranking a common word's matches reads
                    narrow rows, not the items' (a 512-d item row is 2 KB), deleted with its item
    thumbs          thumbnails (bytea), deleted with their item

Vectors are kept in full precision; the HNSW index (inner product) is over ``halfvec``
casts of them when the index's quantizer is float16 (half the index, the same recall after
the full-precision re-ranking every search does) or over the vectors themselves. It is
built once the catalog reaches the ANN threshold, as the embedded store builds its graph.

Writes: one batch is one transaction (``COPY`` into a staging table, then delete + insert:
upserts are idempotent, a killed writer leaves nothing half-written); one writer at a time
per catalog (an advisory lock, as the embedded store's lock file). Filters are compiled by
:mod:`vestis.index.filters` with every literal a bound parameter (JSONB), over ``meta``'s
fields with an expression index each. A filter is searched exactly (its matches' rows read and
scored) or by scanning the HNSW index iteratively (pgvector 0.8 ``hnsw.iterative_scan``) until
enough matching items are found, whichever the planner's estimate of its matches makes cheaper.

Connections: an open store keeps a pool of them (``psycopg_pool``, up to :data:`POOL_SIZE`, or
as many as the URL's ``?pool_size=N`` says), so a server's threads read at once, and a writer
holds one of its own for the write lock (readers in other threads go on meanwhile). A
connection idle for more than :data:`CHECK_IDLE` seconds is checked before a read takes it, and
the writer's every time: one lost while idle (the server restarted, the backend was terminated,
the link dropped) is replaced. A read whose connection turns out lost (while idle for less, or
while the read ran) is run again on another, reads being idempotent; a write is not
(its transaction was rolled back): it fails with :class:`~vestis.errors.UnavailableError`, as
does any query while the server stays out of reach, and any other refusal of the database is a
:class:`~vestis.errors.VestisError` naming it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import numpy as np
from sqlglot import exp

from vestis.errors import InputError, UnavailableError, VestisError
from vestis.index.filters import Filter
from vestis.index.store import KEEP_REPORTS, BaseStore, Record, StoreInfo
from vestis.index.words import query_words, stored_keyword_text

SCHEMA_VERSION = 5
DEFAULT_SCHEMA = "vestis"
#: What one item visited by the iterative HNSW scan costs, in rows of an exact scan (each match's row read
#: and scored): the scan walks the graph (neighbour lists and vectors on index pages) and reads the visited
#: item's row to test the filter. Measured at 1M x 512 (halfvec index, 6 GB of shared buffers): an exact
#: scan of 10,000 matches ~29 ms; iterative scans of a 1% filter ~16 ms to find 10 matches (~1,000 items
#: visited), ~100 ms to find 40 (~4,000). See :func:`plan_filtered`.
INDEX_VISIT_COST = 7.0
#: Items the iterative scan of a filter may visit to gather re-rank candidates beyond the ``k`` asked for:
#: where matches are rare each costs 1/share visits, and a 1% filter re-ranking 40 instead of 10 took
#: 100 ms instead of 16 (recall@10 0.98 against 0.95); where they are common they come with the first
#: ``ef_search`` visits anyway (at 12.5%, 40 candidates: recall 0.98 instead of 0.90, in the same 10 ms).
FILTERED_VISITS = 600
#: Candidates re-ranked in full precision per result asked, when the index is over halfvec.
RERANK_FACTOR = 4
#: The most items one ``hnsw.iterative_scan`` visits before giving up (pgvector's max_scan_tuples).
MAX_SCAN_TUPLES = 200_000
#: Connections one store (one ``vestis serve`` process's catalog) keeps at most, unless the URL's ``?pool_size=N``
#: says otherwise: readers in this many threads query at once, more wait for one of them.
POOL_SIZE = 8
#: The most ``?pool_size=`` may ask for (a PostgreSQL server takes 100 connections by default, all clients together).
POOL_SIZE_MAX = 1000
#: Seconds a query waits for a working connection (the pool's all busy, or the server unreachable) before failing.
POOL_TIMEOUT = 15.0
#: Seconds a pooled connection may have been idle and still be handed to a read unchecked: a server busy with
#: searches reuses its connections well within this and saves the check's round trip on each; one found lost
#: all the same is replaced and the read run again (:meth:`PostgresStore._read`).
CHECK_IDLE = 2.0
#: Seconds the pool retries one lost connection in the background (backing off: 1, 2, 4 s...) before it leaves
#: the next query to start a new attempt at once: the first query after an outage finds the server back.
RECONNECT_TIMEOUT = 10.0
#: The most memory (bytes) vestis asks for to build the HNSW index in (``maintenance_work_mem``, raised for the
#: build's transaction to what the graph needs, :func:`hnsw_build_bytes`): pgvector builds the graph in memory
#: and, once it outgrows that, goes on on disk many times slower (and says so: logged as a warning). 2 GiB
#: holds the graph of about 940,000 256-d vectors in a halfvec index; a server or a connection configured
#: higher (``?options=-c%20maintenance_work_mem%3D8GB`` in the store URL) keeps its own.
HNSW_BUILD_MEMORY_MAX = 2 * 1024**3


def _log_build_notice(diag) -> None:
    """PostgreSQL's notices during an index build (pgvector's: the graph outgrew its memory), as warnings."""
    text = " ".join(t for t in (diag.message_primary, diag.message_detail, diag.message_hint) if t)
    logging.getLogger(__name__).warning("PostgreSQL, building the HNSW index: %s", text)


def hnsw_build_bytes(n: int, dim: int, quantizer: str, m: int) -> int:
    """About the memory pgvector's in-memory HNSW build takes for ``n`` items: per element its value
    (a varlena of float32s, or float16s for a halfvec index), its neighbour lists (2m candidates on the
    bottom layer, m on each upper one, 1/ln(m) upper layers on average; 16 bytes a candidate) and
    about 128 bytes of element header and tuple ids (pgvector's hnswbuild.c), with a quarter spare."""
    value = 8 + dim * (4 if quantizer == "float32" else 2)
    neighbours = int((2 * m + m / math.log(max(m, 2))) * 16)
    return int(n * (value + neighbours + 128) * 1.25)


class FilteredPlan(NamedTuple):
    """How a filtered search runs: ``exact`` (every match's row read and scored), or the iterative HNSW
    scan until it has ``candidates`` matches (re-ranked in full precision, the best ``k`` kept)."""

    exact: bool
    candidates: int


def plan_filtered(matches: float, items: float, k: int, pool: int, ef_search: int) -> FilteredPlan:
    """The cheaper way to search a filter matching about ``matches`` of ``items`` for ``k`` results, where an
    unfiltered search re-ranks ``pool`` candidates. The iterative scan gathers ``candidates`` (``k``, up to
    ``pool`` while :data:`FILTERED_VISITS` allow) and visits about ``candidates / share`` items for them (at
    least ``ef_search``), each :data:`INDEX_VISIT_COST` rows' worth; the exact scan reads every match. The
    exact scan's cost grows with the matches and the index scan's falls with them: at 40k items the exact
    scan wins up to ~8% of the items (3,300 matches), at 1M up to ~0.8% (8,400). ``items`` unknown (never
    analysed, ``reltuples`` < 0) counts as ``matches``."""
    items = max(items, matches, 1.0)
    share = max(matches, 1.0) / items
    candidates = int(min(max(pool, k), max(k, share * FILTERED_VISITS)))
    visits = min(max(float(ef_search), candidates / share), items)
    return FilteredPlan(matches <= INDEX_VISIT_COST * visits, candidates)


def _set_local(con, settings: dict[str, str]) -> None:
    """PostgreSQL settings for the current transaction only (``SET LOCAL``), all in one round trip."""
    con.execute(
        "SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(settings)),
        [x for pair in settings.items() for x in pair],
    )


class _IdleCheck:
    """The pool's ``check``: a connection handed out after more than :data:`CHECK_IDLE` seconds back in the
    pool (or never used yet) is checked (an empty query) first. :meth:`used` stamps one as it goes back."""

    def __init__(self) -> None:
        self._used: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, con) -> None:
        from psycopg_pool import ConnectionPool

        if time.monotonic() - self._used.get(con, -math.inf) > CHECK_IDLE:
            ConnectionPool.check_connection(con)

    def used(self, con) -> None:
        self._used[con] = time.monotonic()


class _State(NamedTuple):
    """What a filtered read needs of the catalog, read in one statement (:data:`_STATE_SQL`): its metadata
    fields, its generation (the key of cached field values) and the planner's count of its items
    (``reltuples``; negative before the table was first analysed)."""

    fields: list[str]
    generation: int
    items: float


_STATE_SQL = (
    "SELECT (SELECT value FROM info WHERE key = 'fields'), (SELECT value FROM info WHERE key = 'generation'), "
    "(SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass)"
)


def _state(con) -> _State:
    fields, generation, items = con.execute(_STATE_SQL).fetchone()
    return _State(list(fields or []), int(generation or 0), float(items))


def _rows_in_transaction(con, settings: dict[str, str], sql: str, params: Sequence) -> list[tuple]:
    """``sql``'s rows, run with ``settings`` in a transaction of its own: BEGIN, the settings, the query and
    COMMIT sent together (psycopg's pipeline mode), the answers read once. On a connection inside a
    transaction already (the writer's, in its thread), a savepoint."""
    from psycopg.pq import TransactionStatus

    if con.info.transaction_status != TransactionStatus.IDLE:
        with con.transaction():
            _set_local(con, settings)
            return con.execute(sql, params).fetchall()
    # BEGIN and COMMIT as statements: psycopg's transaction() waits for each in pipeline mode (1.3 ms a
    # search instead of 0.65 here, where a plain SELECT takes 0.66)
    try:
        with con.pipeline():
            con.execute("BEGIN")
            _set_local(con, settings)
            cur = con.execute(sql, params)
            con.execute("COMMIT")
        return cur.fetchall()
    except BaseException:
        if not con.broken and con.info.transaction_status != TransactionStatus.IDLE:
            con.execute("ROLLBACK")  # an error leaves the explicit transaction open, aborted
        raise


def _connect_kwargs(schema: str) -> dict:
    """psycopg's settings for a catalog's connections; ``application_name`` shows them in ``pg_stat_activity``."""
    return {
        "autocommit": True,
        "prepare_threshold": None,
        "connect_timeout": 20,
        "application_name": f"vestis/{schema}",
    }


_SCHEMES = ("postgresql://", "postgres://")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(_SCHEMES)


class StoreURL(NamedTuple):
    """A ``postgresql://`` store URL taken apart: what libpq connects with, and vestis' own parameters."""

    conninfo: str  # the URL without vestis' parameters
    schema: str  # ?schema=NAME: the catalog's schema (default ``vestis``)
    pool_size: int  # ?pool_size=N: connections the store keeps at most (default :data:`POOL_SIZE`)


#: The URL's query parameters that are vestis', not libpq's.
OWN_PARAMETERS = ("schema", "pool_size")


def split_url(url: str) -> StoreURL:
    """The store URL's parts; a clear error for a schema or pool size vestis cannot use."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {k: v for k, v in query if k in OWN_PARAMETERS}  # (the last of a repeated one, as libpq takes them)
    schema = given.get("schema", DEFAULT_SCHEMA)
    if not _NAME.match(schema):
        raise InputError(f"schema {schema!r} in the store URL: use lower-case letters, digits and _ (at most 63)")
    size = given.get("pool_size", str(POOL_SIZE))
    if not re.fullmatch(r"[0-9]{1,9}", size) or not 1 <= int(size) <= POOL_SIZE_MAX:
        raise InputError(
            f"pool_size {size!r} in the store URL: give the most connections the store may keep, a whole number "
            f"from 1 to {POOL_SIZE_MAX} (default {POOL_SIZE})"
        )
    # %20, not "+", for a space: libpq reads "+" as itself (options=-c%20name%3Dvalue would break)
    rest = urlencode([(k, v) for k, v in query if k not in OWN_PARAMETERS], quote_via=quote)
    return StoreURL(urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema, int(size))


def catalog_label(url: str) -> str:
    """A catalog's name in the API: its schema when the URL names one, else its database's name."""
    conninfo, schema, _ = split_url(url)
    if "schema=" in url:
        return schema
    return urlsplit(conninfo).path.strip("/") or schema


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _database_error(exc: Exception, url: str, what: str, wait: float = POOL_TIMEOUT) -> VestisError:
    """A psycopg error met during ``what`` (a query, a write) as the error vestis shows: the server out of
    reach or the connection lost is an :class:`UnavailableError` (trying again later can succeed)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return UnavailableError(
            f"{_shown(url)}: no working connection to the database within {wait:g} s for {what} "
            "(is the server running and reachable?); try again"
        )
    if isinstance(exc, psycopg.OperationalError):
        after = "the unfinished write was not committed: run it again" if what == "a write" else "try again"
        return UnavailableError(f"{_shown(url)}: the database connection failed during {what} ({_first_line(exc)}); "
                                f"{after}")  # fmt: skip
    return VestisError(f"{_shown(url)}: {what} failed in the database: {_first_line(exc)}")


def _configure(schema: str):
    """What every new connection is set up with: pgvector's types, and the catalog's schema first in its path."""

    def configure(con) -> None:
        from pgvector.psycopg import register_vector

        register_vector(con)
        con.execute("SELECT set_config('search_path', %s || ', ' || current_setting('search_path'), false)",
                    [f'"{schema}"'])  # fmt: skip

    return configure


_TSV = (
    "setweight(to_tsvector('english', coalesce(kw_title, title)), 'A') || "
    "setweight(to_tsvector('english', coalesce(kw_body, body)), 'B')"
)

_WORDS_TABLE = "CREATE TABLE words (rid bigint PRIMARY KEY REFERENCES items ON DELETE CASCADE, tsv tsvector NOT NULL)"
_WORDS_INDEX = "CREATE INDEX words_tsv ON words USING gin (tsv)"

#: Schema changes, by the version they lead to (version 1 is :func:`_ddl` as it was; a new catalog gets all).
MIGRATIONS: dict[int, list[str]] = {
    2: ["CREATE TABLE reports (n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, report jsonb NOT NULL, "
        "at timestamptz NOT NULL DEFAULT now())"],
    # keyword text prepared by vestis.index.words (filled in by _fill_keyword_text)
    3: ["ALTER TABLE items ADD COLUMN IF NOT EXISTS kw_title text, ADD COLUMN IF NOT EXISTS kw_body text",
        "ALTER TABLE items DROP COLUMN IF EXISTS tsv",
        f"ALTER TABLE items ADD COLUMN tsv tsvector GENERATED ALWAYS AS ({_TSV}) STORED",
        "CREATE INDEX items_tsv ON items USING gin (tsv)"],
    # Vectors in the row, not in the TOAST table: a 512-d vector (2 KB) made a row pass PostgreSQL's 2 KB
    # threshold, so it was stored out of line and every exact scan and re-rank fetched it from there (an
    # exact filtered scan of 2,000 rows at 200k x 512: 25 ms, 5.2 ms in the row). Rows that fit a page stay
    # whole; a larger one still moves its other columns out first, and the vector only as a last resort.
    # Rows written before keep their layout until they are written again.
    4: ["ALTER TABLE items ALTER COLUMN vec SET STORAGE MAIN", "ALTER TABLE items SET (toast_tuple_target = 8160)"],
    # The tsvector in a narrow table of its own: ranking a word that 125k of 1M items hold read all their
    # 2 KB rows (schema 4: 270 ms with the table in memory, 700 ms without), 40 ms in this table.
    5: [_WORDS_TABLE, "INSERT INTO words SELECT rid, tsv FROM items", _WORDS_INDEX, "ALTER TABLE items DROP COLUMN tsv",
        "ANALYZE words"],
}  # fmt: skip


def _fill_keyword_text(con) -> None:
    """``kw_title`` / ``kw_body`` of the items whose text is not ASCII (the others' keyword text is themselves)."""
    rows = con.execute(
        "SELECT rid, title, body FROM items WHERE octet_length(title) <> char_length(title) "
        "OR octet_length(body) <> char_length(body)"
    ).fetchall()
    with con.cursor() as cur:
        cur.executemany("UPDATE items SET kw_title = %s, kw_body = %s WHERE rid = %s",
                        [(stored_keyword_text(t), stored_keyword_text(b), rid) for rid, t, b in rows])  # fmt: skip


def _ddl(dim: int) -> list[str]:
    dim = int(dim)
    return [
        "CREATE TABLE schema_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE info (key text PRIMARY KEY, value jsonb NOT NULL)",
        f"""CREATE TABLE items (
            rid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            id_json jsonb NOT NULL,
            content_hash text NOT NULL,
            image_hash text,
            doc json NOT NULL,
            meta jsonb GENERATED ALWAYS AS (doc::jsonb) STORED,
            title text NOT NULL DEFAULT '',
            body text NOT NULL DEFAULT '',
            image_error text,
            image_ref text,
            vec vector({dim}) NOT NULL,
            img_vec vector({dim}),
            txt_vec vector({dim}),
            kw_title text,
            kw_body text
        )""",
        "CREATE TABLE thumbs (rid bigint PRIMARY KEY REFERENCES items ON DELETE CASCADE, data bytea NOT NULL)",
        *MIGRATIONS[2],
        *MIGRATIONS[4],
        "CREATE INDEX items_image_hash ON items (image_hash)",
        _WORDS_TABLE,
        _WORDS_INDEX,
        # An id as JSON text, for equality in filters (ids compare as text: 15970 and '15970' name one item).
        "CREATE FUNCTION vestis_id(t text) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "AS $$ SELECT to_jsonb(t) $$",
        "CREATE INDEX items_id_text ON items ((vestis_id(id)))",
        # A field's value as the filter language sees it: JSON null is SQL NULL, booleans are 1/0 (as SQLite's
        # json_extract gives them to the embedded store).
        """CREATE FUNCTION vestis_f(m jsonb, k text) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT CASE jsonb_typeof(m -> k) WHEN 'null' THEN NULL
                   WHEN 'boolean' THEN to_jsonb((m -> k)::boolean::integer) ELSE m -> k END $$""",
        # LIKE on a field: its text (numbers as written), ignoring case; no escape character, as in SQLite.
        """CREATE FUNCTION vestis_like(a jsonb, b jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT lower(CASE jsonb_typeof(a) WHEN 'string' THEN a #>> '{}' ELSE a::text END)
                   LIKE lower(b #>> '{}') ESCAPE '' $$""",
        "CREATE OPERATOR ~~ (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = vestis_like)",
    ]


def _jsonb(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _prepare_filter(where: Filter) -> Filter:
    """The filter in the form the JSONB compilation needs: ids compared as text (``id = 15970`` finds item
    '15970', as in the embedded store) and a bare field (``WHERE onSale``) spelled out as its test."""

    def is_id(n: exp.Expression) -> bool:
        while isinstance(n, exp.Paren):
            n = n.this
        return isinstance(n, exp.Column) and n.name == "id"

    def as_text(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Literal) and not n.is_string:
            return exp.Literal.string(str(n.this))
        return n

    def fix(n: exp.Expression) -> exp.Expression:
        if isinstance(n, (exp.EQ, exp.NEQ)) and (is_id(n.this) or is_id(n.expression)):
            return type(n)(this=as_text(n.this), expression=as_text(n.expression))
        if isinstance(n, exp.In) and is_id(n.this):
            return exp.In(this=n.this.copy(), expressions=[as_text(v) for v in n.expressions])
        return n

    def truthy(col: exp.Column) -> exp.Expression:
        present = exp.Not(this=exp.Is(this=col.copy(), expression=exp.Null()))
        empty = exp.In(this=col.copy(), expressions=[exp.Literal.string(""), exp.Literal.number(0)])
        return exp.Paren(this=exp.and_(present, exp.Not(this=empty)))

    def bare(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column):
            return truthy(n)
        if isinstance(n, exp.Paren):
            return exp.Paren(this=bare(n.this))
        if isinstance(n, exp.Not):
            return exp.Not(this=bare(n.this))
        if isinstance(n, (exp.And, exp.Or)):
            return type(n)(this=bare(n.this), expression=bare(n.expression))
        return n

    return Filter(where.text, bare(where.node.copy().transform(fix)))


def _field_sql(name: str) -> tuple[str, list]:
    if name == "id":
        return "vestis_id(items.id)", []
    return "vestis_f(items.meta, %s)", [name]


def _ordered_field_sql(name: str) -> tuple[str, list]:
    return ("items.id_json", []) if name == "id" else _field_sql(name)


class PostgresStore(BaseStore):
    """A catalog in a PostgreSQL database with pgvector (see the module docstring)."""

    _PARAM = "%s"
    _ORDER = "rid"

    def __init__(self, url: str, pool, check: _IdleCheck, schema: str, info: StoreInfo, *, writable: bool) -> None:
        super().__init__(info, writable=writable)
        self.url = url
        self.schema = schema
        self._pool = pool  # psycopg_pool.ConnectionPool: readers in several threads at once
        self._check = check  # the pool's check, told when a connection goes back
        self._writer_con = None  # the connection holding the write lock, while writer() is held
        self._writer_thread: int | None = None
        self._values_cache: dict[tuple[int, str], list] = {}
        self._hnsw: bool | None = None

    # -------------------------------------------------------------------- open/create

    @staticmethod
    def _connect(url: str):
        """One connection, for opening the catalog: a clear error when the server cannot be reached or lacks
        pgvector (the pool's own connections, made later in the background, would only time out)."""
        try:
            import pgvector.psycopg  # noqa: F401
            import psycopg
        except ImportError:
            raise VestisError(
                "a postgresql:// store needs psycopg and pgvector: pip install 'vestis[postgres]'"
            ) from None
        conninfo, schema, _ = split_url(url)
        try:
            con = psycopg.connect(conninfo, **_connect_kwargs(schema))
        except psycopg.Error as exc:
            raise UnavailableError(f"cannot connect to {_shown(url)}: {_first_line(exc)}") from None
        try:
            if con.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                try:
                    con.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.Error as exc:
                    raise VestisError(
                        f"{_shown(url)}: the pgvector extension is not installed and cannot be created "
                        f"({_first_line(exc)}); ask the database's owner to CREATE EXTENSION vector"
                    ) from None
            _configure(schema)(con)
        except BaseException:
            con.close()
            raise
        return con, schema

    @staticmethod
    def _open_pool(url: str, check: _IdleCheck):
        """The pool the store's reads and writes take their connections from: one idle for a while is checked
        before it is handed out (one lost since, to a restart or a dropped link, is replaced by a new one)."""
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise VestisError("a postgresql:// store needs psycopg-pool: pip install 'vestis[postgres]'") from None
        conninfo, schema, size = split_url(url)
        pool = ConnectionPool(
            conninfo, kwargs=_connect_kwargs(schema), min_size=1, max_size=size, open=False,
            configure=_configure(schema), check=check, timeout=POOL_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT, name=f"vestis:{schema}",
        )  # fmt: skip
        try:
            pool.open(wait=True, timeout=POOL_TIMEOUT)  # its first connection ready: one caller at a time uses only it
        except psycopg.Error as exc:
            raise _database_error(exc, url, "opening the catalog") from None
        return pool

    @staticmethod
    def _version(con) -> int | None:
        row = con.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not row[0]:
            return None
        got = con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        return int(got or 0)

    @classmethod
    def _migrate(cls, con, url: str) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`; refuse one written by a newer vestis."""
        version = cls._version(con)
        if version is None:
            raise InputError(f"{_shown(url)} holds no vestis catalog; build one with `vestis index build`")
        if version > SCHEMA_VERSION:
            raise VestisError(
                f"{_shown(url)}: the catalog's schema is version {version}, newer than this vestis understands "
                f"({SCHEMA_VERSION}); upgrade vestis to use it"
            )
        if version < SCHEMA_VERSION:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(hashtextextended('vestis-migrate', 0))")
                version = cls._version(con)
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for stmt in MIGRATIONS.get(target, []):
                        con.execute(stmt)
                    if target == 3:
                        _fill_keyword_text(con)
                    con.execute("INSERT INTO schema_version (version) VALUES (%s)", [target])

    @staticmethod
    def _read_info(con) -> StoreInfo:
        info = dict(con.execute("SELECT key, value FROM info").fetchall())
        return StoreInfo(model=info["model"], fingerprint=info["fingerprint"], dim=int(info["dim"]),
                         settings=info["settings"])  # fmt: skip

    @classmethod
    def exists(cls, url: str) -> bool:
        con, _ = cls._connect(url)
        try:
            return cls._version(con) is not None
        finally:
            con.close()

    @classmethod
    def _opened(cls, url: str, setup) -> PostgresStore:
        """``setup(con, schema)`` on a first connection (the catalog's checks), then the store over a pool;
        the database's errors on the way as :class:`VestisError`."""
        import psycopg

        con, schema = cls._connect(url)
        try:
            info, writable = setup(con, schema)
        except psycopg.Error as exc:
            raise _database_error(exc, url, "opening the catalog") from None
        finally:
            con.close()
        check = _IdleCheck()
        return cls(url, cls._open_pool(url, check), check, schema, info, writable=writable)

    @classmethod
    def create(cls, url: str, info: StoreInfo) -> PostgresStore:
        """Create the catalog's schema, or open it when it was built with the same model."""

        def setup(con, schema):
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"vestis-create:{schema}"])
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                created = cls._version(con) is None
                if created:
                    for stmt in _ddl(info.dim):
                        con.execute(stmt)
                    con.execute("INSERT INTO schema_version (version) VALUES (%s)", [SCHEMA_VERSION])
                    values = {"model": info.model, "fingerprint": info.fingerprint, "dim": info.dim,
                              "settings": info.settings, "fields": [], "generation": 0}  # fmt: skip
                    for key, value in values.items():
                        con.execute("INSERT INTO info VALUES (%s, %s)", [key, _jsonb(value)])
            if created:
                return info, True
            cls._migrate(con, url)
            existing = cls._read_info(con)
            if existing.fingerprint != info.fingerprint or existing.dim != info.dim:
                raise InputError(
                    f"{_shown(url)} was built with model {existing.model!r} (dim {existing.dim}); it cannot take "
                    f"vectors from {info.model!r} (dim {info.dim}). Use another database or ?schema=..."
                )
            return existing, True

        return cls._opened(url, setup)

    @classmethod
    def open(cls, url: str, *, writable: bool = False) -> PostgresStore:
        def setup(con, schema):
            cls._migrate(con, url)
            return cls._read_info(con), writable

        return cls._opened(url, setup)

    def close(self) -> None:
        with self._lock:
            self._pool.close()

    @property
    def location(self) -> str:
        return _shown(self.url)

    # ------------------------------------------------------------------- connections

    def _read(self, fn):
        """``fn(con)`` on a working connection: the writer's own in the thread holding :meth:`writer` (a write
        sees what it wrote), else one from the pool. A connection found lost while ``fn`` ran (the server
        restarted, the backend was terminated, the link dropped) is replaced and ``fn`` run again, reads being
        idempotent, on each of the pool's connections at most; what still fails is a :class:`VestisError`
        naming the database."""
        import psycopg

        if self._writer_thread == threading.get_ident():
            with self._failures("a query"):
                return fn(self._writer_con)
        tries = self._pool.max_size + 1
        for attempt in range(1, tries + 1):
            con = None
            try:
                with self._pool.connection() as con:
                    got = fn(con)
                    self._check.used(con)
                    return got
            except psycopg.Error as exc:
                if attempt < tries and con is not None and con.broken:
                    continue
                raise _database_error(exc, self.url, "a query", self._pool.timeout) from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """The database's errors inside the block as :class:`VestisError` (``what``: a query, a write)."""
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise _database_error(exc, self.url, what) from None

    # ------------------------------------------------------------------------- basics

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._read(lambda con: con.execute(sql, params).fetchall())

    def _info_value(self, key: str, default=None):
        rows = self._rows("SELECT value FROM info WHERE key = %s", [key])
        return rows[0][0] if rows else default

    def _set_info(self, key: str, value) -> None:
        with self._failures("a write"):
            self._writer_con.execute("UPDATE info SET value = %s WHERE key = %s", [_jsonb(value), key])

    # ------------------------------------------------------------------------- writes

    def _lock_for_writing(self) -> bool:
        """A session advisory lock on a connection of the writer's own, which every write inside
        :meth:`writer` uses. Should that connection be lost, the lock goes with it and the next write
        fails (nothing half-written: one batch is one transaction)."""
        con = self._take_connection()
        try:
            with self._failures("a write"):
                got = con.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [self._write_key]).fetchone()
        except BaseException:
            self._pool.putconn(con)
            raise
        if not got[0]:
            self._pool.putconn(con)
            return False
        self._writer_con, self._writer_thread = con, threading.get_ident()
        return True

    def _unlock_after_writing(self) -> None:
        con, self._writer_con, self._writer_thread = self._writer_con, None, None
        if not con.broken:
            with contextlib.suppress(Exception):
                con.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [self._write_key])
                self._check.used(con)
        self._pool.putconn(con)

    @property
    def _write_key(self) -> str:
        return f"vestis-write:{self.schema}"

    def _take_connection(self):
        """A connection for the writer, checked however recently it was used: a write is not run again."""
        import psycopg
        from psycopg_pool import ConnectionPool

        tries = self._pool.max_size + 1
        for attempt in range(1, tries + 1):
            try:
                con = self._pool.getconn()
            except psycopg.Error as exc:  # PoolTimeout among them
                raise _database_error(exc, self.url, "a write", self._pool.timeout) from None
            try:
                ConnectionPool.check_connection(con)
                return con
            except psycopg.Error as exc:
                self._pool.putconn(con)  # lost: the pool replaces it
                if attempt == tries:
                    raise _database_error(exc, self.url, "a write") from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _transaction(self):
        """One write: a transaction on the writer's connection that bumps ``generation`` as it commits."""
        con = self._writer_con
        with self._failures("a write"), con.transaction():
            yield con
            con.execute("UPDATE info SET value = to_jsonb(value::bigint + 1) WHERE key = 'generation'")

    def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self._check_vectors(records)
        records = list({r.id: r for r in records}.values())  # the last version of an id given twice
        from psycopg.types.json import Json, Jsonb

        dumps = functools.partial(json.dumps, default=str, allow_nan=False)
        with self.writer(), self._lock, self._transaction() as con:
            con.execute(
                "CREATE TEMP TABLE stage (LIKE items INCLUDING DEFAULTS, thumb bytea) ON COMMIT DROP; "
                "ALTER TABLE stage DROP COLUMN rid, DROP COLUMN meta"
            )
            cols = ("id, id_json, content_hash, image_hash, doc, title, body, image_error, image_ref, vec, img_vec, "
                    "txt_vec, thumb, kw_title, kw_body")  # fmt: skip
            with con.cursor() as cur, cur.copy(f"COPY stage ({cols}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "jsonb", "text", "text", "json", "text", "text", "text", "text",
                                "vector", "vector", "vector", "bytea", "text", "text"])  # fmt: skip
                for r in records:
                    copy.write_row((
                        r.id, Jsonb(r.id if r.id_value is None else r.id_value, dumps), r.content_hash, r.image_hash,
                        Json(r.metadata, dumps), r.title, r.body, r.image_error,
                        r.image_ref, _f32(r.vector), _f32(r.image_vector), _f32(r.text_vector), r.thumbnail or None,
                        stored_keyword_text(r.title), stored_keyword_text(r.body),
                    ))  # fmt: skip
            con.execute("DELETE FROM items WHERE id IN (SELECT id FROM stage)")
            con.execute(
                "WITH new AS (INSERT INTO items (id, id_json, content_hash, image_hash, doc, title, body, image_error, "
                "image_ref, vec, img_vec, txt_vec, kw_title, kw_body) SELECT id, id_json, content_hash, image_hash, "
                "doc, title, body, image_error, image_ref, vec, img_vec, txt_vec, kw_title, kw_body FROM stage "
                f"RETURNING rid, id, title, body, kw_title, kw_body), words AS (INSERT INTO words SELECT rid, {_TSV} "
                "FROM new) INSERT INTO thumbs SELECT new.rid, stage.thumb FROM new JOIN stage USING (id) "
                "WHERE stage.thumb IS NOT NULL"
            )
            known = set(self._info_value("fields", []))
            new_fields = sorted({k for r in records for k in r.metadata} - known)
            if new_fields:
                self._set_info("fields", sorted(known | set(new_fields)))
                from psycopg import sql

                for f in new_fields:  # expression indexes: filters on any field use an index, not a scan
                    name = "meta_" + hashlib.blake2b(f.encode(), digest_size=6).hexdigest()
                    con.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON items ((vestis_f(meta, {})))").format(
                        sql.Identifier(name), sql.Literal(f)))  # fmt: skip
            if self._write_depth == 1:  # inside a longer write (a build), refresh() builds it once, at the end
                self._ensure_hnsw(con)

    def delete(self, ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(str(i) for i in ids))
        if not ids:
            return []
        with self.writer(), self._lock, self._transaction() as con:
            rows = con.execute("DELETE FROM items WHERE id = ANY(%s) RETURNING id", [ids]).fetchall()
        gone = {r[0] for r in rows}
        return [i for i in ids if i in gone]

    # --------------------------------------------------------------------- the HNSW index

    def _index_expr(self) -> tuple[str, str]:
        """(indexed expression, its operator class): halfvec casts for float16/int8, else the vectors."""
        if self.ann_config.quantizer == "float32":
            return "vec", "vector_ip_ops"
        return f"(vec::halfvec({int(self.info.dim)}))", "halfvec_ip_ops"

    def _has_hnsw(self, con) -> bool:
        if not self._hnsw:  # once there, it stays (until the catalog is rebuilt from nothing)
            self._hnsw = bool(con.execute("SELECT to_regclass('items_hnsw') IS NOT NULL").fetchone()[0])
        return self._hnsw

    def _ensure_hnsw(self, con) -> None:
        """Build the HNSW index once the catalog reaches the ANN threshold (inside the writer's transaction).

        A build holds the writer for all its batches and builds the index after the last one: one bulk
        build is several times faster than inserting into the graph row by row."""
        if self._has_hnsw(con):
            return
        cfg = self.ann_config
        n = con.execute("SELECT count(*) FROM items").fetchone()[0]
        if n < cfg.threshold:
            return
        expr, opclass = self._index_expr()
        need = min(hnsw_build_bytes(n, self.info.dim, cfg.quantizer, cfg.m), HNSW_BUILD_MEMORY_MAX)
        have = con.execute("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))").fetchone()[0]
        if need > have:  # raised for this transaction only; never lowered below what the server was given
            _set_local(con, {"maintenance_work_mem": f"{need // 1024}kB"})
        con.add_notice_handler(_log_build_notice)  # "graph no longer fits into maintenance_work_mem": say so
        try:
            con.execute(
                f"CREATE INDEX items_hnsw ON items USING hnsw ({expr} {opclass}) "
                f"WITH (m = {int(cfg.m)}, ef_construction = {int(cfg.ef_construction)})"
            )
        finally:
            con.remove_notice_handler(_log_build_notice)

    def _drop_graph(self) -> None:
        with self._transaction() as con:
            con.execute("DROP INDEX IF EXISTS items_hnsw")
        self._hnsw = False

    def refresh(self) -> None:
        """Build the HNSW index now if the catalog has reached the threshold, and gather the planner's
        statistics (writers call this after a build): right after a bulk load autovacuum has not run
        yet, and without statistics the planner guesses a filter's matches (202 of 40k for a field
        matching 10k) and picks slow plans for it."""
        with self.writer(), self._lock, self._failures("a write"), self._writer_con.transaction():
            self._ensure_hnsw(self._writer_con)
            self._writer_con.execute("ANALYZE items, words")

    # -------------------------------------------------------------------------- reads

    def get(self, ids: Sequence[str], *, vectors: bool = False, thumbnails: bool = False) -> dict[str, Record]:
        ids = [str(i) for i in ids]
        cols = (
            "id, id_json, content_hash, image_hash, doc, title, body, image_error, image_ref"
            + (", vec, img_vec, txt_vec" if vectors else "")
            + (", thumbs.data" if thumbnails else "")
        )
        join = " LEFT JOIN thumbs USING (rid)" if thumbnails else ""
        dim = self.info.dim
        out: dict[str, Record] = {}
        rows = self._read(
            lambda con: con.execute(f"SELECT {cols} FROM items{join} WHERE id = ANY(%s)", [ids]).fetchall()
        )
        for r in rows:
            rec = Record(
                id=r[0], vector=np.zeros(dim, np.float32), metadata=r[4], content_hash=r[2], image_hash=r[3],
                title=r[5], body=r[6], image_error=r[7], image_ref=r[8], id_value=r[1],
            )  # fmt: skip
            i = 9
            if vectors:
                rec.vector = _np(r[9])
                rec.image_vector, rec.text_vector = _np(r[10]), _np(r[11])
                i = 12
            if thumbnails:
                rec.thumbnail = None if r[i] is None else bytes(r[i])
            out[rec.id] = rec
        return out

    def image_vectors(self, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, image vectors) of the items whose image could be read, in index order."""
        rows = self._rows("SELECT id, img_vec FROM items WHERE img_vec IS NOT NULL ORDER BY rid")
        if ids is not None:
            want = set(map(str, ids))
            rows = [r for r in rows if r[0] in want]
        vecs = np.stack([_np(r[1]) for r in rows]) if rows else np.zeros((0, self.info.dim), np.float32)
        return [r[0] for r in rows], vecs

    def facets(self, field: str, *, limit: int = 50) -> list[tuple[object, int]]:
        self._check_field(field)
        sql, params = _field_sql(field)
        rows = self._rows(
            f"SELECT v, n FROM (SELECT {sql} AS v, count(*) AS n FROM items GROUP BY 1) c "
            "WHERE v IS NOT NULL AND v <> '\"\"'::jsonb ORDER BY n DESC, v LIMIT %s",
            [*params, limit],
        )
        return [(v, n) for v, n in rows]

    def value_counts(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, list[tuple[object, int]]]:
        """Per field, how often each value (not NULL or ``''``) occurs among the items ``ids``."""
        ids = sorted({str(i) for i in ids})
        out: dict[str, list[tuple[object, int]]] = {}
        for f in fields:
            if f == "id":  # the key names one item each, as in filters
                out[f] = [(i, 1) for i in ids]
                continue
            sql, params = _field_sql(f)
            out[f] = [tuple(r) for r in self._rows(
                f"SELECT v, n FROM (SELECT {sql} AS v, count(*) AS n FROM items WHERE id = ANY(%s) GROUP BY 1) c "
                "WHERE v IS NOT NULL AND v <> '\"\"'::jsonb ORDER BY n DESC, v", [*params, ids],
            )]  # fmt: skip
        return out

    def field_values(self, field: str) -> list[object]:
        """The distinct text values of a metadata field (``[]`` for ``id`` and unknown fields), cached per
        generation: text equality in filters matches their case-folded spellings."""
        return self._read(lambda con: self._values(con, _state(con), field))

    def _values(self, con, state: _State, field: str) -> list[object]:
        if field == "id" or field not in state.fields:
            return []
        key = (state.generation, field)
        if key not in self._values_cache:
            rows = con.execute(
                "SELECT DISTINCT meta ->> %s FROM items WHERE jsonb_typeof(meta -> %s) = 'string'", [field, field]
            ).fetchall()
            if len(self._values_cache) >= 64:
                self._values_cache.pop(next(iter(self._values_cache)))
            self._values_cache[key] = [r[0] for r in rows]
        return self._values_cache[key]

    def _bind(self, sql: str, params: list) -> list:
        """Parameters typed for ``sql``: a field name after ``vestis_f(items.meta, `` is text, the rest JSONB."""
        out, pos = [], 0
        for p in params:
            at = sql.index("%s", pos)
            out.append(p if sql.endswith("vestis_f(items.meta, ", 0, at) else _jsonb(p))
            pos = at + 2
        return out

    def _filter(self, con, where: Filter | None, exclude: Sequence[str]) -> tuple[str, list, _State | None]:
        """SQL over ``items`` for ``where`` (its literals as JSONB parameters, see the module docstring; its
        fields checked against the catalog's) and not the ids in ``exclude``, with its parameters, and the
        catalog's state read for it (None without ``where``)."""
        parts, params, state = [], [], None
        if where is not None:
            state = _state(con)
            where.check_fields([*state.fields, "id"])
            sql, raw = _prepare_filter(where).compile(
                _field_sql, placeholder="%s", values_of=functools.partial(self._values, con, state),
                ordered_sql=_ordered_field_sql,
            )  # fmt: skip
            parts.append(f"({sql})")
            params += self._bind(sql, raw)
        if exclude:
            parts.append("NOT (items.id = ANY(%s))")
            params.append([str(i) for i in exclude])
        return " AND ".join(parts) or "TRUE", params, state

    # ------------------------------------------------------------------- vector search

    def _search(self, vector, k: int, where: Filter | None, exclude: Sequence[str], exact: bool):
        import psycopg

        def run(con) -> list[tuple[str, float]]:
            cond, params, state = self._filter(con, where, exclude)
            try:
                use_index = not exact and self._has_hnsw(con)
                candidates = self._rerank_pool(k)
                if use_index and state is not None:
                    plan = self._plan(con, cond, params, k, candidates, state.items)
                    use_index, candidates = not plan.exact, plan.candidates
                filtered = where is not None or bool(exclude)
                if use_index:
                    hits = self._index_search(con, vector, k, cond, params, candidates, filtered=filtered)
                    if len(hits) == k or not filtered:
                        return hits
                    # fewer than k: the filter matches fewer than thought (or than the scan may visit);
                    # the exact scan finds every match there is
                # the filter's bitmap scans stay; no parallel workers: each is a new process that maps
                # every shared buffer it reads afresh (at 10k matches, 45 ms instead of 27 here)
                rows = _rows_in_transaction(
                    con, {"enable_indexscan": "off", "max_parallel_workers_per_gather": "0"},
                    f"SELECT id, -(vec <#> %s) AS s FROM items WHERE {cond} ORDER BY vec <#> %s, rid LIMIT %s",
                    [vector, *params, vector, k],
                )  # fmt: skip
            except psycopg.errors.DataError as exc:
                raise InputError(f"filter {where.text if where else ''!r} cannot be applied: {exc}") from None
            return [(i, float(s)) for i, s in rows]

        return self._read(run)

    def _plan(self, con, cond: str, params: list, k: int, pool: int, items: float) -> FilteredPlan:
        """:func:`plan_filtered` for the filter ``cond`` over ``items``, by the planner's estimate of its matches.
        An estimate too high costs time, never results: an index scan that comes back short is followed by the
        exact one."""
        plan = con.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM items WHERE {cond}", params).fetchone()[0]
        return plan_filtered(float(plan[0]["Plan"]["Plan Rows"]), items, k, pool, self.ann_config.ef_search)

    def _rerank_pool(self, k: int) -> int:
        """Candidates an unfiltered search asks the index for: ``k``, or more to re-rank in full precision
        (a halfvec index)."""
        half = self.ann_config.quantizer != "float32"
        return min(max(k * RERANK_FACTOR, k + 16), 1000) if half else k

    def _index_search(
        self, con, vector, k: int, cond: str, params: list, pool: int, *, filtered: bool
    ) -> list[tuple[str, float]]:
        """The ``k`` best of the index's first ``pool`` candidates (matching ``cond``), re-ranked exactly."""
        cfg = self.ann_config
        expr, _ = self._index_expr()
        half = expr != "vec"
        # enable_sort off: the index, not a sort of every row. pgvector's cost estimate grows with ef_search,
        # and the planner costs neither a halfvec cast nor a 512-d distance per row, so up to some 50k items
        # it would rather scan and sort the table (at 12k x 512, 90 ms instead of 2 ms). Filtered: the
        # filter's matches would be sorted instead; here there are too many for that (few are scanned
        # exactly, above).
        settings = {"hnsw.ef_search": str(min(max(cfg.ef_search, pool), 1000)), "enable_sort": "off"}
        if filtered:
            settings.update({"hnsw.iterative_scan": "relaxed_order", "hnsw.max_scan_tuples": str(MAX_SCAN_TUPLES)})
        query = f"%s::halfvec({int(self.info.dim)})" if half else "%s"
        rows = _rows_in_transaction(
            con, settings,
            f"SELECT id, s FROM (SELECT id, rid, -(vec <#> %s) AS s FROM items WHERE {cond} "
            f"ORDER BY {expr} <#> {query} LIMIT %s) c ORDER BY s DESC, rid LIMIT %s",
            [vector, *params, vector, pool, k],
        )  # fmt: skip
        return [(i, float(s)) for i, s in rows]

    def keyword_search(self, text: str, k: int, *, where: Filter | None = None) -> list[tuple[str, float]]:
        """Full-text ranking (``ts_rank``; titles weigh twice the other text) of items matching any word
        (:func:`vestis.index.words.query_words`)."""
        words = query_words(text)  # each a bound parameter: no tsquery syntax gets through
        if not words or k <= 0:
            return []
        query = " || ".join(["plainto_tsquery('english', %s)"] * len(words))

        def run(con) -> list[tuple]:
            cond, params, _ = self._filter(con, where, ())
            ranked = (f"SELECT rid, ts_rank('{{0.1, 0.2, 0.5, 1.0}}', tsv, q.q) AS s FROM words, "
                      f"(SELECT {query} AS q) q WHERE tsv @@ q.q")  # fmt: skip
            inner: list = []
            if where is None:  # the best k ranked in the narrow table alone, then their ids
                ranked += " ORDER BY s DESC, rid LIMIT %s"
                inner = [k]
            return con.execute(
                f"SELECT items.id, w.s FROM ({ranked}) w JOIN items USING (rid) WHERE {cond} "
                "ORDER BY w.s DESC, rid LIMIT %s",
                [*words, *inner, *params, k],
            ).fetchall()

        return [(i, float(s)) for i, s in self._read(run)]

    # ------------------------------------------------------------------ build reports

    def save_report(self, report: dict) -> None:
        """A row of ``reports``; the oldest beyond :data:`KEEP_REPORTS` are deleted."""
        with self.writer(), self._lock, self._failures("a write"), self._writer_con.transaction():
            con = self._writer_con
            con.execute("INSERT INTO reports (report) VALUES (%s)", [_jsonb(report)])
            con.execute("DELETE FROM reports WHERE n <= (SELECT max(n) FROM reports) - %s", [KEEP_REPORTS])

    def reports(self, limit: int = 10) -> list[dict]:
        return [r[0] for r in self._rows("SELECT report FROM reports ORDER BY n DESC LIMIT %s", [limit])]

    def check(self) -> dict:
        """Consistency report: every item has a vector and its text indexed, thumbnails belong to items."""

        def run(con):
            counts = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE vec IS NULL), count(*) FILTER (WHERE words.rid IS NULL) "
                "FROM items LEFT JOIN words USING (rid)"
            ).fetchone()
            orphans = con.execute(
                "SELECT count(*) FROM thumbs LEFT JOIN items USING (rid) WHERE items.rid IS NULL"
            ).fetchone()[0]
            invalid = con.execute(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "WHERE c.oid = 'items'::regclass AND NOT i.indisvalid"
            ).fetchone()[0]
            return (*counts, orphans, invalid, self._has_hnsw(con))

        n_items, no_vec, no_words, orphans, invalid, hnsw = self._read(run)
        return {
            "items": n_items, "vectors": n_items - no_vec, "items_without_vector": no_vec,
            "items_without_words": no_words, "orphan_thumbnails": orphans, "invalid_indexes": invalid, "hnsw": hnsw,
            "ok": no_vec == 0 and no_words == 0 and orphans == 0 and invalid == 0,
        }  # fmt: skip


def _f32(v: np.ndarray | None) -> np.ndarray | None:
    return None if v is None else np.ascontiguousarray(v, dtype=np.float32)


def _np(v) -> np.ndarray | None:
    if v is None:
        return None
    return np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32).copy()
