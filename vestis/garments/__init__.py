"""Garments in street photos ("shop the look"): a small segmenter, boxes and crops.

>>> from vestis.garments import find_garments, garment_crop
>>> find_garments("street.jpg")                     # doctest: +SKIP
[Garment(group='dress', box=(31, 52, 140, 201), score=0.83, area=0.21), ...]
>>> garment_crop("street.jpg", "main").image         # doctest: +SKIP

The segmenter (:mod:`vestis.garments.model`) is a frozen ImageNet EfficientNet-Lite0
with a small feature-pyramid decoder trained on Clothing Co-Parsing's pixel masks
(:mod:`vestis.garments.train`); :mod:`vestis.garments.groups` lists what it predicts.
"""

from vestis.garments.find import (
    FindConfig,
    Garment,
    GarmentCrop,
    GarmentParse,
    default_segmenter,
    find_garments,
    garment_crop,
    parse_photo,
)
from vestis.garments.groups import GROUP_NAMES, GROUPS, GarmentGroup
from vestis.garments.model import GarmentSegmenter, SegmenterConfig, load_segmenter

__all__ = [
    "GROUPS",
    "GROUP_NAMES",
    "FindConfig",
    "Garment",
    "GarmentCrop",
    "GarmentGroup",
    "GarmentParse",
    "GarmentSegmenter",
    "SegmenterConfig",
    "default_segmenter",
    "find_garments",
    "garment_crop",
    "load_segmenter",
    "parse_photo",
]
