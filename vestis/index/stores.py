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
