"""The HTTP service: ``create_app(config)`` builds a FastAPI app with no global state.

Routes (all JSON; errors OpenAI-shaped, see :mod:`vestis.serve.security`):

* ``POST /v1/embeddings``, ``GET /v1/models`` — OpenAI's embeddings API, with images.
* ``POST /v1/search`` (JSON, or multipart with an image file), ``POST /v1/classify``.
* ``/v1/catalogs``: list, info, facets, one item, its thumbnail; add (``POST``), update
  (``PUT``), upsert one (``PUT .../items/{id}``), delete (``DELETE .../items/{id}``,
  ``POST .../items/delete``). Writes go through :func:`vestis.index.build.build_index`,
  the same code as ``vestis index add/update``, with the server's encoder.
* ``GET /healthz`` (alive), ``GET /readyz`` (model loaded, catalogs open), ``GET /`` the
  web page, ``/docs`` and ``/openapi.json``.

The encoder is called through two :class:`~vestis.serve.batching.MicroBatcher` s (texts,
images); library code that embeds inside a worker thread (``Catalog.search``, label
embeddings) reaches them through a :class:`~vestis.serve.batching.BatchedEncoder`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from vestis import __version__
from vestis.errors import ImageError, InputError, ModelNotFoundError, VestisError
from vestis.serve import schemas as S
from vestis.serve.batching import BatchedEncoder, MicroBatcher, Overloaded
from vestis.serve.media import ImageTooLarge, check_image, decode_image_string, is_data_url
from vestis.serve.security import GuardMiddleware, GuardSettings, KeyStore, RateLimiter, error_body

log = logging.getLogger("vestis.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
MiB = 1024 * 1024


@dataclass
class ServeConfig:
    """Everything ``vestis serve`` is started with (see ``vestis serve --help``)."""

    catalogs: Sequence[Path] = ()
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    key_hashes: frozenset[str] = frozenset()
    rate_limit: float = 600.0  # requests per minute per key; 0 = unlimited
    rate_burst: int | None = None  # default: a tenth of a minute's worth, at least 1
    max_body_bytes: int = 16 * MiB
    max_image_bytes: int = 8 * MiB
    max_image_pixels: int = 40_000_000
    max_inputs: int = 256
    max_text_chars: int = 8192
    request_timeout: float = 60.0
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    threads: int | None = None


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
    config: ServeConfig
    encoder: object | None = None
    batched: BatchedEncoder | None = None
    texts: MicroBatcher | None = None
    images: MicroBatcher | None = None
    catalogs: dict[str, object] = field(default_factory=dict)  # name -> vestis.search.Catalog
    paths: dict[str, Path] = field(default_factory=dict)
    write_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    taxonomies: dict = field(default_factory=dict)
    ready: bool = False
    started: float = field(default_factory=time.time)
    _labels: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    _facets: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def catalog(self, name: str | None):
        if not self.catalogs:
            raise ApiError(404, "this server has no catalog; start it with --catalog DIR", code="no_catalog")
        if name is None:
            name = next(iter(self.catalogs))
        cat = self.catalogs.get(name)
        if cat is None:
            raise ApiError(404, f"no catalog {name!r}; the catalogs are: {', '.join(self.catalogs)}",
                           code="catalog_not_found", param="catalog")  # fmt: skip
        return name, cat


def catalog_name(path: Path) -> str:
    return Path(path).resolve().name


def prepare(config: ServeConfig):
    """Check the catalogs, load the encoder they need (or ``config.model``) and return it.

    Fails with a :class:`VestisError` naming the problem: a folder that is not an index,
    two catalogs with one name, a model that does not match a catalog.
    """
    from vestis.index.local import LocalStore
    from vestis.models import load_encoder

    infos = {}
    for path in config.catalogs:
        name = catalog_name(path)
        if name in infos:
            raise InputError(f"two catalogs are named {name!r}; catalog names are their folder names")
        with LocalStore.open(path) as store:
            infos[name] = (Path(path), store.info)
    model = config.model or (next(iter(infos.values()))[1].model if infos else None)
    options = dict(threads=config.threads, max_image_pixels=config.max_image_pixels)
    encoder = load_encoder(model, **options)
    wanted = {info.fingerprint for _, info in infos.values()}
    if wanted and encoder.fingerprint not in wanted:
        # the catalogs were built with this model in another precision/runtime (say fp32 where the
        # default is now bf16): vectors only compare within one, so load the one they were built with
        for precision in ("fp32", "bf16", "int8"):
            try:
                other = load_encoder(model, precision=precision, **options)
            except VestisError:
                continue
            if other.fingerprint in wanted:
                encoder = other
                break
    for name, (path, info) in infos.items():
        if info.fingerprint != encoder.fingerprint:
            raise InputError(
                f"catalog {name} ({path}) was built with model {info.model!r}; the server loaded "
                f"{encoder.name!r}. Serve it with --model {info.model} (all catalogs need one model)"
            )
    return encoder


# ---------------------------------------------------------------------- the app


def create_app(config: ServeConfig, *, encoder=None) -> FastAPI:
    """The FastAPI app for ``config``. ``encoder``: an already loaded one (else loaded at start-up)."""
    state = ServerState(config=config, encoder=encoder)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from vestis.search import Catalog
        from vestis.tag import builtin_taxonomies

        if state.encoder is None:
            state.encoder = await anyio.to_thread.run_sync(prepare, config)
        enc = state.encoder
        common = dict(max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, max_queue=config.max_queue,
                      enabled=config.batching)  # fmt: skip

        def encode_texts(items):
            # token counts (usage) in the same thread: a fast tokenizer must not be called from two threads
            # at once (one call's padding settings leak into the other's)
            return enc.encode_texts(items), np.asarray(enc.tokenizer.lengths(items), dtype=np.int64)

        state.texts = MicroBatcher(encode_texts, name="texts", **common)
        state.images = MicroBatcher(lambda items: enc.encode_images(items), name="images", **common)
        await state.texts.start()
        await state.images.start()
        state.batched = BatchedEncoder(enc, state.texts, state.images, timeout=config.request_timeout)
        state.taxonomies = builtin_taxonomies()
        try:
            for path in config.catalogs:
                name = catalog_name(path)
                state.catalogs[name] = Catalog.open(path, encoder=state.batched)
                state.paths[name] = Path(path)
                state.write_locks[name] = asyncio.Lock()
            state.ready = True
            log.info("vestis serve: model %s, catalogs %s", enc.name, ", ".join(state.catalogs) or "none")
            yield
        finally:
            state.ready = False
            await state.texts.stop()
            await state.images.stop()
            for cat in state.catalogs.values():
                cat.close()
            state.catalogs.clear()

    app = FastAPI(
        title="vestis",
        version=__version__,
        summary="Fashion image and text embeddings (OpenAI-compatible), catalog search and zero-shot tagging.",
        lifespan=lifespan,
        responses={400: {"model": S.ErrorResponse}, 401: {"model": S.ErrorResponse}},
    )
    app.state.vestis = state
    app.add_middleware(
        GuardMiddleware,
        settings=GuardSettings(
            keys=KeyStore(config.key_hashes),
            limiter=RateLimiter(config.rate_limit, config.rate_burst),
            max_body_bytes=config.max_body_bytes,
            timeout=config.request_timeout,
        ),
    )
    _install_error_handlers(app)
    _add_routes(app, state)
    return app


# ------------------------------------------------------------------------ errors


def _error_response(status: int, message: str, type_: str, code=None, param=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)


_STATUS_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("conflict_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
}


def _validation_message(errors: Sequence[dict]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body",)]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})", None
    msg = first.get("msg", "invalid request")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + more, param


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error_response(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc.errors())
        return _error_response(400, message, "invalid_request_error", "invalid_request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        type_, code = _STATUS_TYPES.get(exc.status_code, ("invalid_request_error", None))
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 400 and detail.startswith("There was an error parsing the body"):
            detail = "the body could not be read"
        return _error_response(exc.status_code, detail, type_, code, None, getattr(exc, "headers", None))

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded):
        return _error_response(503, str(exc), "server_error", "overloaded", headers={"Retry-After": "1"})

    @app.exception_handler(ImageTooLarge)
    async def _too_large(request: Request, exc: ImageTooLarge):
        return _error_response(413, str(exc), "invalid_request_error", "image_too_large")

    @app.exception_handler(ImageError)
    async def _image(request: Request, exc: ImageError):
        return _error_response(400, str(exc), "invalid_request_error", "invalid_image")

    @app.exception_handler(ModelNotFoundError)
    async def _model(request: Request, exc: ModelNotFoundError):
        return _error_response(404, str(exc), "invalid_request_error", "model_not_found", "model")

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError):
        return _error_response(400, str(exc), "invalid_request_error", "invalid_request")

    @app.exception_handler(VestisError)
    async def _vestis(request: Request, exc: VestisError):
        if "being written by another process" in str(exc):
            return _error_response(409, str(exc), "conflict_error", "catalog_busy", headers={"Retry-After": "1"})
        log.error("request %s %s failed: %s", request.method, request.url.path, exc)
        return _error_response(500, str(exc), "server_error", "server_error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return _error_response(500, "internal server error; the details are in the server's log", "server_error",
                               "internal_error")  # fmt: skip


# ------------------------------------------------------------------ request bodies


async def _read_body(request: Request, model: type[BaseModel], *, max_image_bytes: int,
                     list_fields: Sequence[str] = (), json_fields: Sequence[str] = ()):  # fmt: skip
    """A JSON body, or a multipart form (files come back separately), validated by ``model``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    files: dict[str, list[bytes]] = {}
    if ctype == "multipart/form-data":
        form = await request.form(max_files=32, max_fields=64, max_part_size=max(MiB, max_image_bytes))
        data: dict = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read(max_image_bytes + 1)
                if len(content) > max_image_bytes:
                    raise ImageTooLarge(f"{key}: file over the limit of {max_image_bytes:,} bytes")
                files.setdefault(key, []).append(content)
                continue
            if key in json_fields:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise ApiError(400, f"{key}: not valid JSON", param=key) from None
            if key in list_fields:
                data.setdefault(key, []).append(value)
            else:
                data[key] = value
    elif ctype in ("application/json", ""):
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_request")
    else:
        raise ApiError(415, f"unsupported content type {ctype!r}; send application/json or multipart/form-data",
                       code="unsupported_media_type")  # fmt: skip
    try:
        return model.model_validate(data), files
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _body_doc(model: type[BaseModel], files: dict[str, str]) -> dict:
    schema = model.model_json_schema()
    form = {"type": "object", "properties": {k: {"type": "string", "format": "binary", "description": v}
                                              for k, v in files.items()},
            "description": "Any other field of the JSON body as a form field (lists repeat the field)."}  # fmt: skip
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": form}}}}  # fmt: skip


