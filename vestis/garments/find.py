"""Garments found in a photo: boxes from the segmenter's group masks, and crops.

A photo is a *street photo* (one to crop) when the segmenter sees a person in it
(``person`` pixels: skin, hair) on a backdrop that is not plain; a catalog photo —
a product on white or one flat colour, with or without a model — goes through
unchanged, since that is what a catalog index holds.

Each garment group's predicted pixels are split into connected components; specks
(below ``min_area`` of the photo, or a small fraction of the group's largest part)
are dropped, and parts of one group that lie close together are merged (two shoes
are a pair; an open jacket splits the top beneath it in two).  Boxes are padded by
10% of their size, as :func:`vestis.data.ccp.garment_crops` pads its ground truth.
The *main garment* is the largest one that is not shoes, a bag or a hat.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from vestis.errors import InputError
from vestis.garments.groups import GROUPS, NOT_MAIN
from vestis.garments.model import GarmentSegmenter, Segmentation, load_segmenter
from vestis.models.preprocess import ImageInput, load_image

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in the photo's pixels


@dataclass(frozen=True)
class FindConfig:
    """Thresholds of :func:`find_garments` (chosen on CCP training photos and KAGL's train split)."""

    #: A component smaller than this share of the photo is a speck.
    min_area: float = 0.003
    #: ... or smaller than this share of its group's largest component.
    min_part: float = 0.15
    #: Parts of a group merge when their boxes, grown by this share of their size, touch.
    merge_reach: float = 0.25
    pad: float = 0.1
    #: A street photo shows at least this share of person pixels ...
    min_person: float = 0.01
    #: ... on a backdrop whose border is not this uniform (share of the frame's background pixels near their
    #: median colour; :func:`plain_border`).
    plain_border: float = 0.8
    border_tolerance: int = 24


@dataclass(frozen=True)
class Garment:
    group: str
    box: Box
    score: float  # mean probability of the group over the garment's pixels
    area: float  # share of the photo's pixels

    def to_dict(self) -> dict:
        return {"group": self.group, "box": list(self.box), "score": round(self.score, 4), "area": round(self.area, 4)}


@dataclass(frozen=True)
class GarmentParse:
    """What :func:`parse_photo` saw: the garments, and whether the photo is one to crop."""

    size: tuple[int, int]  # (width, height) of the photo
    garments: tuple[Garment, ...]  # largest first; empty for a catalog photo
    person: float  # share of person pixels
    plain_backdrop: bool

    @property
    def street(self) -> bool:
        return bool(self.garments)

    @property
    def main(self) -> Garment | None:
        """The largest garment that is not shoes, a bag or a hat (else the largest)."""
        wearable = [g for g in self.garments if g.group not in NOT_MAIN]
        return (wearable or list(self.garments) or [None])[0]

    def to_dict(self) -> dict:
        main = self.main
        return {
            "size": list(self.size),
            "street": self.street,
            "person": round(self.person, 4),
            "plain_backdrop": self.plain_backdrop,
            "main": self.garments.index(main) if main else None,
            "garments": [g.to_dict() for g in self.garments],
        }


@dataclass(frozen=True)
class GarmentCrop:
    image: Image.Image  # the crop, or the photo itself when nothing was cropped
    garment: Garment | None  # None: the photo went through unchanged


@functools.lru_cache(maxsize=1)
def default_segmenter() -> GarmentSegmenter:
    """The bundled segmenter, loaded once per process."""
    return load_segmenter()


def plain_border(pixels: np.ndarray, tolerance: int, background: np.ndarray | None = None) -> float:
    """How plain the photo's backdrop is: the share of its border pixels (a 4%-wide frame) within
    ``tolerance`` of their median colour, counting only ``background`` pixels when a mask is given
    (a model's arms and legs reach the frame of many catalog photos).  0 when under a tenth of the
    frame is background: a close-up has no backdrop to judge.
    """
    h, w = pixels.shape[:2]
    by, bx = max(1, round(0.04 * h)), max(1, round(0.04 * w))
    frame = np.zeros((h, w), dtype=bool)
    frame[:by], frame[-by:], frame[:, :bx], frame[:, -bx:] = True, True, True, True
    chosen = frame if background is None else frame & background
    if chosen.sum() < 0.1 * frame.sum():
        return 0.0
    colours = pixels[chosen].astype(np.int16)
    median = np.median(colours, axis=0)
    return float((np.abs(colours - median).max(axis=1) <= tolerance).mean())


def _grow(box: tuple[float, float, float, float], reach: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    dx, dy = reach * (x1 - x0), reach * (y1 - y0)
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def _touch(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def group_boxes(mask: np.ndarray, config: FindConfig = FindConfig()) -> list[tuple[Box, np.ndarray]]:
    """Boxes (unpadded, in ``mask``'s pixels, right/bottom exclusive) of one group's mask, with each box's pixels.

    Components below ``min_area`` of the mask or ``min_part`` of the largest are dropped;
    components whose boxes, grown by ``merge_reach``, touch are merged (repeatedly).
    """
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    areas = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    keep = (areas >= config.min_area * mask.size) & (areas >= config.min_part * areas.max())
    parts = []  # (box, component ids)
    for i, sl in enumerate(ndimage.find_objects(labelled), start=1):
        if sl is not None and keep[i - 1]:
            parts.append(((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), [i]))
    merged = True
    while merged:
        merged = False
        for a in range(len(parts)):
            for b in range(a + 1, len(parts)):
                (ba, ia), (bb, ib) = parts[a], parts[b]
                if _touch(_grow(ba, config.merge_reach), _grow(bb, config.merge_reach)):
                    box = (min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3]))
                    parts[a] = (box, ia + ib)
                    del parts[b]
                    merged = True
                    break
            if merged:
                break
    return [(box, np.isin(labelled, ids)) for box, ids in parts]


def pad_box(box: Box, pad: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    px, py = int((x1 - x0) * pad), int((y1 - y0) * pad)
    return max(0, x0 - px), max(0, y0 - py), min(width, x1 + px), min(height, y1 + py)


def garments_from_segmentation(seg: Segmentation, size: tuple[int, int], config: FindConfig = FindConfig()):
    """Every garment in ``seg`` (boxes in the original photo of ``size``), largest first."""
    labels = seg.labels
    width, height = size
    found = []
    for index, name in enumerate(seg.groups):
        if not any(g.name == name and g.is_garment for g in GROUPS):
            continue
        for (x0, y0, x1, y1), pixels in group_boxes(labels == index, config):
            box = (
                int(np.floor(x0 / seg.scale)), int(np.floor(y0 / seg.scale)),
                int(np.ceil(x1 / seg.scale)), int(np.ceil(y1 / seg.scale)),
            )  # fmt: skip
            box = pad_box(box, config.pad, width, height)
            score = float(seg.probs[index][pixels].mean())
            found.append(Garment(name, box, score, float(pixels.mean())))
    return sorted(found, key=lambda g: -g.area)


def parse_photo(
    image: ImageInput, *, segmenter: GarmentSegmenter | None = None, config: FindConfig = FindConfig()
) -> GarmentParse:
    """Segment ``image`` and box its garments, unless it is a catalog photo (no person, or a plain backdrop)."""
    photo = load_image(image)
    seg = (segmenter or default_segmenter()).segment(photo)
    labels = seg.labels
    person = float((labels == seg.groups.index("person")).mean()) if "person" in seg.groups else 0.0
    background = labels == seg.groups.index("background") if "background" in seg.groups else None
    plain = plain_border(seg.pixels, config.border_tolerance, background) >= config.plain_border
    garments = ()
    if person >= config.min_person and not plain:
        garments = tuple(garments_from_segmentation(seg, photo.size, config))
    return GarmentParse(photo.size, garments, person, plain)


def find_garments(
    image: ImageInput, *, segmenter: GarmentSegmenter | None = None, config: FindConfig = FindConfig()
) -> list[Garment]:
    """The garments in a street photo, largest first; ``[]`` for a catalog photo (see the module docstring)."""
    return list(parse_photo(image, segmenter=segmenter, config=config).garments)


def garment_crop(
    image: ImageInput,
    which: str = "main",
    *,
    segmenter: GarmentSegmenter | None = None,
    config: FindConfig = FindConfig(),
) -> GarmentCrop:
    """The photo cropped to one garment: ``"main"``, or a group name (its largest garment).

    A catalog photo, or a street photo without such a garment, comes back unchanged
    (``garment`` is None).
    """
    names = [g.name for g in GROUPS if g.is_garment]
    if which != "main" and which not in names:
        raise InputError(f"unknown garment {which!r}; use 'main' or one of: {', '.join(names)}")
    photo = load_image(image)
    parse = parse_photo(photo, segmenter=segmenter, config=config)
    chosen = parse.main if which == "main" else next((g for g in parse.garments if g.group == which), None)
    if chosen is None:
        return GarmentCrop(photo, None)
    return GarmentCrop(photo.crop(chosen.box), chosen)
