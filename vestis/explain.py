"""Explain a match: which regions of an item's photo and which words of a query make its score.

* **Occlusion sensitivity** (Zeiler & Fergus, 2014). The photo, brought to the model's input
  size, is cut into a ``grid`` x ``grid`` array of cells; each cell in turn is painted with the
  model's mean colour (zero after normalisation), and the photo and every copy are embedded as
  one batch through :meth:`~vestis.models.base.Encoder.encode_images`, so it works for every
  model vestis loads. A cell's value is how much the photo's cosine to the query falls
  without it: positive cells raise the score.
* **Gradient x input** (torch models): the gradient of the same cosine with respect to the
  normalised pixels, times the pixels, summed over each cell: a first-order estimate of the
  fall when the cell goes to the mean colour. One forward and one backward pass.
* **Deletion test** (Petsiuk et al., 2018): cells are painted out in the order a map ranks
  them, a tenth of them at a time, and the cosine is read after each step (one batch). The
  faster it falls, the more faithful the map; :func:`deletion_curve` gives the curve and
  ``benchmarks/explain.py`` compares the two maps (and a random order) on KAGL.
* **Words** (leave-one-out): the cosine of the query to the item's indexed vector minus the
  cosine of the query without that word. A one-word query's word contributes its whole score.

The query is embedded as one text (no ``a, -b`` term weights). :func:`explain` is what the
CLI (``vestis explain``) and the HTTP API (``POST /v1/explain``) call.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from vestis.errors import InputError
from vestis.models.base import Encoder
from vestis.models.preprocess import (
    ImageConfig,
    ImageInput,
    content_box,
    load_image,
    normalize_batch,
    prepare_image,
)

METHODS = ("auto", "occlusion", "gradient")
DEFAULT_GRID = 8
MIN_GRID, MAX_GRID = 2, 16
#: Fractions of the cells a deletion curve removes, in order.
DELETION_STEPS = tuple(i / 10 for i in range(11))
MAX_QUERY_WORDS = 32


@dataclass(frozen=True)
class WordContribution:
    word: str
    contribution: float  # the query's cosine minus the cosine without this word


@dataclass
class Explanation:
    """Why an item matches a query: a map over its photo, and each word's contribution."""

    item_id: object
    query: str
    method: str  # the method of ``cells``: "occlusion" or "gradient"
    score: float  # cosine of the query to the item's indexed vector (what search ranks by)
    image_score: float  # cosine of the query to the photo alone (what the map explains)
    cells: np.ndarray  # (grid, grid): how much each cell raises the photo's score
    pixels: np.ndarray  # uint8 (H, W, 3): the photo as the model sees it
    words: list[WordContribution] = field(default_factory=list)
    occlusion: np.ndarray | None = None
    gradient: np.ndarray | None = None

    @property
    def grid(self) -> int:
        return int(self.cells.shape[0])

    def heatmap(self) -> np.ndarray:
        """float32 (H, W) in 0..1: the positive part of ``cells``, scaled to its maximum, smoothly
        brought to the photo's size."""
        pos = np.clip(self.cells, 0, None).astype(np.float32)
        top = float(pos.max())
        pos = pos / top if top > 0 else pos
        h, w = self.pixels.shape[:2]
        return np.asarray(Image.fromarray(pos, mode="F").resize((w, h), Image.Resampling.BILINEAR), np.float32)

    def overlay(self, min_side: int = 256) -> Image.Image:
        """The photo with the heat map over it (matplotlib's ``inferno``), at least ``min_side`` px."""
        from matplotlib import colormaps

        heat = self.heatmap()
        colours = colormaps["inferno"](heat)[..., :3] * 255
        alpha = (0.25 + 0.5 * heat)[..., None]
        mixed = (self.pixels * (1 - alpha) + colours * alpha).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(mixed)
        scale = max(1, -(-min_side // min(img.size)))
        return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale > 1 else img

    def overlay_png(self) -> bytes:
        buf = io.BytesIO()
        self.overlay().save(buf, format="PNG")
        return buf.getvalue()

    def regions(self, n: int = 3) -> list[dict]:
        """The ``n`` cells that raise the score most: row, column, value and box (x0, y0, x1, y1)
        in the model's input pixels."""
        h, w = self.pixels.shape[:2]
        order = np.argsort(-self.cells, axis=None)[:n]
        out = []
        for flat in order:
            r, c = divmod(int(flat), self.grid)
            (top, bottom), (left, right) = cell_span(h, self.grid, r), cell_span(w, self.grid, c)
            out.append({"row": r, "col": c, "value": round(float(self.cells[r, c]), 6),
                        "box": [left, top, right, bottom]})  # fmt: skip
        return out

    def to_dict(self) -> dict:
        def grid_of(a):
            return None if a is None else [[round(float(x), 6) for x in row] for row in a]

        return {
            "item_id": self.item_id, "query": self.query, "method": self.method,
            "score": round(self.score, 6), "image_score": round(self.image_score, 6), "grid": self.grid,
            "cells": grid_of(self.cells), "occlusion": grid_of(self.occlusion), "gradient": grid_of(self.gradient),
            "regions": self.regions(), "words": [{"word": w.word, "contribution": round(w.contribution, 6)}
                                                 for w in self.words],
        }  # fmt: skip


# --------------------------------------------------------------------------- the photo


def model_pixels(encoder: Encoder, image: ImageInput) -> tuple[np.ndarray, np.ndarray]:
    """(the photo as the model sees it: uint8 (H, W, 3) at its input size, bool (H, W): which of
    those pixels show the photo rather than padding the preprocessing added, e.g. a letterbox)."""
    cfg = encoder.image_config
    img = load_image(image, max_pixels=encoder.max_image_pixels)
    pixels = prepare_image(img, cfg, max_pixels=encoder.max_image_pixels)
    left, top, right, bottom = content_box(img.size, cfg)
    photo = np.zeros(pixels.shape[:2], dtype=bool)
    photo[top:bottom, left:right] = True
    return pixels, photo


def fill_colour(cfg: ImageConfig) -> np.ndarray:
    """The uint8 colour that normalises to (about) zero: the model's mean colour."""
    if not cfg.do_normalize:
        return np.zeros(3, np.uint8)
    return np.clip(np.round(np.asarray(cfg.mean, dtype=np.float64) / float(cfg.rescale_factor)), 0, 255).astype(
        np.uint8
    )


def cell_span(size: int, grid: int, i: int) -> tuple[int, int]:
    """Start and end pixel of the ``i``-th of ``grid`` cells along a side of ``size`` pixels."""
    return size * i // grid, size * (i + 1) // grid


def painted(pixels: np.ndarray, cells: np.ndarray, fill: np.ndarray, photo: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``pixels`` with the cells where ``cells`` (grid, grid bool) is true set to ``fill``;
    only the pixels that show the photo (``photo``, bool (H, W)) when it is given: padding stays."""
    out = pixels.copy()
    grid = cells.shape[0]
    h, w = pixels.shape[:2]
    for r, c in zip(*np.nonzero(cells)):
        (top, bottom), (left, right) = cell_span(h, grid, r), cell_span(w, grid, c)
        if photo is None:
            out[top:bottom, left:right] = fill
        else:
            out[top:bottom, left:right][photo[top:bottom, left:right]] = fill
    return out


def photo_cells(photo: np.ndarray, grid: int) -> np.ndarray:
    """bool (grid, grid): the cells that hold at least one pixel of the photo."""
    h, w = photo.shape
    out = np.zeros((grid, grid), dtype=bool)
    for r in range(grid):
        top, bottom = cell_span(h, grid, r)
        for c in range(grid):
            left, right = cell_span(w, grid, c)
            out[r, c] = photo[top:bottom, left:right].any()
    return out


def image_scores(encoder: Encoder, images: list[np.ndarray], query: np.ndarray) -> np.ndarray:
    """Cosine of each uint8 model-size image to ``query``, embedded as one batch."""
    emb = encoder.encode_images(list(images), batch_size=len(images))
    return emb @ np.asarray(query, dtype=np.float32)


def check_grid(grid: int) -> int:
    if isinstance(grid, bool) or not isinstance(grid, int) or not MIN_GRID <= grid <= MAX_GRID:
        raise InputError(f"grid must be an integer from {MIN_GRID} to {MAX_GRID}, got {grid!r}")
    return grid


def occlusion_map(
    encoder: Encoder, pixels: np.ndarray, query: np.ndarray, grid: int = DEFAULT_GRID, photo: np.ndarray | None = None
):
    """(cells (grid, grid), the photo's cosine): each cell's fall in cosine when its part of the
    photo is painted out. With ``photo`` (bool (H, W)), padding is never painted and cells of
    padding alone are 0 (only the photo is explained, not the border the preprocessing added)."""
    check_grid(grid)
    fill = fill_colour(encoder.image_config)
    keep = np.ones((grid, grid), dtype=bool) if photo is None else photo_cells(photo, grid)
    masks = [m for m in np.eye(grid * grid, dtype=bool).reshape(-1, grid, grid) if (m & keep).any()]
    scores = image_scores(encoder, [pixels] + [painted(pixels, m, fill, photo) for m in masks], query)
    cells = np.zeros((grid, grid), np.float32)
    cells[keep] = scores[0] - scores[1:]
    return cells, float(scores[0])


# -------------------------------------------------------------------------- gradients


def torch_image_forward(encoder: Encoder) -> tuple[Callable, object] | None:
    """(differentiable image tower: normalised pixels -> embedding, its dtype) of a torch encoder,
    or None when the encoder runs elsewhere (onnxruntime). A server's batching wrapper is looked through."""
    from vestis.models.mini_text_onnx import MiniTextOnnxEncoder
    from vestis.models.torch_backend import TorchEncoder, image_features
    from vestis.models.vestis_mini import VestisMiniEncoder

    encoder = getattr(encoder, "wrapped", encoder)
    if isinstance(encoder, VestisMiniEncoder):
        return encoder.model.image_tower, encoder.dtype
    if isinstance(encoder, MiniTextOnnxEncoder):  # text tower on onnxruntime, image tower on torch
        return encoder.image_tower(), encoder._dtype
    if isinstance(encoder, TorchEncoder):
        return (lambda x: image_features(encoder.model, x)), encoder.dtype
    model = getattr(encoder, "model", None)
    if type(encoder).__name__ == "OpenClipEncoder" and hasattr(model, "encode_image"):
        import torch

        return model.encode_image, torch.float32
    return None


def gradient_map(
    encoder: Encoder, pixels: np.ndarray, query: np.ndarray, grid: int = DEFAULT_GRID, photo: np.ndarray | None = None
):
    """Gradient x input of the photo's cosine to ``query``, summed per cell over the pixels of the
    photo (``photo``, bool (H, W); all pixels without it), (grid, grid); None for encoders that are
    not torch models."""
    check_grid(grid)
    forward = torch_image_forward(encoder)
    if forward is None:
        return None
    import torch

    from vestis.models.torch_backend import torch_threads

    fn, dtype = forward
    x = torch.from_numpy(normalize_batch(pixels[None], encoder.image_config)).to(dtype).requires_grad_(True)
    q = torch.from_numpy(np.asarray(query, dtype=np.float32))
    with torch_threads(encoder.threads), torch.enable_grad():
        emb = fn(x).float()
        score = torch.nn.functional.normalize(emb, dim=-1)[0] @ q
        (grad,) = torch.autograd.grad(score, x)
    per_pixel = (grad.float() * x.detach().float())[0].sum(0).numpy()
    if photo is not None:
        per_pixel = np.where(photo, per_pixel, 0.0)
    h, w = per_pixel.shape
    cells = np.zeros((grid, grid), np.float32)
    for r in range(grid):
        top, bottom = cell_span(h, grid, r)
        for c in range(grid):
            left, right = cell_span(w, grid, c)
            cells[r, c] = per_pixel[top:bottom, left:right].sum()
    return cells


# ------------------------------------------------------------------------ faithfulness


def deletion_curve(
    encoder: Encoder,
    pixels: np.ndarray,
    query: np.ndarray,
    cells: np.ndarray,
    steps=DELETION_STEPS,
    photo: np.ndarray | None = None,
) -> np.ndarray:
    """The photo's cosine after painting out the top ``f`` of cells by ``cells`` for each ``f`` of
    ``steps`` (one batch; only the photo's pixels when ``photo`` is given); a faithful map makes it
    fall fast."""
    grid = cells.shape[0]
    order = np.argsort(-cells, axis=None, kind="stable")
    fill = fill_colour(encoder.image_config)
    images = []
    for f in steps:
        mask = np.zeros(grid * grid, dtype=bool)
        mask[order[: int(round(f * grid * grid))]] = True
        images.append(painted(pixels, mask.reshape(grid, grid), fill, photo))
    return image_scores(encoder, images, query)


def deletion_area(curve: np.ndarray) -> float:
    """Mean of a deletion curve relative to its start (lower is more faithful)."""
    start = float(curve[0])
    return float(np.mean(curve) / start) if start > 0 else float(np.mean(curve))


# ------------------------------------------------------------------------------ words


def query_words(query: str) -> list[str]:
    words = re.findall(r"\S+", query)
    if not words:
        raise InputError("the query is empty")
    if len(words) > MAX_QUERY_WORDS:
        raise InputError(f"the query has {len(words)} words; explain takes at most {MAX_QUERY_WORDS}")
    return words


def word_contributions(encoder: Encoder, query: str, target: np.ndarray) -> tuple[list[WordContribution], np.ndarray]:
    """(each word's leave-one-out contribution to the cosine with ``target``, the query's vector)."""
    words = query_words(query)
    variants = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    texts = [query] + [v for v in variants if v]
    emb = encoder.encode_texts(texts)
    full = float(emb[0] @ target)
    rest = iter(emb[1:] @ target)
    out = [WordContribution(w, full - (float(next(rest)) if v else 0.0)) for w, v in zip(words, variants)]
    return out, emb[0]


# ---------------------------------------------------------------------------- explain


def explain(
    catalog,
    item_id: object,
    query: str,
    *,
    method: str = "auto",
    grid: int = DEFAULT_GRID,
    image: ImageInput | None = None,
) -> Explanation:
    """Why ``item_id`` of ``catalog`` (a :class:`vestis.search.Catalog`) matches ``query``.

    ``method``: ``occlusion``, ``gradient`` (torch models only) or ``auto`` (gradient where
    the model allows it, as it measured more faithful on KAGL, else occlusion; both maps are
    returned whenever they are computed). ``image`` replaces the item's stored photo.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    check_grid(grid)
    if not isinstance(query, str):
        raise InputError("the query must be text")
    query_words(query)  # an empty or overlong query is refused before any work
    key = str(item_id)
    rec = catalog.store.get([key], vectors=True, thumbnails=True).get(key)
    if rec is None:
        raise InputError(f"no item {item_id!r} in the index")
    if image is None:
        image = item_photo(rec)
    encoder = catalog.encoder
    words, q = word_contributions(encoder, query, rec.vector)
    pixels, photo = model_pixels(encoder, image)
    gradient = gradient_map(encoder, pixels, q, grid, photo) if method in ("auto", "gradient") else None
    if method == "gradient" and gradient is None:
        raise InputError(f"model {encoder.name!r} runs on {encoder.runtime or 'a runtime'} without gradients: "
                         "use method occlusion")  # fmt: skip
    occlusion, image_score = occlusion_map(encoder, pixels, q, grid, photo)
    chosen = "gradient" if gradient is not None and method != "occlusion" else "occlusion"
    return Explanation(
        item_id=rec.id_value if rec.id_value is not None else rec.id, query=query, method=chosen,
        score=float(rec.vector @ q), image_score=image_score, cells=gradient if chosen == "gradient" else occlusion,
        pixels=pixels, words=words, occlusion=occlusion, gradient=gradient,
    )  # fmt: skip


def item_photo(rec) -> ImageInput:
    """An indexed item's photo: its image file when it is still there, else its stored thumbnail."""
    from pathlib import Path

    if rec.image_ref and Path(rec.image_ref).is_file():
        return rec.image_ref
    if rec.thumbnail:
        return rec.thumbnail
    raise InputError(f"item {rec.id_value if rec.id_value is not None else rec.id!r} has no photo in the index")
