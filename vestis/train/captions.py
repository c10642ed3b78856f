"""Text views of a product for multi-field contrastive training (Marqo's GCL idea).

Each field gives a list of candidate captions; one is drawn per step. Fields
that need colour have a colourless twin, used when an augmentation (grayscale,
inversion) has removed the colour from the image.
"""

from __future__ import annotations

from vestis.data.terms import natural_name
from vestis.errors import InputError

#: Field weights in the loss (configurable per run).
DEFAULT_FIELD_WEIGHTS = {
    "article": 1.0,
    "composed": 1.0,
    "title": 1.0,
    "sub": 0.5,
    "colour": 0.5,
    "master": 0.25,
    "usage": 0.2,
    "season": 0.1,
}
#: Fields whose captions name the colour.
COLOUR_FIELDS = ("colour",)


#: Other common names of KAGL article types and street-photo garment labels, so that the
#: text head learns the words shoppers use ("sneakers", "pullover", "purse"), not only
#: KAGL's.  Written for the whole taxonomy from general fashion vocabulary; never from
#: an evaluation set's class list.
SYNONYMS = {
    "Tshirts": ["tee", "tee shirt", "top"], "Shirts": ["button-down shirt", "collared shirt"],
    "Casual Shoes": ["sneakers", "trainers", "canvas shoes"],
    "Sports Shoes": ["sneakers", "trainers", "running shoes", "athletic shoes"],
    "Formal Shoes": ["dress shoes", "oxford shoes", "leather shoes"], "Heels": ["high heels", "pumps"],
    "Flats": ["ballet flats", "flat shoes"], "Flip Flops": ["slippers", "thong sandals"],
    "Sports Sandals": ["sandals"], "Booties": ["baby boots", "boots"], "Watches": ["wristwatch"],
    "Kurtas": ["tunic"], "Kurtis": ["tunic"], "Tunics": ["long top"], "Tops": ["blouse"],
    "Handbags": ["bag", "purse", "shoulder bag", "tote bag"], "Backpacks": ["rucksack", "school bag", "bag"],
    "Rucksacks": ["backpack", "bag"], "Clutches": ["clutch bag", "evening bag", "bag"],
    "Duffel Bag": ["travel bag", "gym bag", "bag"], "Laptop Bag": ["bag"], "Messenger Bag": ["shoulder bag", "bag"],
    "Trolley Bag": ["suitcase", "luggage"], "Wallets": ["billfold"],
    "Sweaters": ["pullover", "jumper", "knitwear", "knitted sweater"],
    "Sweatshirts": ["pullover", "hoodie", "jumper"], "Jackets": ["coat", "outerwear"],
    "Rain Jacket": ["raincoat", "coat"], "Blazers": ["suit jacket"], "Waistcoat": ["vest"],
    "Trousers": ["pants", "slacks", "chinos"], "Jeans": ["denim pants", "denim trousers"],
    "Track Pants": ["joggers", "sweatpants"], "Lounge Pants": ["pyjama pants"], "Capris": ["cropped trousers"],
    "Dresses": ["frock", "gown"], "Nightdress": ["nightgown", "nightie"], "Night suits": ["pyjamas"],
    "Rompers": ["playsuit"], "Swimwear": ["swimsuit", "bathing suit"], "Sarees": ["sari"],
    "Sunglasses": ["shades", "eyewear"], "Caps": ["baseball cap", "hat"], "Hat": ["cap"],
    "Briefs": ["underwear"], "Boxers": ["underwear"], "Trunk": ["underwear"], "Bra": ["lingerie"],
    "Innerwear Vests": ["undershirt"], "Scarves": ["shawl"], "Stoles": ["scarf"], "Mufflers": ["scarf"],
    "Bangle": ["bracelet"], "Pendant": ["necklace"], "Perfume and Body Mist": ["fragrance"],
    # street-photo garment labels (Clothing Co-Parsing)
    "coat": ["overcoat", "winter coat"], "jumper": ["sweater", "pullover"], "sweater": ["pullover", "jumper"],
    "sweatshirt": ["pullover"], "cardigan": ["knitwear"], "boots": ["a pair of boots", "leather boots"],
    "sneakers": ["trainers", "sports shoes"], "pants": ["trousers"], "t-shirt": ["tee"], "purse": ["bag"],
    "bag": ["handbag"], "heels": ["high heels"], "pumps": ["heels"], "shoes": ["footwear"], "blazer": ["jacket"],
}  # fmt: skip


