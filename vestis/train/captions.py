"""Text views of a product for multi-field contrastive training (Marqo's GCL idea).

Each field gives a list of candidate captions; one is drawn per step. Fields
that need colour have a colourless twin, used when an augmentation (grayscale,
inversion) has removed the colour from the image.
"""

from __future__ import annotations

import re

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
}  # fmt: skip


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


def natural_name(label: str) -> str:
    """A readable singular form of a KAGL label ("Handbags" -> "handbag")."""
    if label in _NATURAL:
        return _NATURAL[label]
    word = label.strip().lower()
    if re.search(r"(ches|shes|sses|xes)$", word):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


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


def product_views_zh(row: dict, terms) -> dict[str, list[str]]:
    """Simplified-Chinese caption candidates per field for one KAGL product (issue #21).

    Composed from ``terms`` (:func:`vestis.data.terms.load_terms`) as the English ones are
    composed from the field values: the article field draws among the article type's names
    (its synonyms included), ``composed`` joins colour, article and occasion the way Chinese
    shop titles do ("黑色连衣裙", "夏季黑色连衣裙"). The free-text title has no Chinese form
    and gives no caption. Values the table lacks give no caption for their field.
    """

    def name(field: str) -> tuple[str, ...]:
        return terms.names(field, (row.get(field) or "").strip())

    article, sub, master = name("articleType"), name("subCategory"), name("masterCategory")
    colour, usage, season = name("baseColour"), name("usage"), name("season")
    views: dict[str, list[str]] = {}
    if article:
        main = article[0]
        views["article"] = [f"一张{main}的照片", *article]
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


def garment_views_zh(label: str, terms) -> dict[str, list[str]]:
    """Simplified-Chinese caption candidates for a garment cropped from a street photo."""
    names = terms.names("ccp", label)
    if not names:
        return {}
    captions = [f"一张{names[0]}的照片", *names, f"穿在身上的{names[0]}"]
    return {"article": captions, "composed": captions, "composed_plain": captions}
