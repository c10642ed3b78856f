"""OpenAI's embeddings API, with images: ``POST /v1/embeddings``, ``GET /v1/models``."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vestis.models.text import text_problem
from vestis.serve import schemas as S
from vestis.serve.bodies import decode_images
from vestis.serve.config import ServeConfig
from vestis.serve.media import is_data_url
from vestis.serve.state import ApiError, State

router = APIRouter(tags=["embeddings"])


def _model_entry(state) -> dict:
    e = state.require_encoder()
    return {"id": e.name, "object": "model", "created": int(state.started), "owned_by": "vestis", "dim": e.dim}


@router.get("/v1/models", response_model=S.ModelList)
async def list_models(state: State):
    """The served model (OpenAI's list-models shape)."""
    return {"object": "list", "data": [_model_entry(state)]}


@router.get("/v1/models/{model_id:path}", response_model=S.Model)
async def get_model(model_id: str, state: State):
    entry = _model_entry(state)
    if model_id != entry["id"]:
        raise ApiError(404, f"the model {model_id!r} does not exist; this server serves {entry['id']!r}",
                       code="model_not_found", param="model")  # fmt: skip
    return entry


def split_inputs(body: S.EmbeddingRequest, config: ServeConfig) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``input`` -> (index, text) and (index, image data URL) pairs, each checked."""
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise ApiError(400, "input must not be empty", param="input")
    if len(items) > config.max_inputs:
        raise ApiError(400, f"input has {len(items)} items; at most {config.max_inputs} per request",
                       code="too_many_inputs", param="input")  # fmt: skip
    texts, images = [], []
    for i, item in enumerate(items):
        param = "input" if isinstance(body.input, str) else f"input[{i}]"
        if isinstance(item, S.ImageInputItem):
            images.append((i, item.image_url if isinstance(item.image_url, str) else item.image_url.url))
            continue
        text = item.text if isinstance(item, S.TextInputItem) else item
        if is_data_url(text):
            images.append((i, text))
        elif not text.strip():
            raise ApiError(400, f"{param}: empty text", param=param)
        elif problem := text_problem(text):
            raise ApiError(400, f"{param}: {problem}", param=param)
        elif len(text) > config.max_text_chars:
            raise ApiError(400, f"{param}: {len(text):,} characters; at most {config.max_text_chars:,}",
                           code="input_too_long", param=param)  # fmt: skip
        else:
            texts.append((i, text))
    return texts, images


@router.post("/v1/embeddings", response_model=S.EmbeddingResponse)
async def embeddings(body: S.EmbeddingRequest, state: State):
    """OpenAI-compatible embeddings of texts and images (data URLs or image_url items)."""
    e = state.require_encoder()
    if body.model is not None and body.model != e.name:
        raise ApiError(404, f"the model {body.model!r} does not exist; this server serves {e.name!r}",
                       code="model_not_found", param="model")  # fmt: skip
    if body.dimensions is not None and body.dimensions > e.dim:
        raise ApiError(400, f"dimensions must be at most {e.dim} for {e.name}", param="dimensions")
    texts, images = split_inputs(body, state.config)
    pictures = await decode_images(state, [(f"input[{i}]", s) for i, s in images])
    jobs = ([state.texts.submit([t for _, t in texts])] if texts else []) + (
        [state.images.submit(pictures)] if images else []
    )
    results = await asyncio.gather(*jobs)
    vectors = np.zeros((len(texts) + len(images), e.dim), np.float32)
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
    return JSONResponse({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": d} for i, d in enumerate(data)],
        "model": e.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "images": len(images)},
    })  # fmt: skip
