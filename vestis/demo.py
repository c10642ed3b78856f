"""``make demo``: index a small catalog, search it several ways, tag it, write an HTML page.

The catalog is the first few hundred validation-split products of ../shared/data/kagl
when it is present (the bundled model never trained on them), else the 300 bundled
KAGL products (``vestis/data/demo/kagl-demo.parquet``, also validation-split).
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from vestis.data import demo_catalog_path, demo_street_photo_path, kagl_parquets
from vestis.data.split import select_split
from vestis.garments.search import search_garments
from vestis.html import render_results, write_html
from vestis.index.build import build_index
from vestis.models import load_encoder
from vestis.search import Catalog
from vestis.tag import parse_labels, tag_vectors

N_SHARED = 500
CHINESE_MODEL = "vestis-mini-zh"


def _catalog(workdir: Path) -> tuple[str, Path]:
    files = kagl_parquets()
    if files:
        table = select_split(pq.read_table(files[0]), "val").slice(0, N_SHARED)
        path = workdir / "catalog.parquet"
        pq.write_table(table, path)
        return f"{files[0].name}: first {table.num_rows} validation-split products", path
    path = demo_catalog_path()
    return f"bundled {path.name} ({pq.read_metadata(path).num_rows} validation-split KAGL products)", path


def _print(console: Console, title: str, results, fields=("articleType", "baseColour", "usage")) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("id", "score", *fields, "title"):
        table.add_column(col)
    for h in results.hits:
        title_text = str(h.metadata.get("productDisplayName") or "")[:40]
        table.add_row(str(h.id), f"{h.score:.3f}", *(str(h.metadata.get(f) or "") for f in fields), title_text)
    console.print(table)


#: The Chinese part of the demo: queries a shopper types, with their meaning.
CHINESE_QUERIES = (("红色连衣裙", "red dress"), ("男士运动鞋", "men's sports shoes"))


def _chinese(catalog: Path, out: Path, console: Console, quiet: bool) -> list:
    """The same catalog built with the bilingual sibling model and searched in Chinese."""
    encoder = load_encoder(CHINESE_MODEL)
    start = time.perf_counter()
    build_index(catalog, out / "index-zh", encoder=encoder, quiet=quiet)
    console.print(f"index {out / 'index-zh'} with {encoder.name} in {time.perf_counter() - start:.1f} s")
    sections = []
    with Catalog.open(out / "index-zh", encoder=encoder) as cat:
        for query, meaning in CHINESE_QUERIES:
            title = f"Chinese text ({encoder.name}): '{query}' ({meaning})"
            results = cat.search(query, k=5, thumbnails=True)
            _print(console, title, results)
            sections.append((title, results))
    return sections


def run_demo(
    model: str | None = None, *, out: Path = Path("build/demo"), console: Console | None = None, quiet: bool = False
) -> dict:
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(model)
    source, catalog = _catalog(out)
    console.print(f"model: {encoder}\ncatalog: {source}")
    start = time.perf_counter()
    report = build_index(catalog, out / "index", encoder=encoder, quiet=quiet)
    console.print(
        f"index {out / 'index'}: {report.total_items} items ({report.added} new, {report.unchanged} already there) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    sections = []
    with Catalog.open(out / "index", encoder=encoder) as cat:
        some = cat.search("a plain white t-shirt", k=1).hits[0]
        first_image = cat.store.get([str(some.id)], thumbnails=True)[str(some.id)].thumbnail
        searches = [
            ("text: 'jeans'", dict(text="jeans")),
            ("text: 'red summer dress'", dict(text="red summer dress")),
            ("text + filter: 'shoes' where usage = 'Formal'", dict(text="shoes", where="usage = 'Formal'")),
            ("weighted terms: 'bag, -black'", dict(text="bag, -black")),
            ("hybrid (keyword weight 0.5): 'nike shoes'", dict(text="nike shoes", hybrid=0.5)),
            ("text steered: 'tshirt' -> darker", dict(text="tshirt", steer=["darker"])),
            (f"image: the photo of item {some.id}", dict(image=first_image)),
        ]
        for title, kwargs in searches:
            results = cat.search(k=5, thumbnails=True, **kwargs)
            _print(console, title, results)
            sections.append((title, results))
        for title, kwargs in (
            (f"more like item {some.id}", {}),
            (f"more like item {some.id}, but darker", {"steer": ["darker"]}),
        ):
            results = cat.similar(str(some.id), k=5, thumbnails=True, **kwargs)
            _print(console, title, results)
            sections.append((title, results))
        # shop the look: a street photo is searched by the garment found in it, not by the person
        street = demo_street_photo_path()
        (whole,) = search_garments(cat, street, "none", k=5, thumbnails=True)
        (found,) = search_garments(cat, street, "main", k=5, thumbnails=True)
        garment = found.garment
        what = f"its {garment.group} at {garment.box}" if garment else "no garment found: the whole photo"
        for title, results in ((f"street photo {street.name}, whole", whole.results),
                               (f"street photo {street.name}, by {what}", found.results)):  # fmt: skip
            _print(console, title, results)
            sections.append((title, results))
        ids, vectors = cat.store.image_vectors()
        truth = {i: r.metadata.get("articleType") for i, r in cat.store.get(ids).items()}
    chinese = _chinese(catalog, out, console, quiet)
    sections += chinese
    taxonomies = parse_labels("articleType,baseColour,season,usage")
    tags = tag_vectors(encoder, vectors, taxonomies, k=1)
    accuracy = sum(p[0].label == truth[i] for i, p in zip(ids, tags["articleType"])) / max(1, len(ids))
    colours = collections.Counter(p[0].label for p in tags["baseColour"]).most_common(5)
    console.print(
        f"zero-shot tags for {len(ids)} products: articleType agrees with the catalog on {accuracy:.0%} "
        f"({len(taxonomies[0].labels)} labels); most tagged colours: {', '.join(f'{c} ({n})' for c, n in colours)}"
    )
    page = write_html(out / "results.html", render_results(f"vestis demo · {encoder.name} · {source}", sections))
    console.print(f"result page: {page.resolve()}")
    return {"model": encoder.name, "items": report.total_items, "article_accuracy": accuracy, "html": str(page),
            "street_garment": garment.to_dict() if garment else None,
            "chinese": {query: [h.metadata.get("articleType") for h in results.hits]
                        for (query, _), (_, results) in zip(CHINESE_QUERIES, chinese)}}  # fmt: skip
