"""Catalog search: ``POST /v1/search`` and ``POST /v1/recommend`` (JSON, or multipart with a photo) and
``GET /v1/steers``."""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vestis.search import STEERS
from vestis.serve import schemas as S
from vestis.serve.bodies import body_doc, decode_images, read_body
from vestis.serve.media import data_url
from vestis.serve.state import ApiError, State, grant_of, in_thread

router = APIRouter(tags=["search"])


def thumbnail_url(catalog: str, item_id: object) -> str:
    return f"/v1/catalogs/{quote(catalog)}/items/{quote(str(item_id), safe='')}/thumbnail"


@router.post("/v1/search", response_model=S.SearchResponse,
             openapi_extra=body_doc(S.SearchRequest, {"image": "the photo to search by"}))  # fmt: skip
async def search(request: Request, state: State):
    """Search a catalog by text, photo and/or item id, with filters, hybrid keyword fusion and steering.

    An item id alone is "more like this": the item itself and its exact duplicates are left out.
    Text equality in filters ignores case. With ``hybrid``, ``score`` is the rank-fusion value and
    ``cosine`` the similarity (``min_score`` applies to the cosine). ``boost`` adds numeric fields
    (scaled 0..1 over the catalog) times their weights to the cosine.
    """
    return await _respond(request, state, S.SearchRequest, lambda cat, req, common: cat.search(
        req.query, item_id=None if req.item_id is None else str(req.item_id), **common))  # fmt: skip


@router.post("/v1/recommend", response_model=S.SearchResponse,
             openapi_extra=body_doc(S.RecommendRequest, {"image": "a photo the feedback refines"}))  # fmt: skip
async def recommend(request: Request, state: State):
    """Items like the ``like`` ones and unlike the ``dislike`` ones, optionally for a query, photo or item.

    The query vector becomes ``weights.query x query + weights.like x mean(liked) - weights.dislike x
    mean(disliked)`` (Rocchio), normalised, then steered and searched with the filters and ``boost``
    as in ``/v1/search``. The liked and disliked items (and exact duplicates of liked ones) are never
    among the results. Give a query or at least one liked item.
    """
    from vestis.recommend import RocchioWeights

    def run(cat, req, common):
        if req.query is None and common["image"] is None and req.item_id is None and not req.like:
            raise ApiError(400, "give at least one liked item, or a query, an image or an item_id", param="like")
        weights = RocchioWeights(**req.weights)
        return cat.recommend([str(x) for x in req.like], [str(x) for x in req.dislike], req.query,
                             item_id=None if req.item_id is None else str(req.item_id), rocchio_weights=weights,
                             **common)  # fmt: skip

    return await _respond(request, state, S.RecommendRequest, run, need_query=False)


async def _respond(request: Request, state: State, model, call, *, need_query: bool = True):
    """Read a search-like body, run ``call(catalog, body, common options)`` in a worker thread, answer."""
    config = state.config
    req, files = await read_body(request, model, max_image_bytes=config.max_image_bytes,
                                 list_fields=("steer", "exclude", "like", "dislike"),
                                 json_fields=("filters", "facets", "boost", "weights"))  # fmt: skip
    name, cat = state.catalog(req.catalog, grant_of(request))
    if req.image is not None and files.get("image"):
        raise ApiError(400, "give the image once: as a file or as a data URL", param="image")
    raw = [("image", b) for b in files.get("image", [])[:1]]
    pictures = await decode_images(state, [("image", req.image)] if req.image else [], raw)
    if need_query and req.query is None and not pictures and req.item_id is None:
        raise ApiError(400, "give a query, an image or an item_id", param="query")
    common = dict(
        image=pictures[0] if pictures else None, k=req.k, offset=req.offset, where=req.where,
        selections=req.filters, hybrid=req.hybrid, steer=req.steer, steer_strength=req.steer_strength,
        min_score=req.min_score, exclude=[str(x) for x in req.exclude], exact=req.exact,
        thumbnails=req.include_thumbnails, facets=req.facets, facet_depth=req.facet_depth, boost=req.boost,
    )  # fmt: skip
    start = time.perf_counter()
    results = await in_thread(lambda: call(cat, req, common))
    hits = []
    for h in results.hits:
        hit = {**h.to_dict(), "thumbnail_url": thumbnail_url(name, h.id)}
        if req.include_thumbnails:
            hit["thumbnail"] = data_url(h.thumbnail) if h.thumbnail else None
        hits.append(hit)
    out = {"object": "search.results", "catalog": name, "model": cat.encoder.name, "results": hits,
           "query": results.to_dict()["query"], "took_ms": round((time.perf_counter() - start) * 1000, 2)}  # fmt: skip
    if req.facets:
        out["facets"] = [f.to_dict(req.facet_limit) for f in results.facets]
    return JSONResponse(out)


@router.get("/v1/steers")
async def steers():
    """The built-in steering directions (``steer`` in a search): name, towards, away from."""
    return {"object": "list", "data": [{"name": k, "towards": v[0], "away": v[1]} for k, v in STEERS.items()]}
