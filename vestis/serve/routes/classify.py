"""Zero-shot labels for photos: ``POST /v1/classify`` and ``GET /v1/taxonomies``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vestis.serve import schemas as S
from vestis.serve.bodies import body_doc, decode_images, read_body
from vestis.serve.state import ApiError, State, in_thread
from vestis.tag import all_builtin_taxonomies, parse_labels, tag_vectors

router = APIRouter(tags=["classify"])
MAX_IMAGES = 32


@router.get("/v1/taxonomies", response_model=S.TaxonomyList)
async def taxonomies():
    """The built-in taxonomies (the KAGL catalog fields, in English and Chinese) a classify request can name."""
    return {"object": "list", "data": [{"name": t.name, "labels": list(t.labels), "templates": list(t.templates)}
                                       for t in all_builtin_taxonomies().values()]}  # fmt: skip


@router.post("/v1/classify", response_model=S.ClassifyResponse,
             openapi_extra=body_doc(S.ClassifyRequest, {"image": "photo(s) to label (repeat the field)"}))  # fmt: skip
async def classify(request: Request, state: State):
    """Zero-shot labels for photos: built-in taxonomies (default: all KAGL fields) and/or your own labels."""
    e = state.require_encoder()
    req, files = await read_body(request, S.ClassifyRequest, max_image_bytes=state.config.max_image_bytes,
                                 list_fields=("taxonomies", "images", "templates"))  # fmt: skip
    strings = [("image", req.image)] if req.image else []
    strings += [(f"images[{i}]", s) for i, s in enumerate(req.images or [])]
    raw = [(f"image[{i}]", b) for i, b in enumerate(files.get("image", []) + files.get("images", []))]
    if not strings and not raw:
        raise ApiError(400, "give an image (or images)", param="image")
    if len(strings) + len(raw) > MAX_IMAGES:
        raise ApiError(400, f"at most {MAX_IMAGES} images per request", param="images")
    chosen = parse_labels({"labels": req.labels} if req.labels else (), allow_files=False, templates=req.templates,
                          taxonomies=req.taxonomies or ([] if req.labels else ["kagl"]))  # fmt: skip
    pictures = await decode_images(state, strings, raw)
    vectors = await state.images.submit(pictures)
    tags = await in_thread(lambda: tag_vectors(state.batched, vectors, chosen, k=req.k, labels=state.labels))
    results = [
        {"index": i, "labels": {name: [{"label": p.label, "score": round(p.score, 6)} for p in preds[i]]
                                for name, preds in tags.items()}}
        for i in range(len(pictures))
    ]  # fmt: skip
    return JSONResponse({"object": "classification", "model": e.name, "results": results})
