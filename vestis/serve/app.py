"""The HTTP service: ``create_app(config)`` builds a FastAPI app with no global state.

Routes (all JSON; errors OpenAI-shaped, see :mod:`vestis.serve.errors`), one router per concern
under :mod:`vestis.serve.routes`:

* ``embeddings``: ``POST /v1/embeddings``, ``GET /v1/models`` — OpenAI's embeddings API, with images.
* ``search``: ``POST /v1/search`` and ``POST /v1/recommend`` (JSON, or multipart with an image file),
  ``GET /v1/steers``.
* ``explain``: ``POST /v1/explain`` (why an item matches a query).
* ``classify``: ``POST /v1/classify``, ``GET /v1/taxonomies``.
* ``catalogs``: ``/v1/catalogs`` list, info, facets, items, thumbnails, writes and deletes.
* ``pages``: ``GET /`` the web page, ``/docs`` and ``/redoc`` (served offline), ``/openapi.json``.
* ``ops``: ``/healthz``, ``/readyz``, ``/v1/stats``, ``/metrics`` (Prometheus).

The routes are thin: each reads its request, calls the library (:mod:`vestis.search`,
:mod:`vestis.tag`, :mod:`vestis.index.build`) and shapes the answer. They share a
:class:`~vestis.serve.state.ServerState`, set up here at start-up. The encoder is called through
two :class:`~vestis.serve.batching.MicroBatcher` s (texts, images); library code that embeds
inside a worker thread (``Catalog.search``, label embeddings) reaches them through a
:class:`~vestis.serve.batching.BatchedEncoder`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import anyio.to_thread
import numpy as np
from fastapi import FastAPI

from vestis import __version__
from vestis.errors import InputError
from vestis.serve import schemas as S
from vestis.serve.batching import BatchedEncoder, MicroBatcher
from vestis.serve.config import MiB, ServeConfig
from vestis.serve.errors import install_error_handlers
from vestis.serve.media import PixelBudget
from vestis.serve.metrics import Metrics, MetricsMiddleware
from vestis.serve.routes import catalogs, classify, embeddings, explain, ops, pages, search
from vestis.serve.security import GuardMiddleware, GuardSettings, KeyStore, RateLimiter, RouteLimit
from vestis.serve.state import ServerState, catalog_name

__all__ = ["MiB", "ServeConfig", "create_app", "prepare"]
log = logging.getLogger("vestis.serve")


def prepare(config: ServeConfig):
    """Check the catalogs and load the one encoder that searches them all (or ``config.model``).

    Fails with a :class:`~vestis.errors.VestisError` naming the problem: a folder that is not an
    index, two catalogs with one name, a model that does not match a catalog.
    """
    from vestis.search import catalogs_encoder

    names = [catalog_name(p) for p in config.catalogs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"two catalogs are named {twice[0]!r}; catalog names are their folder names")
    return catalogs_encoder(config.catalogs, config.model, threads=config.threads,
                            max_image_pixels=config.max_image_pixels)  # fmt: skip


async def _start(state: ServerState) -> None:
    """Load the encoder (unless given), start the batchers and open the catalogs."""
    from vestis.search import Catalog
    from vestis.tag import LabelCache

    config = state.config
    if state.encoder is None:
        state.encoder = await anyio.to_thread.run_sync(prepare, config)
    enc = state.encoder

    def encode_texts(items):
        # token counts (usage) in the same thread: a fast tokenizer must not be called from two threads
        # at once (one call's padding settings leak into the other's)
        return enc.encode_texts(items), np.asarray(enc.tokenizer.lengths(items), dtype=np.int64)

    common = dict(max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, max_queue=config.max_queue,
                  enabled=config.batching)  # fmt: skip
    state.texts = MicroBatcher(encode_texts, name="texts", **common)
    state.images = MicroBatcher(lambda items: enc.encode_images(items), name="images", **common)
    await state.texts.start()
    await state.images.start()
    state.batched = BatchedEncoder(enc, state.texts, state.images, timeout=config.request_timeout)
    state.labels = LabelCache(state.batched)
    state.explain_slots = asyncio.Semaphore(config.explain_concurrency)
    for path in config.catalogs:
        name = catalog_name(path)
        state.catalogs[name] = Catalog.open(path, encoder=state.batched)
        state.paths[name] = path
        state.write_locks[name] = asyncio.Lock()
    await anyio.to_thread.run_sync(_warm, state)
    state.ready = True
    log.info("vestis serve: model %s, catalogs %s", enc.name, ", ".join(state.catalogs) or "none")


def _warm(state: ServerState) -> None:
    """What the first requests would otherwise wait for: the text tower's first run (the runtime
    sets up its kernels then) and each catalog's vectors. The image tower stays loaded on first use."""
    steps = [("the text tower", lambda: state.encoder.encode_texts(["warm up"]))]
    steps += [(f"catalog {name!r}", cat.store.warm) for name, cat in state.catalogs.items()]
    for what, step in steps:
        try:
            step()
        except Exception:  # only an optimisation: a request meets the same failure and answers it properly
            log.warning("vestis serve: warming up %s failed; the first request will do it", what, exc_info=True)


