"""Chinese caption views composed from the term table (issue #21)."""

from __future__ import annotations

from vestis.data.terms import load_terms
from vestis.train.captions import garment_views_zh, product_views, product_views_zh

ROW = {
    "articleType": "Dresses",
    "subCategory": "Dress",
    "masterCategory": "Apparel",
    "baseColour": "Black",
    "usage": "Party",
    "season": "Summer",
    "productDisplayName": "Athena Women Black Dress",
}


def test_chinese_views_cover_the_same_fields_as_english_except_the_title():
    zh = product_views_zh(ROW, load_terms("zh"))
    assert set(product_views(ROW)) - set(zh) == {"title"}
    assert "黑色连衣裙" in zh["composed"] and "夏季黑色连衣裙" in zh["composed"]
    assert {"连衣裙", "裙子"} <= set(zh["article"])
    assert zh["colour"][1] == "黑色" and zh["season"][0] == "夏季新款"
    assert all(c and "None" not in c for captions in zh.values() for c in captions)


def test_missing_and_unknown_values_give_no_caption_for_their_field():
    row = dict(ROW, baseColour="", season=None, usage="Unheard Of")
    zh = product_views_zh(row, load_terms("zh"))
    assert "colour" not in zh and "season" not in zh and "usage" not in zh
    assert zh["composed"] == zh["composed_plain"] and zh["composed"][0] == "连衣裙"


def test_street_garments_have_chinese_views():
    zh = garment_views_zh("sneakers", load_terms("zh"))
    assert "运动鞋" in zh["article"] and "球鞋" in zh["article"]
    assert garment_views_zh("no-such-label", load_terms("zh")) == {}


def test_chinese_synonyms_may_be_a_field_of_their_own():
    terms = load_terms("zh")
    mixed, split = product_views_zh(ROW, terms), product_views_zh(ROW, terms, synonym_field=True)
    assert "裙子" in mixed["article"] and "synonym" not in mixed
    assert "裙子" not in split["article"] and {"裙子", "一张裙子的照片"} <= set(split["synonym"])
    assert split["composed"] == mixed["composed"]  # only the article names move
    sneakers = garment_views_zh("sneakers", terms, synonym_field=True)
    assert "球鞋" in sneakers["synonym"] and "球鞋" not in sneakers["article"]