def _synonym_captions(synonyms: list[str]) -> list[str]:
    return [caption for other in synonyms for caption in (f"a photo of {_a(other)}.", other)]


def _a(word: str) -> str:
    if word.startswith(("a ", "an ")):
        return word
    return ("an " if word[:1] in "aeiou" else "a ") + word


def product_views(row: dict, synonym_field: bool = False) -> dict[str, list[str]]:
    """Caption candidates per field for one KAGL product (empty fields give no captions).

    Synonyms ("sneakers" for casual and for sports shoes) are drawn among the article
    captions, or with ``synonym_field`` kept in a field of their own, so that the
    article field stays specific and the synonyms get their own weight.
    """

    def get(key: str) -> str:
        return (row.get(key) or "").strip()

    article, sub, master = get("articleType"), get("subCategory"), get("masterCategory")
    colour, usage, season, title = (
        get("baseColour").lower(),
        get("usage").lower(),
        get("season").lower(),
        get("productDisplayName"),
    )
    views: dict[str, list[str]] = {}
    if article:
        nat = natural_name(article)
        views["article"] = [f"a photo of {_a(nat)}.", article, f"a photo of a {article}.", nat, f"{_a(nat)}"]
        synonyms = SYNONYMS.get(article, [])
        named = _synonym_captions(synonyms)
        if synonym_field:
            if named:
                views["synonym"] = named
        else:
            views["article"] += named
        plain = [f"a photo of {_a(nat)}" + (f" for {usage} wear" if usage else ""), f"{_a(nat)}"]
        views["composed_plain"] = plain
        if colour:
            views["composed"] = [
                f"a photo of {_a(colour + ' ' + nat)}.",
                f"{_a(colour + ' ' + nat)}" + (f" for {usage} wear" if usage else ""),
                f"{colour} {article}",
                f"{_a(colour + ' ' + nat)}" + (f", {season} collection" if season else ""),
            ] + ([] if synonym_field else [f"{_a(colour + ' ' + other)}" for other in synonyms])
        else:
            views["composed"] = plain
    if sub:
        views["sub"] = [f"a photo of {sub.lower()}", sub]
    if master:
        views["master"] = [master, f"{_a(master.lower())} product"]
    if colour:
        views["colour"] = [f"something {colour}", f"a {colour} product", colour]
    if usage:
        views["usage"] = [f"{usage} wear", f"for {usage} occasions"]
    if season:
        views["season"] = [f"{season} fashion", f"for {season}"]
    if title:
        views["title"] = [title]
    return views


def garment_views(label: str, synonym_field: bool = False) -> dict[str, list[str]]:
    """Caption candidates for a garment cropped from a street photo (label only)."""
    nat = label.replace("-", " ")
    captions = [f"a photo of {_a(nat)}.", nat, f"{_a(nat)}", f"a photo of {_a(nat)} worn by a person"]
    named = _synonym_captions(SYNONYMS.get(label, []))
    if not synonym_field:
        captions += named
    views = {"article": captions, "composed": captions, "composed_plain": captions}
    if synonym_field and named:
        views["synonym"] = named
    return views


