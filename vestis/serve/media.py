"""Images in requests: data URLs and base64 decoded with size limits, then checked by the library.

Remote URLs are refused (the server never fetches on a client's behalf). Decoding goes
through :func:`vestis.models.preprocess.load_image`, whose pixel limit is the
decompression-bomb guard: the header is read first and an image claiming more pixels
than allowed is refused before any of it is decoded.
"""

from __future__ import annotations

import base64
import binascii
import re

from PIL import Image

from vestis.errors import ImageError, InputError
from vestis.models.preprocess import load_image

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,")


class ImageTooLarge(ImageError):
    """Encoded image bytes over the server's limit (HTTP 413)."""


def is_data_url(text: str) -> bool:
    return text[:11].lower() == "data:image/"


def decode_image_string(text: str, *, max_bytes: int, what: str = "image") -> bytes:
    """Bytes of a ``data:image/...;base64,`` URL or of plain base64."""
    if not isinstance(text, str) or not text.strip():
        raise ImageError(f"{what}: empty; send a data URL (data:image/jpeg;base64,...) or base64")
    text = text.strip()
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https:/", "file:/", "ftp://")):
        raise InputError(f"{what}: remote image URLs are not fetched; send the image as a data URL or base64")
    if lowered.startswith("data:"):
        m = _DATA_URL.match(text)
        if not m or not m.group("b64"):
            raise ImageError(f"{what}: not a base64 data URL (expected data:image/<type>;base64,...)")
        if not (m.group("mime") or "").lower().startswith("image/"):
            raise ImageError(f"{what}: data URL of type {m.group('mime')!r}, not an image")
        text = text[m.end() :]
    # 4 base64 characters carry 3 bytes: refuse before decoding anything too large
    if len(text) * 3 // 4 > max_bytes + 3:
        raise ImageTooLarge(f"{what}: about {len(text) * 3 // 4:,} bytes, over the limit of {max_bytes:,}")
    try:
        data = binascii.a2b_base64(text.replace("\n", "").replace("\r", ""), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{what}: not valid base64 ({exc})") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{what}: {len(data):,} bytes, over the limit of {max_bytes:,}")
    if not data:
        raise ImageError(f"{what}: empty image")
    return data


def check_image(data: bytes, *, max_pixels: int, what: str = "image") -> Image.Image:
    """Decode ``data`` fully (RGB), or raise :class:`ImageError` naming ``what``.

    Decoding here, before a request joins a batch, keeps one client's truncated or
    oversized image from failing anyone else's batch.
    """
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        message = str(exc)
        message = re.sub(r"^image \(\d+ bytes\)", what, message)
        raise ImageError(message) from None


def image_mime(data: bytes) -> str:
    """The media type of encoded image bytes, from their first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


def data_url(data: bytes) -> str:
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode()}"
