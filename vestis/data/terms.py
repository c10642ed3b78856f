"""Names of catalog field values in other languages (``terms_<lang>.yaml`` beside this module).

A term table maps ``field -> English value -> [name, synonym, ...]``: the first name is the one
composed captions use, the rest are other words shoppers type for the same thing. Fields are
the KAGL catalog's (``articleType``, ``baseColour``, ...) plus ``ccp`` for Clothing Co-Parsing's
garment labels. Used to compose Chinese training captions and Chinese test queries (issue #21).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import yaml

from vestis.errors import InputError

LANGUAGES = ("zh",)


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
