"""What every route shares: the :class:`ServerState` of one app (reached through the request,
never a global), :class:`ApiError`, and running library calls in worker threads."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request

from vestis.serve.batching import BatchedEncoder, MicroBatcher
from vestis.serve.config import ServeConfig
from vestis.serve.media import PixelBudget


class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = "invalid_request",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


@dataclass
class ServerState:
    """The loaded model, its batchers and the open catalogs (set up by the app's lifespan)."""

    config: ServeConfig
    encoder: object | None = None  # vestis.models.base.Encoder
    batched: BatchedEncoder | None = None  # the encoder through the batchers, for library code in threads
    texts: MicroBatcher | None = None
    images: MicroBatcher | None = None
    catalogs: dict = field(default_factory=dict)  # name -> vestis.search.Catalog
    paths: dict[str, str | Path] = field(default_factory=dict)  # name -> index directory or postgresql:// URL
    write_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    labels: object | None = None  # vestis.tag.LabelCache over ``batched``
    metrics: object | None = None  # vestis.serve.metrics.Metrics
    pixels: PixelBudget | None = None  # pixels being decoded at once, across requests
    explain_slots: asyncio.Semaphore | None = None  # explanations computed at once (config.explain_concurrency)
    ready: bool = False
    started: float = field(default_factory=time.time)

    def require_encoder(self):
        """The encoder, or 503 while the server starts or stops."""
        if not self.ready or self.encoder is None:
            raise ApiError(503, "the server is starting or stopping", "server_error", "not_ready")
        return self.encoder

    def catalog(self, name: str | None, grant=None):
        """``(name, Catalog)``; ``None`` is the first catalog. 404 when there is no such catalog, 403 when
        the request's key (its :class:`~vestis.serve.security.Grant`) may not use it."""
        self.require_encoder()
        if not self.catalogs:
            raise ApiError(404, "this server has no catalog; start it with --catalog DIR", code="no_catalog")
        if name is None:
            name = next(iter(self.catalogs))
        cat = self.catalogs.get(name)
        if cat is None:
            raise ApiError(404, f"no catalog {name!r}; the catalogs are: {', '.join(self.catalogs)}",
                           code="catalog_not_found", param="catalog")  # fmt: skip
        if grant is not None and not grant.allows_catalog(name):
            raise ApiError(403, f"this API key may not use catalog {name!r} (it may {grant.describe()})",
                           "permission_error", "catalog_not_allowed", param="catalog")  # fmt: skip
        return name, cat


def grant_of(request: Request):
    """The request's key's :class:`~vestis.serve.security.Grant` (None on a server without keys)."""
    return request.scope.get("state", {}).get("grant")


def get_state(request: Request) -> ServerState:
    return request.app.state.vestis


#: A route parameter that receives the app's state.
State = Annotated[ServerState, Depends(get_state)]


def in_thread(fn, *args, abandon: bool = True):
    """Run ``fn(*args)`` in a worker thread; a read can be abandoned when the request times out."""
    return anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=abandon)


def catalog_name(path: str | Path) -> str:
    """A catalog's name in URLs: its folder's name (a PostgreSQL catalog's: its schema's or database's)."""
    from vestis.index.stores import store_name

    return store_name(path)
