"""``/v1/catalogs``: list, info, facets, one item and its thumbnail; add (``POST``), update
(``PUT``), upsert one (``PUT .../items/{id}``) and delete items. Writes go through
:func:`vestis.index.build.build_index` with the products in memory (the same code as
``vestis index add/update``) and the server's batched encoder, one write per catalog at a time."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from vestis.data.catalog import INT64_MAX, INT64_MIN, normalize_id
from vestis.errors import InputError
from vestis.index.build import build_index, delete_items
from vestis.index.stores import describe
from vestis.serve import schemas as S
from vestis.serve.media import decode_image_string, image_mime, prepare_request_image
from vestis.serve.routes.search import thumbnail_url
from vestis.serve.state import ApiError, State, grant_of, in_thread

router = APIRouter(tags=["catalogs"])

#: What a write answers with, from the build report.
REPORT_FIELDS = ("mode", "added", "updated", "metadata_updated", "unchanged", "skipped_existing", "skipped_missing",
                 "unreadable_images", "not_indexed", "total_items")  # fmt: skip


def _info(name: str, cat) -> dict:
    return {"name": name, **describe(cat.store)}


@router.get("/v1/catalogs", response_model=S.CatalogList)
async def list_catalogs(request: Request, state: State):
    """The catalogs this server serves (those the request's API key may use)."""
    state.require_encoder()
    grant = grant_of(request)
    mine = {n: c for n, c in state.catalogs.items() if grant is None or grant.allows_catalog(n)}
    return {"object": "list", "data": await in_thread(lambda: [_info(n, c) for n, c in mine.items()])}


@router.get("/v1/catalogs/{name}", response_model=S.CatalogInfo)
async def get_catalog(name: str, state: State):
    name, cat = state.catalog(name)
    return await in_thread(_info, name, cat)


@router.get("/v1/catalogs/{name}/facets", response_model=S.FacetsResponse)
async def facets(name: str, state: State, field: list[Annotated[str, Field(min_length=1)]] | None = Query(None),
                 limit: int = Query(30, ge=1, le=500)):  # fmt: skip
    """Value counts over the whole catalog (default: the fields that make useful filters). For counts
    over a query's results, ask ``POST /v1/search`` with ``facets``."""
    name, cat = state.catalog(name)
    counted = await in_thread(lambda: cat.catalog_facets(field or None, limit=limit))
    return {"catalog": name, "facets": [f.to_dict() for f in counted]}


@router.get("/v1/catalogs/{name}/items/{item_id}", response_model=S.ItemOut)
async def get_item(name: str, item_id: str, state: State):
    name, cat = state.catalog(name)
    rec = (await in_thread(cat.store.get, [item_id])).get(item_id)
    if rec is None:
        raise ApiError(404, f"no item {item_id!r} in catalog {name}", code="item_not_found", param="item_id")
    return {"id": rec.id_value if rec.id_value is not None else rec.id, "title": rec.title, "metadata": rec.metadata,
            "image_error": rec.image_error, "thumbnail_url": thumbnail_url(name, rec.id)}  # fmt: skip


@router.get("/v1/catalogs/{name}/items/{item_id}/thumbnail",
            responses={200: {"content": {"image/jpeg": {}}, "description": "The stored thumbnail."}})  # fmt: skip
async def thumbnail(name: str, item_id: str, state: State):
    """The item's stored thumbnail (JPEG or the original small image)."""
    name, cat = state.catalog(name)
    rec = (await in_thread(lambda: cat.store.get([item_id], thumbnails=True))).get(item_id)
    if rec is None or not rec.thumbnail:
        raise ApiError(404, f"no thumbnail for item {item_id!r} in catalog {name}", code="item_not_found")
    return Response(
        rec.thumbnail, media_type=image_mime(rec.thumbnail), headers={"Cache-Control": "private, max-age=3600"}
    )


async def _rows(state, cat, items: Sequence[S.ItemIn], mode: str) -> list[dict]:
    """The items as catalog rows (``id``, ``image`` bytes, metadata), their images checked."""
    config = state.config
    for it in items:
        bad = {"id", "image"} & set(it.metadata)
        if bad:
            raise ApiError(400, f"item {it.id}: metadata cannot hold {', '.join(sorted(bad))}", param="metadata")
    blobs = [decode_image_string(it.image, max_bytes=config.max_image_bytes, what=f"item {it.id}")
             if it.image else None for it in items]  # fmt: skip
    encoder = state.require_encoder()  # each image checked now (so a bad one names its item), within the budget
    await in_thread(lambda: [prepare_request_image(b, encoder, max_pixels=config.max_image_pixels,
                                                   budget=state.pixels, what=f"item {it.id}")
                             for it, b in zip(items, blobs) if b is not None])  # fmt: skip
    if mode != "add":  # an update replaces the item, and the server keeps no original images
        ids = [str(it.id) for it in items]
        existing = await in_thread(cat.store.get, ids)
        lost = [i for i, b in zip(ids, blobs) if b is None and i in existing and existing[i].image_hash]
        if lost:
            raise ApiError(400, f"item {lost[0]} has an image in the catalog; send it again with the update "
                           "(the server keeps no original images, and an update replaces the item)",
                           param="image")  # fmt: skip
    return [{"id": it.id, "image": b, **it.metadata} for it, b in zip(items, blobs)]


async def _write(state, name: str, items: Sequence[S.ItemIn], mode: str) -> dict:
    name, cat = state.catalog(name)
    rows = await _rows(state, cat, items, mode)
    async with state.write_locks[name]:  # through the batchers: the encoder is only called from their threads
        report = await in_thread(lambda: build_index(rows, state.paths[name], encoder=state.batched, mode=mode,
                                                     quiet=True), abandon=False)  # fmt: skip
    return {"object": "catalog.write", "catalog": name, **{k: report.to_dict()[k] for k in REPORT_FIELDS}}


@router.post("/v1/catalogs/{name}/items", response_model=S.WriteReport)
async def add_items(name: str, body: S.ItemsRequest, state: State):
    """Add items whose ids are not in the catalog yet (others are listed in skipped_existing)."""
    return await _write(state, name, body.items, "add")


@router.put("/v1/catalogs/{name}/items", response_model=S.WriteReport)
async def update_items(name: str, body: S.ItemsRequest, state: State):
    """Replace items already in the catalog (re-embedded only if their image or title changed)."""
    return await _write(state, name, body.items, "update")


@router.put("/v1/catalogs/{name}/items/{item_id}", response_model=S.WriteReport)
async def put_item(name: str, item_id: str, body: S.ItemBody, state: State):
    """Add or replace one item. The id in the path is an integer when it is ASCII digits without leading
    zeros (within int64), else text; an item already stored under it keeps its id's type."""
    _, cat = state.catalog(name)
    stored = (await in_thread(cat.store.get, [item_id])).get(item_id)
    item = S.ItemIn(id=stored.id_value if stored is not None else _path_id(item_id), image=body.image,
                    metadata=body.metadata)  # fmt: skip
    return await _write(state, name, [item], "build")


def _path_id(text: str) -> int | str:
    """An id from a URL path: text, or an integer when it is written as one (``12``, never ``012`` or ``١٢``)."""
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
        value = int(text)
        if not INT64_MIN <= value <= INT64_MAX:
            raise ApiError(400, f"item id {text}: outside the 64-bit integer range", param="item_id")
        return value
    try:
        return normalize_id(text)
    except InputError as exc:
        raise ApiError(400, str(exc), param="item_id") from None


async def _delete(state, name: str, ids: list[str]) -> dict:
    name, _ = state.catalog(name)
    async with state.write_locks[name]:
        result = await in_thread(delete_items, state.paths[name], ids, abandon=False)
    return {"object": "catalog.write", "catalog": name, "mode": "delete", **result}


@router.delete("/v1/catalogs/{name}/items/{item_id}", response_model=S.WriteReport)
async def delete_item(name: str, item_id: str, state: State):
    result = await _delete(state, name, [item_id])
    if not result["deleted"]:
        raise ApiError(404, f"no item {item_id!r} in catalog {result['catalog']}", code="item_not_found")
    return result


@router.post("/v1/catalogs/{name}/items/delete", response_model=S.WriteReport)
async def delete_many(name: str, body: S.DeleteRequest, state: State):
    """Delete items by id, atomically; ids not in the catalog are listed in not_found."""
    return await _delete(state, name, [str(i) for i in body.ids])
