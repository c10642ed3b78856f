"""Training data: KAGL products and garments cropped from street photos, decoded once.

Images are brought to the model's input size as its image config says (vestis-mini
letterboxes onto white) and kept as one uint8 array;
captions are kept as indices into one list of unique strings, whose frozen
sentence embeddings are computed once.  The validation split is a stable hash
of the product id, so it never changes between runs or machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vestis.data.catalog import read_catalog
from vestis.data.ccp import garment_crops, heldout_garments, read_photos
from vestis.data.split import is_validation
from vestis.errors import ImageError, InputError
from vestis.models.preprocess import ImageConfig, load_image, resize_and_crop
from vestis.progress import progress_bar
from vestis.train.captions import garment_views_in, product_views_in


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
    languages: dict | None = None,
):
    """Yield (id, uint8 image at the model's input size, views, articleType) for the KAGL rows of ``split``.

    ``languages`` (:func:`~vestis.train.captions.caption_languages`; default English only): the
    languages whose captions the views hold.
    """
    languages = languages or {"en": None}
    table = read_catalog(path)
    ids = table.column("id").to_pylist()
    keep = [i for i, x in enumerate(ids) if is_validation(x, val_fraction) == (split == "val")]
    if not keep:  # every row in the other split (a validation-only file such as the bundled demo set)
        raise InputError(f"{path}: none of its {len(ids)} products is in the {split} split at "
                         f"val_fraction {val_fraction}; give a catalog with {split}-split products")  # fmt: skip
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
            yield str(ids[i]), arr, product_views_in(row, languages, synonym_field), row["articleType"] or ""


def ccp_items(
    path: str | Path,
    cfg: ImageConfig,
    min_side: int = 24,
    cutout: bool = True,
    quiet: bool = False,
    synonym_field: bool = False,
    holdout: bool = False,
    languages: dict | None = None,
):
    """Garments cropped from Clothing Co-Parsing photos by their pixel masks.

    Each garment gives its crop from the street photo and, with ``cutout``, the
    same garment cut out by its mask onto white (the catalog look).  ``holdout``
    leaves out the held-out photos (the real-photo validation set). ``languages`` as for
    :func:`kagl_items`.
    """
    languages = languages or {"en": None}
    photos = list(read_photos(path, "train" if holdout else "all", pixel_only=True))
    with progress_bar(len(photos), "cropping street-photo garments", quiet=quiet) as advance:
        for photo in photos:
            advance(1)
            pixels = np.asarray(photo.image)
            for g in garment_crops(photo, min_side):
                views = garment_views_in(g.label, languages, synonym_field)
                yield f"ccp-{photo.id}-{g.label}", resize_and_crop(photo.image.crop(g.box), cfg), views, g.label
                if cutout:
                    # the garment alone on white, as a catalog photographs it
                    x0, y0, x1, y1 = g.box
                    alone = np.where(g.mask[..., None], pixels[y0:y1, x0:x1], np.uint8(255))
                    crop = resize_and_crop(Image.fromarray(alone), cfg)
                    yield f"ccp-{photo.id}-{g.label}-cutout", crop, views, g.label


def ccp_val_items(path: str | Path, cfg: ImageConfig, quiet: bool = False):
    """The real-photo validation set: garment crops of the held-out photos, as photographed."""
    images, labels = heldout_garments(path)
    with progress_bar(len(images), "cropping held-out street-photo garments", quiet=quiet) as advance:
        for n, (img, label) in enumerate(zip(images, labels)):
            advance(1)
            yield f"ccp-val-{n}", resize_and_crop(img, cfg), {}, label


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
