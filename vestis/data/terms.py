"""Names of catalog field values in other languages (``terms_<lang>.yaml`` beside this module).

A term table maps ``field -> English value -> [name, synonym, ...]``: the first name is the one
composed captions use, the rest are other words shoppers type for the same thing. Fields are
the KAGL catalog's (``articleType``, ``baseColour``, ...) plus ``ccp`` for Clothing Co-Parsing's
garment labels. Used to compose Chinese training captions and Chinese test queries (issue #21).
English names of the same values in a sentence ("Tshirts" -> "t-shirt") come from :func:`natural_name`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import yaml

from vestis.errors import InputError

LANGUAGES = ("zh",)

#: KAGL article types whose English name in a sentence is not the label lower-cased and made singular.
_NATURAL = {
    "Tshirts": "t-shirt", "Lounge Tshirts": "lounge t-shirt", "Jeans": "jeans", "Trousers": "trousers",
    "Shorts": "shorts", "Track Pants": "track pants", "Capris": "capris", "Leggings": "leggings",
    "Jeggings": "jeggings", "Briefs": "briefs", "Boxers": "boxers", "Socks": "socks", "Tights": "tights",
    "Stockings": "stockings", "Lounge Pants": "lounge pants", "Lounge Shorts": "lounge shorts",
    "Night suits": "night suit", "Flip Flops": "flip flops", "Sunglasses": "sunglasses",
    "Perfume and Body Mist": "perfume", "Necklace and Chains": "necklace", "Kajal and Eyeliner": "eyeliner",
    "Sarees": "saree", "Dresses": "dress", "Watches": "watch", "Heels": "heels", "Flats": "flats",
    "Sandals": "sandals", "Casual Shoes": "casual shoes", "Sports Shoes": "sports shoes",
    "Formal Shoes": "formal shoes", "Sports Sandals": "sports sandals", "Booties": "booties",
    "Scarves": "scarf", "Rain Trousers": "rain trousers", "Suspenders": "suspenders",
    "Nail Essentials": "nail essentials",
}  # fmt: skip


def natural_name(label: str) -> str:
    """A readable singular form of a KAGL label ("Handbags" -> "handbag")."""
    if label in _NATURAL:
        return _NATURAL[label]
    word = label.strip().lower()
    if " and " in word:  # "Ties and Cufflinks": a pair of kinds, plural as they are
        return word
    if re.search(r"(ches|shes|sses|xes)$", word):
        return word[:-2]
    if re.search(r"[a-z]{2}[^aeiou]ies$", word):  # "accessories" -> "accessory" (not "ties")
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class Terms:
    """One language's names for catalog field values."""

    lang: str
    table: Mapping[str, Mapping[str, tuple[str, ...]]]

    def fields(self) -> list[str]:
        return list(self.table)

    def names(self, field: str, value: str) -> tuple[str, ...]:
        """Every name of ``value`` (first the caption name), or ``()`` when the table lacks it."""
        return self.table.get(field, {}).get(value, ())

    def name(self, field: str, value: str) -> str | None:
        """The caption name of ``value`` in this language, or ``None`` when the table lacks it."""
        names = self.names(field, value)
        return names[0] if names else None

    def labels(self, field: str, values: list[str]) -> dict[str, str]:
        """One distinct name per value of ``field``, for a set of class labels (zero-shot classes, captions).

        Each value gets its caption name unless another of ``values`` has the same one
        (Scarves and Mufflers are both 围巾); then it gets its first name that no other
        value has at all (丝巾, 围脖). A value the table lacks, or one left without a name of its own,
        is an error naming it.
        """
        missing = [v for v in values if not self.names(field, v)]
        if missing:
            raise InputError(f"the {self.lang} term table has no name for {field} {missing}")
        firsts = Counter(self.names(field, v)[0] for v in values)
        out = {}
        for v in values:
            first = self.names(field, v)[0]
            if firsts[first] == 1:
                out[v] = first
                continue
            others = {n for w in values if w != v for n in self.names(field, w)}
            own = [n for n in self.names(field, v) if n not in others]
            if not own:
                raise InputError(f"{field} {v!r} has no {self.lang} name that the other labels do not share")
            out[v] = own[0]
        return out


def parse_terms(data: object, *, lang: str, source: str) -> Terms:
    """Validate a term table read from YAML: a mapping of fields to values to non-empty name lists."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a term table maps fields to values to names")
    table: dict[str, Mapping[str, tuple[str, ...]]] = {}
    for field, values in data.items():
        if not isinstance(values, dict) or not values:
            raise InputError(f"{source}: field {field!r} needs a mapping of values to names")
        entries = {}
        for value, names in values.items():
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
                raise InputError(f"{source}: {field}.{value} needs a non-empty list of names")
            entries[str(value)] = tuple(dict.fromkeys(n.strip() for n in names))
        table[str(field)] = MappingProxyType(entries)
    return Terms(lang, MappingProxyType(table))


def load_terms(lang: str = "zh") -> Terms:
    """The bundled term table of ``lang``."""
    if lang not in LANGUAGES:
        raise InputError(f"no term table for language {lang!r}; bundled: {', '.join(LANGUAGES)}")
    name = f"terms_{lang}.yaml"
    text = resources.files("vestis.data").joinpath(name).read_text(encoding="utf-8")
    return parse_terms(yaml.safe_load(text), lang=lang, source=name)
