"""Images in requests: data URLs and base64 decoded with size limits, then checked by the library.

Remote URLs are refused (the server never fetches on a client's behalf). Decoding goes
through :func:`vestis.models.preprocess.prepare_image`, whose pixel limit is the
decompression-bomb guard: the header is read first and an image claiming more pixels
than allowed is refused before any of it is decoded. Each image is brought to the model's
input size as soon as it is decoded (JPEG draft mode, a box reduction for other formats),
and the pixels being decoded at once across all requests are bounded by a :class:`PixelBudget`.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import functools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from vestis.errors import ImageError, InputError
from vestis.models.preprocess import decode_size, image_mime, prepare_image

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


def _renamed(exc: ImageError, what: str) -> ImageError:
    return ImageError(re.sub(r"^image( \d+)? \(\d+ bytes\)", what, str(exc)))


def decoded_pixels(data: bytes, encoder) -> int:
    """How many pixels decoding ``data`` for ``encoder`` takes (a large JPEG is decoded at reduced
    scale): read from the header, nothing decoded. 0 when the header cannot be read (the decoder
    then reports it)."""
    size = decode_size(data, encoder.image_config, draft=getattr(encoder, "jpeg_draft", True))
    return size[0] * size[1] if size else 0


def prepare_request_image(data: bytes, encoder, *, max_pixels: int, budget: PixelBudget, what: str) -> np.ndarray:
    """One image of a request, decoded and brought to the model's input size at once (uint8 (H, W, 3)),
    while holding its pixels in ``budget``: what waits for the encoder is ~150 KB, not the decoded photo."""
    with budget.hold(decoded_pixels(data, encoder)):
        try:
            return prepare_image(data, encoder.image_config, max_pixels=max_pixels,
                                 draft=getattr(encoder, "jpeg_draft", True))  # fmt: skip
        except ImageError as exc:
            raise _renamed(exc, what) from None


class PixelBudget:
    """At most ``limit`` pixels being decoded at once, across every request (and thread).

    An image is decoded at full size before it can be reduced (PNG has no draft mode), so the
    memory a burst of large images takes is bounded by this budget, not by the number of requests.
    One image larger than the budget takes all of it. When the last large decode ends, freed memory
    is handed back to the system (glibc keeps it otherwise)."""

    def __init__(self, limit: int, *, release_after: int = 4_000_000) -> None:
        self.limit = max(1, int(limit))
        self.release_after = release_after
        self.in_use = 0
        self.peak = 0
        self._large_since_idle = False
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(max(0, int(pixels)), self.limit)
        with self._cond:
            while self.in_use + pixels > self.limit:
                self._cond.wait()
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
            self._large_since_idle |= pixels >= self.release_after
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                release = self.in_use == 0 and self._large_since_idle
                if release:
                    self._large_since_idle = False
                self._cond.notify_all()
            if release:
                release_memory()


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_memory() -> None:
    """Return freed heap memory to the system (glibc's ``malloc_trim``; nothing elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def data_url(data: bytes) -> str:
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode()}"
