"""Training data: KAGL products and garments cropped from street photos, decoded once.

Images are brought to the model's input size as its image config says (vestis-mini
letterboxes onto white) and kept as one uint8 array;
captions are kept as indices into one list of unique strings, whose frozen
sentence embeddings are computed once.  The validation split is a stable hash
of the product id, so it never changes between runs or machines.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from vestis.data.catalog import read_catalog
from vestis.data.split import is_validation
from vestis.errors import ImageError
from vestis.models.preprocess import ImageConfig, load_image, resize_and_crop
from vestis.progress import progress_bar
from vestis.train.captions import garment_views, product_views

CCP_LABELS = (
    "null accessories bag belt blazer blouse bodysuit boots bra bracelet cape cardigan clogs coat dress earrings "
    "flats glasses gloves hair hat heels hoodie intimate jacket jeans jumper leggings loafers necklace panties pants "
    "pumps purse ring romper sandals scarf shirt shoes shorts skin skirt sneakers socks stockings suit sunglasses "
    "sweater sweatshirt swimwear t-shirt tie tights top vest wallet watch wedges"
).split()
_CCP_SKIP = {"null", "skin", "hair", "accessories", "intimate", "ring", "earrings", "bracelet", "necklace", "watch"}


@dataclass
class TrainingSet:
    images: np.ndarray  # uint8 (n, S, S, 3)
    views: list[dict[str, list[int]]]  # per item: field -> indices into strings
    strings: list[str]
    ids: list[str]
    labels: list[str]  # articleType (or garment label), for validation
    source: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class _Strings:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def ids(self, texts: list[str]) -> list[int]:
        return [self.index.setdefault(t, len(self.index)) for t in texts]

    def as_list(self) -> list[str]:
        return list(self.index)


def _encode_views(views: dict[str, list[str]], strings: _Strings) -> dict[str, list[int]]:
    return {k: strings.ids(v) for k, v in views.items() if v}


def kagl_items(
    path: str | Path,
    cfg: ImageConfig,
    val_fraction: float,
    split: str,
    quiet: bool = False,
    synonym_field: bool = False,
):
    """Yield (id, uint8 image at the model's input size, views, articleType) for the KAGL rows of ``split``."""
    table = read_catalog(path)
    ids = table.column("id").to_pylist()
    keep = [i for i, x in enumerate(ids) if is_validation(x, val_fraction) == (split == "val")]
    cols = ["articleType", "subCategory", "masterCategory", "baseColour", "season", "usage", "productDisplayName"]
    rows = table.select(cols).take(keep).to_pylist()
    images = table.column("image").take(keep).to_pylist()
    with progress_bar(len(keep), f"decoding KAGL {split}", quiet=quiet) as advance:
        for i, row, data in zip(keep, rows, images):
            advance(1)
            try:
                arr = resize_and_crop(load_image(data), cfg)
            except ImageError:
                continue
            yield str(ids[i]), arr, product_views(row, synonym_field), row["articleType"] or ""


def ccp_items(
    path: str | Path,
    cfg: ImageConfig,
    min_side: int = 24,
    cutout: bool = True,
    quiet: bool = False,
    synonym_field: bool = False,
):
    """Garments cropped from Clothing Co-Parsing photos by their pixel masks.

    Each garment gives its crop from the street photo and, with ``cutout``, the
    same garment cut out by its mask onto white (the catalog look).
    """
    table = pq.read_table(path, columns=["id", "image", "annotation", "mask"])
    rows = [r for r in table.to_pylist() if r["annotation"] == "pixel" and r["mask"]]
    with progress_bar(len(rows), "cropping street-photo garments", quiet=quiet) as advance:
        for row in rows:
            advance(1)
            photo = load_image(row["image"])
            pixels = np.asarray(photo)
            mask = np.asarray(Image.open(io.BytesIO(row["mask"])))
            if mask.shape[:2] != (photo.height, photo.width):
                continue
            for k in np.unique(mask):
                if k >= len(CCP_LABELS) or CCP_LABELS[k] in _CCP_SKIP:
                    continue
                ys, xs = np.nonzero(mask == k)
                top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                if bottom - top < min_side or right - left < min_side or len(ys) < 0.01 * mask.size:
                    continue
                pad_y, pad_x = (bottom - top) // 10, (right - left) // 10
                box = (max(0, left - pad_x), max(0, top - pad_y), min(photo.width, right + pad_x),
                       min(photo.height, bottom + pad_y))  # fmt: skip
                label = CCP_LABELS[k]
                views = garment_views(label, synonym_field)
                yield f"ccp-{row['id']}-{label}", resize_and_crop(photo.crop(box), cfg), views, label
                if cutout:
                    # the garment alone on white, as a catalog photographs it
                    x0, y0, x1, y1 = box
                    alone = np.where((mask[y0:y1, x0:x1] == k)[..., None], pixels[y0:y1, x0:x1], np.uint8(255))
                    crop = resize_and_crop(Image.fromarray(alone), cfg)
                    yield f"ccp-{row['id']}-{label}-cutout", crop, views, label


def build_training_set(sources, quiet: bool = False) -> TrainingSet:
    """Concatenate items from several generators of (id, image, views, label)."""
    strings = _Strings()
    images, views, ids, labels, source = [], [], [], [], []
    for name, items in sources:
        for item_id, arr, item_views, label in items:
            images.append(arr)
            views.append(_encode_views(item_views, strings))
            ids.append(item_id)
            labels.append(label)
            source.append(name)
    if not images:
        raise ValueError("no training items")
    return TrainingSet(np.stack(images), views, strings.as_list(), ids, labels, source)
