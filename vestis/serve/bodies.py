"""Request bodies: JSON or a multipart form (files apart), validated by a schema; images in them
decoded and checked in a worker thread."""

from __future__ import annotations

import json
from collections.abc import Sequence

import anyio.to_thread
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from vestis.serve.config import MiB
from vestis.serve.media import ImageTooLarge, decode_image_string, prepare_request_image
from vestis.serve.state import ApiError


async def read_body(request: Request, model: type[BaseModel], *, max_image_bytes: int,
                    list_fields: Sequence[str] = (), json_fields: Sequence[str] = ()):  # fmt: skip
    """``(validated body, {field: [file bytes]})`` from a JSON body or a multipart form."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    files: dict[str, list[bytes]] = {}
    if ctype == "multipart/form-data":
        data: dict = {}
        form = await request.form(max_files=32, max_fields=64, max_part_size=max(MiB, max_image_bytes))
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read(max_image_bytes + 1)
                if len(content) > max_image_bytes:
                    raise ImageTooLarge(f"{key}: file over the limit of {max_image_bytes:,} bytes")
                files.setdefault(key, []).append(content)
                continue
            if key in json_fields:
                try:
                    value = parse_json(value.encode("utf-8", "surrogatepass"))
                except ApiError as exc:
                    raise ApiError(400, f"{key}: {exc.message}", code="invalid_json", param=key) from None
            if key in list_fields:
                data.setdefault(key, []).append(value)
            else:
                data[key] = value
    elif ctype in ("application/json", ""):
        data = parse_json(await request.body())
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_request")
    else:
        raise ApiError(415, f"unsupported content type {ctype!r}; send application/json or multipart/form-data",
                       code="unsupported_media_type")  # fmt: skip
    try:
        return model.model_validate(data), files
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes):
    """A request body as JSON (RFC 8259: no NaN or Infinity), or a 400 ``invalid_json`` saying why."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON (nested too deeply)", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None


def body_doc(model: type[BaseModel], files: dict[str, str]) -> dict:
    """OpenAPI for a route that reads :func:`read_body`: the JSON schema, or a form with files."""
    form = {"type": "object", "properties": {k: {"type": "string", "format": "binary", "description": v}
                                              for k, v in files.items()},
            "description": "Any other field of the JSON body as a form field (lists repeat the field)."}  # fmt: skip
    content = {"application/json": {"schema": model.model_json_schema()}, "multipart/form-data": {"schema": form}}
    return {"requestBody": {"required": True, "content": content}}


async def decode_images(state, strings: Sequence[tuple[str, str]], raw: Sequence[tuple[str, bytes]] = ()):
    """(param, data URL/base64) and (param, bytes) -> images at the model's input size (uint8 arrays),
    decoded in a worker thread within the server's pixel budget."""
    config = state.config
    blobs = [(p, decode_image_string(s, max_bytes=config.max_image_bytes, what=p)) for p, s in strings]
    blobs += list(raw)
    encoder = state.require_encoder()

    def prepare():
        return [prepare_request_image(b, encoder, max_pixels=config.max_image_pixels, budget=state.pixels, what=p)
                for p, b in blobs]  # fmt: skip

    return await anyio.to_thread.run_sync(prepare) if blobs else []
