"""Clothing Co-Parsing (Yang, Luo, Lin, CVPR 2014; Apache-2.0): street photos, garment masks, tags.

One place for what training and evaluation both read from ``ccp.parquet``:

- :data:`CCP_LABELS`, the label list in mask-id order, and the garment labels
  (:data:`GARMENT_LABELS`: no skin, hair, jewellery or underwear);
- the held-out split: a stable hash of the *photo* id (:func:`is_heldout`), so no
  garment of a held-out photo is trained on, and no held-out photo serves as a
  compositing background either;
- :func:`garment_crops`: each garment of a pixel-annotated photo, boxed from its mask.

The held-out photos are vestis' real-photo validation set (``vestis eval classify
--dataset ccp-val``): garment crops from street photos, labelled by their masks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from vestis.data.split import is_validation
from vestis.models.preprocess import load_image

CCP_LABELS = (
    "null accessories bag belt blazer blouse bodysuit boots bra bracelet cape cardigan clogs coat dress earrings "
    "flats glasses gloves hair hat heels hoodie intimate jacket jeans jumper leggings loafers necklace panties pants "
    "pumps purse ring romper sandals scarf shirt shoes shorts skin skirt sneakers socks stockings suit sunglasses "
    "sweater sweatshirt swimwear t-shirt tie tights top vest wallet watch wedges"
).split()
#: Labels that are not a garment one would search a catalog for (or are too small to crop).
NOT_GARMENTS = frozenset(
    {"null", "skin", "hair", "accessories", "intimate", "ring", "earrings", "bracelet", "necklace", "watch"}
)
GARMENT_LABELS = tuple(lbl for lbl in CCP_LABELS if lbl not in NOT_GARMENTS)

#: Fraction of photos held out (by a stable hash of "ccp-<photo id>"); never trained on when a
#: recipe sets ``ccp_holdout``.
HELDOUT_FRACTION = 0.2


def is_heldout(photo_id: int | str) -> bool:
    return is_validation(f"ccp-{photo_id}", HELDOUT_FRACTION)


@dataclass
class Garment:
    photo_id: int
    label: str
    box: tuple[int, int, int, int]  # (left, top, right, bottom), padded by 10% of its size
    mask: np.ndarray  # bool, the garment's pixels inside ``box``


@dataclass
class Photo:
    id: int
    image: Image.Image
    mask: np.ndarray | None  # label ids (H, W) for pixel-annotated photos
    tags: list[str]


def read_photos(path: str | Path, split: str = "all", pixel_only: bool = False) -> Iterator[Photo]:
    """Photos of ``split`` ("all", "train": not held out, "val": held out), decoded lazily."""
    table = pq.read_table(path, columns=["id", "image", "annotation", "mask", "tags"])
    for row in table.to_pylist():
        if split != "all" and is_heldout(row["id"]) != (split == "val"):
            continue
        has_mask = row["annotation"] == "pixel" and bool(row["mask"])
        if pixel_only and not has_mask:
            continue
        photo = load_image(row["image"])
        mask = np.asarray(Image.open(io.BytesIO(row["mask"]))) if has_mask else None
        if mask is not None and mask.shape[:2] != (photo.height, photo.width):
            mask = None
            if pixel_only:
                continue
        yield Photo(row["id"], photo, mask, list(row["tags"] or []))


def garment_crops(photo: Photo, min_side: int = 24, min_area: float = 0.01) -> Iterator[Garment]:
    """Each garment of a pixel-annotated photo that is big enough to recognise."""
    mask = photo.mask
    if mask is None:
        return
    for k in np.unique(mask):
        if k >= len(CCP_LABELS) or CCP_LABELS[k] in NOT_GARMENTS:
            continue
        ys, xs = np.nonzero(mask == k)
        top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if bottom - top < min_side or right - left < min_side or len(ys) < min_area * mask.size:
            continue
        pad_y, pad_x = (bottom - top) // 10, (right - left) // 10
        box = (max(0, left - pad_x), max(0, top - pad_y), min(photo.image.width, right + pad_x),
               min(photo.image.height, bottom + pad_y))  # fmt: skip
        x0, y0, x1, y1 = box
        yield Garment(photo.id, CCP_LABELS[k], tuple(int(v) for v in box), mask[y0:y1, x0:x1] == k)


def background_fraction(mask: np.ndarray) -> float:
    return float((mask == 0).mean())


def heldout_garments(path: str | Path, limit: int | None = None) -> tuple[list[Image.Image], list[str]]:
    """Garment crops (as photographed, not cut out) of the held-out pixel-annotated photos."""
    images, labels = [], []
    for photo in read_photos(path, "val", pixel_only=True):
        for g in garment_crops(photo):
            images.append(photo.image.crop(g.box))
            labels.append(g.label)
            if limit is not None and len(images) >= limit:
                return images, labels
    return images, labels
