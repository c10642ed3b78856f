"""Embedding many items: batches, progress, unreadable images skipped, an on-disk cache.

Used by evaluation, catalog indexing and the demo, so that all of them skip bad
images the same way and reuse each other's cached embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vestis.errors import ImageError
from vestis.models.base import Encoder
from vestis.models.preprocess import ImageInput
from vestis.progress import progress_bar

#: Batches handed to the encoder per call by :func:`embed_images` (decoding overlaps inference within a call).
CHUNK_BATCHES = 8


@dataclass
class ImageEmbeddings:
    """Vectors for the images that could be read; ``failed`` lists (index, reason) of the rest."""

    vectors: np.ndarray  # (n, dim); rows of failed images are zero
    failed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        mask = np.ones(len(self.vectors), dtype=bool)
        mask[[i for i, _ in self.failed]] = False
        return mask


def embed_images(
    encoder: Encoder,
    images: Sequence[ImageInput],
    *,
    batch_size: int | None = None,
    quiet: bool = False,
    description: str = "embedding images",
) -> ImageEmbeddings:
    """Embed ``images``; a batch holding an unreadable image is retried item by item.

    Images go to the encoder several batches at a time, so that encoders which
    decode the next batch while the model runs this one (onnxruntime) can.
    """
    bs = batch_size or encoder.batch_size
    out = np.zeros((len(images), encoder.dim), dtype=np.float32)
    failed: list[tuple[int, str]] = []

    def embed(start: int, chunk: Sequence[ImageInput]) -> None:
        try:
            out[start : start + len(chunk)] = encoder.encode_images(chunk, batch_size=bs)
        except ImageError as exc:
            if len(chunk) == 1:
                failed.append((start, str(exc).removeprefix("image 0").lstrip(": ")))
                return
            step = bs if len(chunk) > bs else 1  # a failing chunk: retry its batches, then their items
            for i in range(0, len(chunk), step):
                embed(start + i, chunk[i : i + step])

    chunk_size = bs * CHUNK_BATCHES
    with progress_bar(len(images), description, quiet=quiet) as advance:
        for start in range(0, len(images), chunk_size):
            chunk = images[start : start + chunk_size]
            embed(start, chunk)
            advance(len(chunk))
    failed.sort()
    return ImageEmbeddings(out, failed)


def embed_texts(
    encoder: Encoder, texts: Sequence[str], *, quiet: bool = False, description: str = "embedding texts"
) -> np.ndarray:
    bs = encoder.batch_size * 4
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with progress_bar(len(texts), description, quiet=quiet) as advance:
        for start in range(0, len(texts), bs):
            out[start : start + bs] = encoder.encode_texts(list(texts[start : start + bs]))
            advance(len(texts[start : start + bs]))
    return out


# ------------------------------------------------------------------------------- cache


def content_hash(items: Sequence[object]) -> str:
    """A digest of images (bytes; paths by name, size and mtime) or strings, in order."""
    h = hashlib.blake2b(digest_size=16)
    for item in items:
        if isinstance(item, (bytes, bytearray, memoryview)):
            h.update(b"b")
            h.update(bytes(item))
        elif isinstance(item, str):
            h.update(b"s")
            h.update(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, np.ndarray):
            h.update(f"a{item.dtype}{item.shape}".encode())
            h.update(np.ascontiguousarray(item).tobytes())
        elif isinstance(item, Image.Image):
            h.update(f"i{item.mode}{item.size}".encode())
            h.update(item.tobytes())
        elif isinstance(item, os.PathLike):
            st = Path(item).stat()
            h.update(f"p{Path(item).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            raise TypeError(f"cannot hash {type(item).__name__} for the embedding cache")
        h.update(b"\x00")
    return h.hexdigest()


def default_cache_dir() -> Path:
    from vestis.models.registry import cache_root

    return cache_root() / "embeddings"


class EmbeddingCache:
    """Arrays on disk keyed by (model fingerprint, kind, content hash); writes are atomic."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()

    def _path(self, encoder: Encoder, kind: str, digest: str) -> Path:
        key = hashlib.sha256(json.dumps([encoder.fingerprint, kind, digest]).encode()).hexdigest()[:32]
        return self.directory / f"{key}.npz"

    def load(self, encoder: Encoder, kind: str, digest: str) -> dict[str, np.ndarray] | None:
        path = self._path(encoder, kind, digest)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed

    def save(self, encoder: Encoder, kind: str, digest: str, **arrays: np.ndarray) -> None:
        path = self._path(encoder, kind, digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cached_image_embeddings(
    encoder: Encoder, images: Sequence[ImageInput], cache: EmbeddingCache | None, *, quiet: bool = False
) -> ImageEmbeddings:
    if cache is None:
        return embed_images(encoder, images, quiet=quiet)
    digest = content_hash(images)
    hit = cache.load(encoder, "images", digest)
    if hit is not None:
        reasons = json.loads(str(hit["failed"])) if "failed" in hit else []
        return ImageEmbeddings(hit["vectors"], [tuple(x) for x in reasons])
    result = embed_images(encoder, images, quiet=quiet)
    cache.save(encoder, "images", digest, vectors=result.vectors, failed=np.array(json.dumps(result.failed)))
    return result


def cached_text_embeddings(
    encoder: Encoder, texts: Sequence[str], cache: EmbeddingCache | None, *, quiet: bool = False
) -> np.ndarray:
    if cache is None or not texts:
        return embed_texts(encoder, texts, quiet=quiet)
    digest = content_hash(list(texts))
    hit = cache.load(encoder, "texts", digest)
    if hit is not None:
        return hit["vectors"]
    vectors = embed_texts(encoder, texts, quiet=quiet)
    cache.save(encoder, "texts", digest, vectors=vectors)
    return vectors
