"""Searching a catalog with the garments of a photo ("shop the look").

:func:`search_garments` is what the CLI's ``vestis search --image street.jpg
--garment main|all|none|<group>`` and the HTTP API call: it finds the garments
(:mod:`vestis.garments.find`), searches with each chosen crop through
:meth:`vestis.search.Catalog.search` (every other search option passes through),
and returns one result list per query with the garment it came from.  A catalog
photo, or a street photo where nothing is found, is searched whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from vestis.errors import InputError
from vestis.garments.find import FindConfig, Garment, GarmentParse, parse_photo
from vestis.garments.groups import GROUPS
from vestis.garments.model import GarmentSegmenter
from vestis.models.preprocess import ImageInput, load_image
from vestis.search import Catalog, SearchResults

GARMENT_CHOICES = ("main", "all", "none")


@dataclass
class GarmentResults:
    garment: Garment | None  # None: the whole photo was the query
    results: SearchResults

    def to_dict(self) -> dict:
        return {"garment": self.garment.to_dict() if self.garment else None, **self.results.to_dict()}


def check_garment(garment: str) -> str:
    groups = tuple(g.name for g in GROUPS if g.is_garment)
    if garment not in GARMENT_CHOICES + groups:
        raise InputError(f"unknown garment {garment!r}; use one of: {', '.join(GARMENT_CHOICES + groups)}")
    return garment


def chosen_garments(parse: GarmentParse, garment: str) -> list[Garment | None]:
    """The garments ``garment`` asks for in ``parse`` (``[None]``: the whole photo)."""
    if check_garment(garment) == "none" or not parse.garments:
        return [None]
    if garment == "main":
        return [parse.main]
    if garment == "all":
        return list(parse.garments)
    return [next((g for g in parse.garments if g.group == garment), None)]


def search_garments(
    catalog: Catalog,
    image: ImageInput,
    garment: str = "main",
    *,
    text: str | None = None,
    segmenter: GarmentSegmenter | None = None,
    find_config: FindConfig = FindConfig(),
    **search_kwargs,
) -> list[GarmentResults]:
    """Search ``catalog`` with the photo's ``garment`` ("main", "all", "none" or a group name).

    ``text`` and ``search_kwargs`` go to :meth:`Catalog.search` for every query.
    """
    photo = load_image(image)
    if check_garment(garment) == "none":
        picks: list[Garment | None] = [None]
    else:
        picks = chosen_garments(parse_photo(photo, segmenter=segmenter, config=find_config), garment)
    out = []
    for g in picks:
        query = photo.crop(g.box) if g is not None else photo
        results = catalog.search(text, image=query, **search_kwargs)
        results.query["garment"] = g.to_dict() if g is not None else None
        out.append(GarmentResults(g, results))
    return out
