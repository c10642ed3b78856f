"""The encoder interface every backend implements.

An :class:`Encoder` owns a tokenizer and an image config; a backend supplies
two forward functions that map preprocessed arrays to projected embeddings.
Validation, batching, length-sorted text batches and L2 normalisation live here
once, for every backend.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from vestis.errors import InputError
from vestis.models.preprocess import DEFAULT_MAX_IMAGE_PIXELS, ImageConfig, ImageInput, pixel_batches
from vestis.models.runtime import default_decode_threads, default_threads
from vestis.models.text import TextTokenizer, validate_texts


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


class Encoder(ABC):
    """A two-tower image–text encoder.

    ``encode_images`` and ``encode_texts`` return float32 arrays of shape
    ``(n, dim)`` whose rows have unit L2 norm, so a dot product is the cosine
    similarity.  ``logit_scale`` is the trained temperature (already
    exponentiated): ``logit_scale * image @ text.T`` are the model's logits.
    """

    name: str
    dim: int
    logit_scale: float
    image_config: ImageConfig
    tokenizer: TextTokenizer
    batch_size: int = 32
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    #: Short description of the runtime, e.g. "torch fp32 (transformers CLIPModel)".
    runtime: str = ""
    #: Identifies weights and runtime, for embedding caches (set by ``load_encoder``).
    fingerprint: str = ""
    #: "fp32", "bf16" or "int8": the arithmetic the model runs in.
    precision: str = "fp32"
    #: Intra-op threads for inference (None: the runtime's default, every CPU).
    threads: int | None = None
    #: Image-decoding worker threads (None: see vestis.models.runtime; 0: inline).
    decode_threads: int | None = None
    #: Decode the next batch while the model runs this one.  Off for torch: its OpenMP
    #: threads stall at every barrier when another thread takes a core, so torch
    #: encoders decode with every core between batches instead.
    overlap_decode: bool = True
    #: Decode large JPEGs at reduced scale (libjpeg draft mode) where the model's input size allows.
    jpeg_draft: bool = True

    @property
    def context_length(self) -> int:
        return self.tokenizer.context_length

    # -- backend hooks -------------------------------------------------------------

    @abstractmethod
    def _forward_images(self, pixel_values: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W) -> unnormalised (n, dim)."""

    @abstractmethod
    def _forward_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """int64 (n, L) ids and mask -> unnormalised (n, dim)."""

    def _runtime_context(self) -> contextlib.AbstractContextManager[Any]:
        """Entered around every batch (thread settings, inference mode)."""
        return contextlib.nullcontext()

    # -- public API ----------------------------------------------------------------

    def encode_images(self, images: Sequence[ImageInput], *, batch_size: int | None = None) -> np.ndarray:
        """Embed PIL images, file paths or encoded bytes; float32 (n, dim), L2-normalised."""
        if isinstance(images, (str, bytes, bytearray)) or not isinstance(images, Sequence):
            raise InputError("images must be a list of PIL images, paths or bytes")
        bs = self._batch_size(batch_size)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        workers = self.decode_threads
        overlap = self.overlap_decode and len(images) > bs  # one batch: nothing to overlap with
        if workers is None:
            workers = default_decode_threads() if overlap else (self.threads or default_threads())
        if len(images) <= 1:
            workers = 0  # a single image (a query): no pool to start
        batches = pixel_batches(
            images,
            self.image_config,
            bs,
            workers=workers,
            prefetch=overlap,
            max_pixels=self.max_image_pixels,
            draft=self.jpeg_draft,
        )
        for start, pixels in batches:
            with self._runtime_context():
                out[start : start + len(pixels)] = self._forward_images(pixels)
        return l2_normalize(out)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed strings (truncated to the context length); float32 (n, dim), L2-normalised."""
        items = validate_texts(texts)
        bs = self._batch_size(batch_size)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        # Sorted by token length, so each batch pads only to its own longest item.
        for idx, ids, mask in self.tokenizer.batches(items, bs):
            with self._runtime_context():
                out[idx] = self._forward_texts(ids, mask)
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} dim={self.dim} {self.runtime}>"

    def _batch_size(self, batch_size: int | None) -> int:
        bs = self.batch_size if batch_size is None else batch_size
        if not isinstance(bs, int) or bs < 1:
            raise InputError(f"batch_size must be a positive integer, got {bs!r}")
        return bs
