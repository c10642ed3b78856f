"""Which store a location names: an index directory (the embedded default) or ``postgresql://...``.

Every front end and library function that takes an index takes either; they open it here.
"""

from __future__ import annotations

from pathlib import Path

from vestis.index.store import StoreInfo


def is_store_url(location: object) -> bool:
    """True for ``postgresql://`` and ``postgres://`` URLs (the shared PostgreSQL store)."""
    from vestis.index.postgres import is_postgres_url

    return is_postgres_url(str(location)) if isinstance(location, (str, Path)) else False


def _url(location) -> str:
    return str(location)


def open_store(location: str | Path, *, writable: bool = False):
    """The store at ``location`` (an error naming it when there is none)."""
    if is_store_url(location):
        from vestis.index.postgres import PostgresStore

        return PostgresStore.open(_url(location), writable=writable)
    from vestis.index.local import LocalStore

    return LocalStore.open(location, writable=writable)


def create_store(location: str | Path, info: StoreInfo):
    """A new empty store at ``location``, or the one there when it holds vectors of the same model."""
    if is_store_url(location):
        from vestis.index.postgres import PostgresStore

        return PostgresStore.create(_url(location), info)
    from vestis.index.local import LocalStore

    return LocalStore.create(location, info)


def store_exists(location: str | Path) -> bool:
    if is_store_url(location):
        from vestis.index.postgres import PostgresStore

        return PostgresStore.exists(_url(location))
    from vestis.index.local import is_index_dir

    return is_index_dir(location)


def store_name(location: str | Path) -> str:
    """A catalog's name in URLs: an index folder's name, a PostgreSQL catalog's schema or database."""
    if is_store_url(location):
        from vestis.index.postgres import catalog_label

        return catalog_label(_url(location))
    return Path(location).resolve().name


def describe(store, *, facets=(), check: bool = False) -> dict:
    """What a catalog holds, as ``vestis index info`` and ``GET /v1/catalogs/{name}`` both report
    it: model, size, fields, generation, settings and the last build's report (None before any);
    with ``check`` the store's consistency check, with ``facets`` the value counts of those fields."""
    info = {
        "model": store.info.model, "dim": store.info.dim, "items": store.count(), "fields": store.fields(),
        "generation": store.generation(), "settings": store.info.settings,
        "last_build": next(iter(store.reports(1)), None),
    }  # fmt: skip
    if check:
        info["check"] = store.check()
    if facets:
        info["facets"] = {f: store.facets(f) for f in facets}
    return info
