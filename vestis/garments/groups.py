"""The garment groups the segmenter predicts, as data.

Clothing Co-Parsing labels 58 things per pixel; the segmenter predicts a handful of
coarse groups that a shopper would search a catalog for, plus ``person`` (skin, hair
and what is worn on them but not sold here: glasses, jewellery, legwear) and
``background``.  Each group names

* the CCP labels it is trained from (:data:`GROUPS`; labels in :data:`IGNORED_LABELS`
  are too rare or ambiguous to learn from and are left out of the loss),
* the KAGL ``articleType`` values a catalog search for that garment should return
  (the judgement of ``benchmarks/garments.py``: written before measuring),
* words for a caption or a tag ("a photo of a {word}").

Order matters: a group's index is its channel in the segmenter's output.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GarmentGroup:
    name: str
    ccp_labels: tuple[str, ...]
    kagl_article_types: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @property
    def is_garment(self) -> bool:
        return bool(self.kagl_article_types)


def _group(name: str, ccp_labels: str, kagl_article_types: str = "", words: str = "") -> GarmentGroup:
    """One row of the table below: CCP labels and words space-separated, KAGL types comma-separated."""
    kagl = tuple(t.strip() for t in kagl_article_types.split(",") if t.strip())
    return GarmentGroup(name, tuple(ccp_labels.split()), kagl, tuple(w.strip() for w in words.split(",") if w.strip()))


GROUPS: tuple[GarmentGroup, ...] = (
    _group("background", "null"),
    _group("person", "skin hair glasses sunglasses earrings necklace bracelet ring watch stockings tights socks"),
    _group(
        "top",
        "blouse shirt t-shirt top sweater sweatshirt hoodie jumper cardigan vest bodysuit bra swimwear",
        "Tshirts, Shirts, Tops, Sweaters, Sweatshirts, Tunics, Kurtis, Kurtas, Camisoles, Lounge Tshirts",
        "top, shirt, t-shirt, blouse, sweater",
    ),
    _group(
        "outerwear",
        "coat jacket blazer cape suit",
        "Jackets, Blazers, Rain Jacket, Nehru Jackets, Shrug, Waistcoat",
        "jacket, coat, blazer",
    ),
    _group("dress", "dress romper", "Dresses, Jumpsuit, Rompers, Nightdress", "dress"),
    _group(
        "trousers",
        "pants jeans leggings",
        "Trousers, Jeans, Track Pants, Leggings, Jeggings, Capris, Lounge Pants, Churidar, Patiala, Salwar, "
        "Rain Trousers, Tracksuits",
        "trousers, jeans, pants",
    ),
    _group("skirt", "skirt", "Skirts", "skirt"),
    _group("shorts", "shorts", "Shorts, Lounge Shorts", "shorts"),
    _group(
        "shoes",
        "shoes boots heels sandals sneakers pumps loafers flats clogs wedges",
        "Casual Shoes, Formal Shoes, Sports Shoes, Heels, Flats, Sandals, Sports Sandals, Flip Flops",
        "shoes, boots, heels, sandals, sneakers",
    ),
    _group(
        "bag",
        "bag purse wallet",
        "Handbags, Clutches, Backpacks, Messenger Bag, Laptop Bag, Duffel Bag, Mobile Pouch, Wallets, Waist Pouch, "
        "Rucksacks, Trolley Bag, Tablet Sleeve",
        "bag, handbag, purse",
    ),
    _group("hat", "hat", "Caps, Hat, Headband", "hat, cap"),
)

#: CCP labels left out of training (their pixels carry no target): rare, small or ambiguous.
IGNORED_LABELS = ("accessories", "belt", "scarf", "tie", "gloves", "intimate", "panties")

GROUP_NAMES: tuple[str, ...] = tuple(g.name for g in GROUPS)
#: Groups that are not searched for when choosing the photo's main garment.
NOT_MAIN = frozenset({"shoes", "bag", "hat"})
IGNORE_INDEX = 255


def group(name: str) -> GarmentGroup:
    for g in GROUPS:
        if g.name == name:
            return g
    raise KeyError(name)


def ccp_label_to_group(labels: tuple[str, ...]) -> list[int]:
    """For CCP's label list (mask ids in order): the group index of each id, or IGNORE_INDEX."""
    where = {lbl: i for i, g in enumerate(GROUPS) for lbl in g.ccp_labels}
    table = []
    for lbl in labels:
        if lbl in where:
            table.append(where[lbl])
        elif lbl in IGNORED_LABELS:
            table.append(IGNORE_INDEX)
        else:
            raise ValueError(f"CCP label {lbl!r} is in no garment group and not ignored")
    return table