def product_views_zh(row: dict, terms, synonym_field: bool = False) -> dict[str, list[str]]:
    """Simplified-Chinese caption candidates per field for one KAGL product (issue #21).

    Composed from ``terms`` (:func:`vestis.data.terms.load_terms`) as the English ones are
    composed from the field values: the article field draws among the article type's names
    (its synonyms included), ``composed`` joins colour, article and occasion the way Chinese
    shop titles do ("黑色连衣裙", "夏季黑色连衣裙"). The free-text title has no Chinese form
    and gives no caption. Values the table lacks give no caption for their field. With
    ``synonym_field`` the article type's other names form a ``synonym`` field of their own,
    as in :func:`product_views`.
    """

    def name(field: str) -> tuple[str, ...]:
        return terms.names(field, (row.get(field) or "").strip())

    article, sub, master = name("articleType"), name("subCategory"), name("masterCategory")
    colour, usage, season = name("baseColour"), name("usage"), name("season")
    views: dict[str, list[str]] = {}
    if article:
        main = article[0]
        views["article"] = [f"一张{main}的照片", *(article[:1] if synonym_field else article)]
        if synonym_field and len(article) > 1:
            views["synonym"] = _synonym_captions_zh(article[1:])
        plain = [main, f"{usage[0]}{main}" if usage else f"一张{main}的照片"]
        views["composed_plain"] = plain
        if colour:
            views["composed"] = [
                f"{colour[0]}{main}",
                f"一张{colour[0]}{main}的照片",
                f"{colour[-1]}的{article[-1]}",
                f"{season[0]}{colour[0]}{main}" if season else f"{colour[0]}的{main}",
                f"{usage[0]}{colour[0]}{main}" if usage else f"{colour[0]}{main}",
            ]
        else:
            views["composed"] = plain
    if sub:
        views["sub"] = [sub[0], f"{sub[0]}类商品"]
    if master:
        views["master"] = [master[0], f"{master[0]}商品"]
    if colour:
        views["colour"] = [f"{colour[0]}的商品", colour[0], *colour[1:]]
    if usage:
        views["usage"] = [f"{usage[0]}风格", f"适合{usage[0]}场合"]
    if season:
        views["season"] = [f"{season[0]}新款", f"适合{season[-1]}穿"]
    return views


def garment_views_zh(label: str, terms, synonym_field: bool = False) -> dict[str, list[str]]:
    """Simplified-Chinese caption candidates for a garment cropped from a street photo."""
    names = terms.names("ccp", label)
    if not names:
        return {}
    captions = [f"一张{names[0]}的照片", *(names[:1] if synonym_field else names), f"穿在身上的{names[0]}"]
    views = {"article": captions, "composed": captions, "composed_plain": captions}
    if synonym_field and len(names) > 1:
        views["synonym"] = _synonym_captions_zh(names[1:])
    return views


def _synonym_captions_zh(names: tuple[str, ...]) -> list[str]:
    return [caption for name in names for caption in (f"一张{name}的照片", name)]


#: The languages training captions are composed in: English from the catalog's values, the
#: others through their term table (:mod:`vestis.data.terms`) by these composers.
_COMPOSERS = {"zh": (product_views_zh, garment_views_zh)}
CAPTION_LANGUAGES = ("en", *_COMPOSERS)


def field_key(field: str, lang: str) -> str:
    """Where an item's views keep ``field`` in ``lang``: English under the field's name (as v1-v6 did),
    another language under ``field@lang``."""
    return field if lang == "en" else f"{field}@{lang}"


def check_languages(languages) -> tuple[str, ...]:
    """The caption languages asked for, or an error naming the unknown ones."""
    langs = tuple(dict.fromkeys(languages))
    unknown = [lang for lang in langs if lang not in CAPTION_LANGUAGES]
    if not langs or unknown:
        raise InputError(f"caption languages must be some of {list(CAPTION_LANGUAGES)}, not {list(languages)}")
    return langs


def caption_languages(languages) -> dict:
    """``languages`` checked, each with what composes its captions: its term table (None for English)."""
    from vestis.data.terms import load_terms

    return {lang: None if lang == "en" else load_terms(lang) for lang in check_languages(languages)}


def multilingual_views(per_language: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """One item's caption views in several languages, each field under :func:`field_key`."""
    return {field_key(f, lang): captions for lang, views in per_language.items() for f, captions in views.items()}


def product_views_in(row: dict, languages: dict, synonym_field: bool = False) -> dict[str, list[str]]:
    """A KAGL product's views in every language of ``languages`` (language -> its term table; None for English)."""
    return multilingual_views({
        lang: product_views(row, synonym_field) if lang == "en" else _COMPOSERS[lang][0](row, terms, synonym_field)
        for lang, terms in languages.items()
    })  # fmt: skip


def garment_views_in(label: str, languages: dict, synonym_field: bool = False) -> dict[str, list[str]]:
    """A street-photo garment's views in every language of ``languages`` (as :func:`product_views_in`)."""
    return multilingual_views({
        lang: garment_views(label, synonym_field) if lang == "en" else _COMPOSERS[lang][1](label, terms, synonym_field)
        for lang, terms in languages.items()
    })  # fmt: skip