# ------------------------------------------------------------------------ helpers


def _mime(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


def _data_url(data: bytes) -> str:
    return f"data:{_mime(data)};base64,{base64.b64encode(data).decode()}"


def _json_safe(value):
    """Catalog metadata as strict JSON: NaN and infinities become null, odd types text."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _quote_sql(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def filters_to_where(where: str | None, filters: dict[str, list] | None) -> str | None:
    """``{"baseColour": ["Red", "Blue"], "season": ["Summer"]}`` -> ``"baseColour" IN (...) AND ...``."""
    parts = [f"({where})"] if where and where.strip() else []
    for name, values in (filters or {}).items():
        if not values:
            continue
        if not name or '"' in name or len(name) > 200:
            raise ApiError(400, f"filters: bad field name {name!r}", param="filters")
        parts.append(f'"{name}" IN ({", ".join(_quote_sql(v) for v in values)})')
    return " AND ".join(parts) or None


async def _decode_images(
    strings: Sequence[tuple[str, str]], config: ServeConfig, raw: Sequence[tuple[str, bytes]] = ()
):
    """(param, data URL/base64) and (param, bytes) -> decoded RGB images, checked in a worker thread."""
    blobs = [(p, decode_image_string(s, max_bytes=config.max_image_bytes, what=p)) for p, s in strings]
    blobs += list(raw)

    def check():
        return [check_image(b, max_pixels=config.max_image_pixels, what=p) for p, b in blobs]

    return await anyio.to_thread.run_sync(check) if blobs else []


def _thread(fn, *args, abandon: bool = True):
    """Run ``fn`` in a worker thread; a read can be abandoned when the request times out."""
    return anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=abandon)


# ------------------------------------------------------------------------- routes


def _add_routes(app: FastAPI, state: ServerState) -> None:  # noqa: C901 - one place for all routes
    config = state.config

    def enc():
        if not state.ready or state.encoder is None:
            raise ApiError(503, "the server is starting or stopping", "server_error", "not_ready")
        return state.encoder

    # ----------------------------------------------------------------- page, health

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/healthz", tags=["health"])
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz():
        """Readiness: the model is loaded and the catalogs are open (503 while starting or stopping)."""
        if not state.ready:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready", "model": state.encoder.name, "catalogs": list(state.catalogs),
                "queued": {"texts": state.texts.queued, "images": state.images.queued}}  # fmt: skip

    # ------------------------------------------------------------------ models

    def model_entry() -> dict:
        e = enc()
        return {"id": e.name, "object": "model", "created": int(state.started), "owned_by": "vestis", "dim": e.dim}

    @app.get("/v1/models", response_model=S.ModelList, tags=["embeddings"])
    async def list_models():
        """The served model (OpenAI's list-models shape)."""
        return {"object": "list", "data": [model_entry()]}

    @app.get("/v1/models/{model_id:path}", response_model=S.Model, tags=["embeddings"])
    async def get_model(model_id: str):
        entry = model_entry()
        if model_id != entry["id"]:
            raise ApiError(404, f"the model {model_id!r} does not exist; this server serves {entry['id']!r}",
                           code="model_not_found", param="model")  # fmt: skip
        return entry

    # -------------------------------------------------------------- embeddings

    @app.post("/v1/embeddings", response_model=S.EmbeddingResponse, tags=["embeddings"])
    async def embeddings(body: S.EmbeddingRequest):
        """OpenAI-compatible embeddings of texts and images (data URLs or image_url items)."""
        e = enc()
        if body.model is not None and body.model != e.name:
            raise ApiError(404, f"the model {body.model!r} does not exist; this server serves {e.name!r}",
                           code="model_not_found", param="model")  # fmt: skip
        items = [body.input] if isinstance(body.input, str) else list(body.input)
        if not items:
            raise ApiError(400, "input must not be empty", param="input")
        if len(items) > config.max_inputs:
            raise ApiError(400, f"input has {len(items)} items; at most {config.max_inputs} per request",
                           code="too_many_inputs", param="input")  # fmt: skip
        if body.dimensions is not None and body.dimensions > e.dim:
            raise ApiError(400, f"dimensions must be at most {e.dim} for {e.name}", param="dimensions")
        texts: list[tuple[int, str]] = []
        images: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            param = "input" if isinstance(body.input, str) else f"input[{i}]"
            if isinstance(item, (int, list)):
                raise ApiError(400, "token arrays are not supported: send strings (the server tokenises)",
                               param=param)  # fmt: skip
            if isinstance(item, S.ImageInputItem):
                url = item.image_url if isinstance(item.image_url, str) else item.image_url.url
                images.append((i, url))
                continue
            text = item.text if isinstance(item, S.TextInputItem) else item
            if is_data_url(text):
                images.append((i, text))
            elif not text.strip():
                raise ApiError(400, f"{param}: empty text", param=param)
            elif len(text) > config.max_text_chars:
                raise ApiError(400, f"{param}: {len(text):,} characters; at most {config.max_text_chars:,}",
                               code="input_too_long", param=param)  # fmt: skip
            else:
                texts.append((i, text))
        pictures = await _decode_images([(f"input[{i}]", s) for i, s in images], config)
        text_list = [t for _, t in texts]
        jobs = []
        if texts:
            jobs.append(state.texts.submit(text_list))
        if images:
            jobs.append(state.images.submit(pictures))
        results = await asyncio.gather(*jobs)
        vectors = np.zeros((len(items), e.dim), np.float32)
        tokens = 0
        if texts:
            text_vectors, lengths = results[0]
            vectors[[i for i, _ in texts]] = text_vectors
            tokens = int(lengths.sum())
        if images:
            vectors[[i for i, _ in images]] = results[-1]
        if body.dimensions is not None and body.dimensions < e.dim:
            vectors = vectors[:, : body.dimensions]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if body.encoding_format == "base64":
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            data = vectors.tolist()
        out = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": d} for i, d in enumerate(data)],
            "model": e.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "images": len(images)},
        }
        return JSONResponse(out)

    # ----------------------------------------------------------------- search

    @app.post("/v1/search", response_model=S.SearchResponse, tags=["search"],
              openapi_extra=_body_doc(S.SearchRequest, {"image": "the photo to search by"}))  # fmt: skip
    async def search(request: Request):
        """Search a catalog by text, photo and/or item id, with filters, hybrid keyword fusion and steering.

        An item id alone is "more like this": the item itself and its exact duplicates are left out.
        """
        enc()
        req, files = await _read_body(request, S.SearchRequest, max_image_bytes=config.max_image_bytes,
                                      list_fields=("steer", "exclude"), json_fields=("filters",))  # fmt: skip
        name, cat = state.catalog(req.catalog)
        if req.image is not None and files.get("image"):
            raise ApiError(400, "give the image once: as a file or as a data URL", param="image")
        raw = [("image", b) for b in files.get("image", [])[:1]]
        pictures = await _decode_images([("image", req.image)] if req.image else [], config, raw)
        image = pictures[0] if pictures else None
        if req.query is None and image is None and req.item_id is None:
            raise ApiError(400, "give a query, an image or an item_id", param="query")
        where = filters_to_where(req.where, req.filters)
        opts = dict(k=req.k, offset=req.offset, where=where, steer=req.steer, steer_strength=req.steer_strength,
                    min_score=req.min_score, exact=req.exact, thumbnails=req.include_thumbnails)  # fmt: skip
        exclude = [str(x) for x in req.exclude]
        start = time.perf_counter()

        def run():
            if req.item_id is not None and req.query is None and image is None:
                return cat.similar(str(req.item_id), exclude=exclude, **opts)
            if req.item_id is not None:
                exclude.append(str(req.item_id))
            return cat.search(req.query, image=image, item_id=None if req.item_id is None else str(req.item_id),
                              hybrid=req.hybrid, exclude=exclude, **opts)  # fmt: skip

        results = await _thread(run)
        hits = []
        for n, h in enumerate(results.hits, req.offset + 1):
            hit = {
                "rank": n,
                "id": h.id,
                "score": round(float(h.score), 6),
                "cosine": None if h.cosine is None else round(float(h.cosine), 6),
                "metadata": h.metadata,
                "thumbnail_url": f"/v1/catalogs/{quote(name)}/items/{quote(str(h.id), safe='')}/thumbnail",
            }
            if req.include_thumbnails:
                hit["thumbnail"] = _data_url(h.thumbnail) if h.thumbnail else None
            hits.append(hit)
        out = {"object": "search.results", "catalog": name, "model": cat.encoder.name, "results": hits,
               "query": results.query, "took_ms": round((time.perf_counter() - start) * 1000, 2)}  # fmt: skip
        return JSONResponse(_json_safe(out))

    @app.get("/v1/steers", tags=["search"])
    async def steers():
        """The built-in steering directions (``steer`` in a search), as (away from, towards)."""
        from vestis.search import STEERS

        return {"object": "list", "data": [{"name": k, "towards": v[0], "away": v[1]} for k, v in STEERS.items()]}

    # --------------------------------------------------------------- classify

    @app.get("/v1/taxonomies", response_model=S.TaxonomyList, tags=["classify"])
    async def taxonomies():
        """The built-in taxonomies (the KAGL catalog fields) a classify request can name."""
        return {"object": "list", "data": [{"name": t.name, "labels": list(t.labels), "templates": list(t.templates)}
                                           for t in state.taxonomies.values()]}  # fmt: skip

    def label_vectors(labels: tuple[str, ...], templates: tuple[str, ...]) -> np.ndarray:
        from vestis.classify import label_embeddings

        key = (labels, templates)
        with state._lock:
            if key in state._labels:
                state._labels.move_to_end(key)
                return state._labels[key]
        vectors = label_embeddings(state.batched, labels, templates)
        with state._lock:
            state._labels[key] = vectors
            while len(state._labels) > 64:
                state._labels.popitem(last=False)
        return vectors

    def resolve_taxonomies(req: S.ClassifyRequest):
        from vestis.classify import DEFAULT_TEMPLATES
        from vestis.tag import Taxonomy

        chosen = []
        templates = tuple(req.templates) if req.templates else None
        for t in templates or ():
            if "{}" not in t or len(t) > 300:
                raise ApiError(400, f"template {t!r} must contain '{{}}' (at most 300 characters)", param="templates")
        for name in req.taxonomies or ([] if req.labels else ["kagl"]):
            if name == "kagl":
                chosen += list(state.taxonomies.values())
            elif name in state.taxonomies:
                chosen.append(state.taxonomies[name])
            else:
                raise ApiError(400, f"no built-in taxonomy {name!r}; they are: kagl, {', '.join(state.taxonomies)}",
                               param="taxonomies")  # fmt: skip
        if templates:
            chosen = [Taxonomy(t.name, t.labels, templates) for t in chosen]
        if req.labels:
            labels = req.labels.split(",") if isinstance(req.labels, str) else req.labels
            labels = [x.strip() for x in labels if x.strip()]
            if not labels or len(labels) > 1000 or any(len(x) > 200 for x in labels):
                raise ApiError(400, "labels: give 1 to 1000 labels of at most 200 characters", param="labels")
            if len(set(labels)) != len(labels):
                raise ApiError(400, "labels must be unique", param="labels")
            chosen.append(Taxonomy("labels", tuple(labels), templates or DEFAULT_TEMPLATES))
        names = [t.name for t in chosen]
        if len(set(names)) != len(names):
            raise ApiError(400, "a taxonomy is named twice", param="taxonomies")
        return chosen

    @app.post(
        "/v1/classify",
        response_model=S.ClassifyResponse,
        tags=["classify"],
        openapi_extra=_body_doc(S.ClassifyRequest, {"image": "photo(s) to label (repeat the field)"}),
    )
    async def classify(request: Request):
        """Zero-shot labels for photos: built-in taxonomies (default: all KAGL fields) and/or your own labels."""
        from vestis.classify import top_labels

        e = enc()
        req, files = await _read_body(request, S.ClassifyRequest, max_image_bytes=config.max_image_bytes,
                                      list_fields=("taxonomies", "images", "templates"))  # fmt: skip
        strings = ([("image", req.image)] if req.image else []) + [
            (f"images[{i}]", s) for i, s in enumerate(req.images or [])
        ]
        raw = [(f"image[{i}]", b) for i, b in enumerate(files.get("image", []) + files.get("images", []))]
        if not strings and not raw:
            raise ApiError(400, "give an image (or images)", param="image")
        if len(strings) + len(raw) > 32:
            raise ApiError(400, "at most 32 images per request", param="images")
        taxonomies = resolve_taxonomies(req)
        pictures = await _decode_images(strings, config, raw)
        vectors = await state.images.submit(pictures)

        def run():
            return {t.name: top_labels(vectors, label_vectors(t.labels, t.templates), t.labels, k=req.k,
                                       logit_scale=e.logit_scale) for t in taxonomies}  # fmt: skip

        tags = await _thread(run)
        results = [
            {
                "index": i,
                "labels": {
                    name: [{"label": p.label, "score": round(p.score, 6)} for p in preds[i]]
                    for name, preds in tags.items()
                },
            }  # fmt: skip
            for i in range(len(pictures))
        ]
        return JSONResponse({"object": "classification", "model": e.name, "results": results})

    # --------------------------------------------------------------- catalogs

    def info(name: str, cat) -> dict:
        store = cat.store
        return {"name": name, "model": store.info.model, "dim": store.info.dim, "items": store.count(),
                "fields": store.fields(), "generation": store.generation()}  # fmt: skip

    @app.get("/v1/catalogs", response_model=S.CatalogList, tags=["catalogs"])
    async def list_catalogs():
        enc()
        data = await _thread(lambda: [info(n, c) for n, c in state.catalogs.items()])
        return {"object": "list", "data": data}

    @app.get("/v1/catalogs/{name}", response_model=S.CatalogInfo, tags=["catalogs"])
    async def get_catalog(name: str):
        enc()
        name, cat = state.catalog(name)
        return await _thread(info, name, cat)

    @app.get("/v1/catalogs/{name}/facets", response_model=S.FacetsResponse, tags=["catalogs"])
    async def facets(name: str, field: list[str] | None = Query(None), limit: int = Query(30, ge=1, le=500)):
        """Value counts of fields, for filter facets (default: the fields with a few repeated values)."""
        from vestis.data.catalog import TITLE_COLUMNS

        enc()
        name, cat = state.catalog(name)

        def run():
            store = cat.store
            key = (name, store.generation(), tuple(field or ()), limit)
            with state._lock:
                if key in state._facets:
                    return state._facets[key]
            n_items = max(1, store.count())
            out = []
            for f in field or store.fields():
                if not field and (f in TITLE_COLUMNS or f == "id"):
                    continue
                counts = store.facets(f, limit=1001)
                distinct = len(counts)
                if not field and (distinct < 2 or distinct > max(50, n_items // 2) or counts[0][1] < 2):
                    continue
                out.append({"field": f, "values": [{"value": v, "count": c} for v, c in counts[:limit]],
                            "distinct": distinct, "truncated": distinct > limit})  # fmt: skip
            result = {"catalog": name, "facets": out}
            with state._lock:
                state._facets = {k: v for k, v in state._facets.items() if k[1] == key[1]}
                state._facets[key] = result
            return result

        return await _thread(run)

    def item_out(name: str, rec) -> dict:
        return {"id": rec.id_value if rec.id_value is not None else rec.id, "title": rec.title,
                "metadata": rec.metadata, "image_error": rec.image_error,
                "thumbnail_url": f"/v1/catalogs/{quote(name)}/items/{quote(rec.id, safe='')}/thumbnail"}  # fmt: skip

    @app.get("/v1/catalogs/{name}/items/{item_id}", response_model=S.ItemOut, tags=["catalogs"])
    async def get_item(name: str, item_id: str):
        enc()
        name, cat = state.catalog(name)
        rec = (await _thread(cat.store.get, [item_id])).get(item_id)
        if rec is None:
            raise ApiError(404, f"no item {item_id!r} in catalog {name}", code="item_not_found", param="item_id")
        return item_out(name, rec)

    @app.get("/v1/catalogs/{name}/items/{item_id}/thumbnail", tags=["catalogs"],
             responses={200: {"content": {"image/jpeg": {}}, "description": "The stored thumbnail."}})  # fmt: skip
    async def thumbnail(name: str, item_id: str):
        """The item's stored thumbnail (JPEG or the original small image)."""
        enc()
        name, cat = state.catalog(name)
        rec = (await _thread(lambda: cat.store.get([item_id], thumbnails=True))).get(item_id)
        if rec is None or not rec.thumbnail:
            raise ApiError(404, f"no thumbnail for item {item_id!r} in catalog {name}", code="item_not_found")
        return Response(rec.thumbnail, media_type=_mime(rec.thumbnail),
                        headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip

    async def write(name: str, items: Sequence[S.ItemIn], mode: str) -> dict:
        from vestis.index.build import build_index

        enc()
        name, cat = state.catalog(name)
        ids = [str(it.id) for it in items]
        for it in items:
            bad = {"id", "image"} & set(it.metadata)
            if bad:
                raise ApiError(400, f"item {it.id}: metadata cannot hold {', '.join(sorted(bad))}", param="metadata")
        blobs = [decode_image_string(it.image, max_bytes=config.max_image_bytes, what=f"item {it.id}")
                 if it.image else None for it in items]  # fmt: skip
        await _thread(lambda: [check_image(b, max_pixels=config.max_image_pixels, what=f"item {it.id}")
                               for it, b in zip(items, blobs) if b is not None])  # fmt: skip
        if mode != "add":
            existing = await _thread(cat.store.get, ids)
            lost = [i for i, b in zip(ids, blobs) if b is None and i in existing and existing[i].image_hash]
            if lost:
                raise ApiError(400, f"item {lost[0]} has an image in the catalog; send it again with the update "
                               "(the server keeps no original images, and an update replaces the item)",
                               param="image")  # fmt: skip
        all_int = all(isinstance(it.id, int) and not isinstance(it.id, bool) for it in items)
        rows = [{"id": it.id if all_int else str(it.id), "image": b, **it.metadata} for it, b in zip(items, blobs)]

        def run():
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pa.Table.from_pylist(rows)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InputError(f"items: a metadata field has values of different types ({exc})") from None
            if "image" in table.column_names and table.schema.field("image").type != pa.binary():
                table = table.set_column(table.column_names.index("image"), "image",
                                         table.column("image").cast(pa.binary()))  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="vestis-items-") as tmp:
                path = Path(tmp) / "items.parquet"
                pq.write_table(table, path)
                # through the batchers: the encoder is only ever called from their threads
                return build_index(path, state.paths[name], encoder=state.batched, mode=mode, quiet=True).to_dict()

        async with state.write_locks[name]:
            report = await _thread(run, abandon=False)
        keep = ("mode", "added", "updated", "metadata_updated", "unchanged", "skipped_existing", "skipped_missing",
                "unreadable_images", "not_indexed", "total_items")  # fmt: skip
        return {"object": "catalog.write", "catalog": name, **{k: report[k] for k in keep}}

    @app.post("/v1/catalogs/{name}/items", response_model=S.WriteReport, tags=["catalogs"])
    async def add_items(name: str, body: S.ItemsRequest):
        """Add items whose ids are not in the catalog yet (others are listed in skipped_existing)."""
        return await write(name, body.items, "add")

    @app.put("/v1/catalogs/{name}/items", response_model=S.WriteReport, tags=["catalogs"])
    async def update_items(name: str, body: S.ItemsRequest):
        """Replace items already in the catalog (re-embedded only if their image or title changed)."""
        return await write(name, body.items, "update")

    @app.put("/v1/catalogs/{name}/items/{item_id}", response_model=S.WriteReport, tags=["catalogs"])
    async def put_item(name: str, item_id: str, body: S.ItemBody):
        """Add or replace one item."""
        item = S.ItemIn(id=int(item_id) if item_id.isdigit() and len(item_id) < 19 else item_id, image=body.image,
                        metadata=body.metadata)  # fmt: skip
        return await write(name, [item], "build")

    async def delete(name: str, ids: list[str]) -> dict:
        from vestis.index.build import delete_items

        enc()
        name, _ = state.catalog(name)
        async with state.write_locks[name]:
            result = await _thread(delete_items, state.paths[name], ids, abandon=False)
        return {"object": "catalog.write", "catalog": name, "mode": "delete", "deleted": result["deleted"],
                "not_found": result["not_found"], "total_items": result["total_items"]}  # fmt: skip

    @app.delete("/v1/catalogs/{name}/items/{item_id}", response_model=S.WriteReport, tags=["catalogs"])
    async def delete_item(name: str, item_id: str):
        result = await delete(name, [item_id])
        if not result["deleted"]:
            raise ApiError(404, f"no item {item_id!r} in catalog {result['catalog']}", code="item_not_found")
        return result

    @app.post("/v1/catalogs/{name}/items/delete", response_model=S.WriteReport, tags=["catalogs"])
    async def delete_many(name: str, body: S.DeleteRequest):
        """Delete items by id, atomically; ids not in the catalog are listed in not_found."""
        return await delete(name, [str(i) for i in body.ids])

    @app.get("/v1/stats", tags=["health"])
    async def stats():
        """Micro-batching counters: requests, items, encoder calls, mean batch size."""
        enc()
        return {"batching": config.batching, "max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms,
                "texts": state.texts.stats.to_dict(), "images": state.images.stats.to_dict()}  # fmt: skip
