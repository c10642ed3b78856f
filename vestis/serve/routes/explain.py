"""Explain a match: ``POST /v1/explain`` (a heat map over an item's photo, each query word's share)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vestis.serve import schemas as S
from vestis.serve.bodies import body_doc, read_body
from vestis.serve.media import data_url
from vestis.serve.state import State, grant_of, in_thread

router = APIRouter(tags=["search"])


@router.post("/v1/explain", response_model=S.ExplainResponse, openapi_extra=body_doc(S.ExplainRequest, {}))
async def explain(request: Request, state: State):
    """Why ``item_id`` matches ``query``: which regions of its photo raise the score and by how much each
    word of the query adds to it.

    The map is occlusion sensitivity (each cell of a ``grid`` x ``grid`` array painted out in turn, all
    embedded in one batch: every model) and, for torch models, gradient x input per cell. ``words``
    are leave-one-out: the score falls by ``contribution`` without the word.

    Costly, so limited per client (``vestis serve --explain-rate``, 30 a minute with bursts of 10 by default):
    over it, 429 with ``Retry-After``.
    """
    req, _ = await read_body(request, S.ExplainRequest, max_image_bytes=state.config.max_image_bytes)
    name, cat = state.catalog(req.catalog, grant_of(request))
    start = time.perf_counter()
    async with state.explain_slots:  # a few at once, whoever asks: searches keep their share of the encoder
        why = await in_thread(lambda: cat.explain(str(req.item_id), req.query, method=req.method, grid=req.grid))
    overlay = data_url(why.overlay_png()) if req.include_overlay else None
    body = {"object": "explanation", "catalog": name, "model": cat.encoder.name, **why.to_dict(), "overlay": overlay,
            "took_ms": round((time.perf_counter() - start) * 1000, 2)}  # fmt: skip
    return JSONResponse(body)
