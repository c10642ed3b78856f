"""For operators: ``/healthz`` (alive), ``/readyz`` (model loaded, catalogs open), ``/v1/stats``
(micro-batching counters) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from vestis.serve.state import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz():
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State):
    """Readiness: the model is loaded and the catalogs are open (503 while starting or stopping)."""
    if not state.ready:
        return JSONResponse({"status": "not ready"}, status_code=503)
    return {"status": "ready", "model": state.encoder.name, "catalogs": list(state.catalogs),
            "queued": {"texts": state.texts.queued, "images": state.images.queued}}  # fmt: skip


@router.get("/v1/stats")
async def stats(state: State):
    """Micro-batching counters: requests, items, encoder calls, mean and largest batch (at most max_batch)."""
    state.require_encoder()
    config = state.config
    return {"batching": config.batching, "max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms,
            "texts": state.texts.stats.to_dict(), "images": state.images.stats.to_dict()}  # fmt: skip


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State):
    """Prometheus text format: requests by route and status, latencies, batch sizes, queue depth, items."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