async def _stop(state: ServerState) -> None:
    state.ready = False
    for batcher in (state.texts, state.images):
        if batcher is not None:
            await batcher.stop()
    for cat in state.catalogs.values():
        cat.close()
    state.catalogs.clear()


#: The errors any route may answer with (the guard's too: keys, scopes, sizes, content types, rate, time),
#: all in OpenAI's shape; see docs/serve.md's table.
ERROR_RESPONSES = {
    status: {"model": S.ErrorResponse, "description": what}
    for status, what in (
        (400, "Invalid request: bad JSON, wrong types or values, unreadable images"),
        (401, "Missing or wrong API key"),
        (403, "The key's scopes do not allow it, or a non-loopback client of a server without keys"),
        (404, "No such model, catalog, item or route"),
        (405, "Method not allowed (the Allow header lists the methods)"),
        (409, "The catalog is being written by another process (Retry-After)"),
        (413, "Body or image over the server's limit"),
        (415, "The body is not JSON (or a multipart form where files are accepted)"),
        (429, "Over the key's rate limit (Retry-After)"),
        (503, "Starting, stopping or overloaded (Retry-After)"),
        (504, "Not answered within the server's timeout"),
    )
}


def _openapi(app: FastAPI) -> dict:
    """FastAPI's spec without its 422 answers: validation errors are 400s here, as OpenAI's API has them."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema


def create_app(config: ServeConfig, *, encoder=None) -> FastAPI:
    """The FastAPI app for ``config``. ``encoder``: an already loaded one (else loaded at start-up)."""
    state = ServerState(config=config, encoder=encoder, pixels=PixelBudget(config.max_image_pixels))
    state.metrics = Metrics(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await _start(state)
            yield
        finally:
            await _stop(state)

    app = FastAPI(
        title="vestis",
        version=__version__,
        summary="Fashion image and text embeddings (OpenAI-compatible), catalog search and zero-shot tagging.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    app.openapi = lambda: _openapi(app)
    app.state.vestis = state
    guard = GuardSettings(
        keys=KeyStore(config.key_hashes, config.api_keys_file),
        limiter=RateLimiter(config.rate_limit, config.rate_burst),
        route_limits=(RouteLimit("POST", "/v1/explain", RateLimiter(config.explain_rate, config.explain_burst)),),
        max_body_bytes=config.max_body_bytes,
        timeout=config.request_timeout,
    )
    app.add_middleware(GuardMiddleware, settings=guard)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: counts what the guard refuses too
    install_error_handlers(app)
    routers = [module.router for module in (embeddings, search, explain, classify, catalogs, ops, pages)]
    for router in routers[:-1]:
        app.include_router(router)
    pages.mount_pages(app)
    state.metrics.routes = [*(r for router in routers for r in router.routes), *pages.mounts(app)]
    return app
