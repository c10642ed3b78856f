"""Names of catalog values: the Chinese term table (vestis/data/terms_zh.yaml) covers every value vestis trains
on, and the English names in sentences (natural_name) are words people use."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from vestis.data import demo_catalog_path, kagl_parquets
from vestis.data.ccp import GARMENT_LABELS
from vestis.data.terms import load_terms, natural_name, parse_terms
from vestis.errors import InputError

FIELDS = ["masterCategory", "subCategory", "articleType", "baseColour", "season", "usage"]
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def zh():
    return load_terms("zh")


def _missing(zh, paths) -> dict[str, list[str]]:
    return {f: sorted(v for v in vals if zh.name(f, v) is None) for f, vals in _values(paths).items()}


def _values(paths) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {f: set() for f in FIELDS}
    for p in paths:
        table = pq.read_table(p, columns=FIELDS)
        for f in FIELDS:
            seen[f].update(v for v in table.column(f).to_pylist() if v)
    return seen


def test_every_demo_catalog_value_has_a_chinese_name(zh):
    missing = _missing(zh, [demo_catalog_path()])
    assert not any(missing.values()), missing


@pytest.mark.skipif(not kagl_parquets(), reason="the shared KAGL data is absent")
def test_every_kagl_value_has_a_chinese_name(zh):
    missing = _missing(zh, kagl_parquets())
    assert not any(missing.values()), missing


def test_every_ccp_garment_label_has_a_chinese_name(zh):
    assert [g for g in GARMENT_LABELS if zh.name("ccp", g) is None] == []


def test_names_are_chinese_and_unique_within_an_entry(zh):
    for field in zh.fields():
        for value, names in zh.table[field].items():
            assert len(names) == len(set(names)), (field, value)
            # "T恤" has Han characters; only brand-like names may be Latin ("iPad" beside 平板电脑)
            assert HAN.search(names[0]), (field, value, names[0])


def test_common_synonyms_are_there(zh):
    assert zh.names("articleType", "Dresses")[:2] == ("连衣裙", "裙子")
    assert "球鞋" in zh.names("articleType", "Sports Shoes")
    assert zh.name("baseColour", "Navy Blue") == "藏青色"
    assert zh.name("articleType", "No Such Thing") is None


def test_bad_tables_and_languages_are_refused():
    with pytest.raises(InputError, match="articleType.Dresses"):
        parse_terms({"articleType": {"Dresses": []}}, lang="zh", source="x.yaml")
    with pytest.raises(InputError, match="field 'colour'"):
        parse_terms({"colour": "red"}, lang="zh", source="x.yaml")
    with pytest.raises(InputError, match="no term table for language 'fr'"):
        load_terms("fr")


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Handbags", "handbag"), ("Dresses", "dress"), ("Watches", "watch"), ("Tshirts", "t-shirt"),
        ("Scarves", "scarf"), ("Shoe Accessories", "shoe accessory"), ("Ties", "tie"), ("Booties", "booties"),
        ("Ties and Cufflinks", "ties and cufflinks"), ("Jeans", "jeans"), ("Travel Accessory", "travel accessory"),
    ],
)  # fmt: skip
def test_english_names_in_sentences_are_singular_words_people_use(label, name):
    assert natural_name(label) == name
