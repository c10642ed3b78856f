"""``vestis tag`` (a whole catalog, to parquet) and ``vestis classify`` (a few images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vestis.cli.options import IdColOpt, ImageColOpt, JsonOpt, LabelsOpt, ModelOpt, QuietOpt, StoreOpt, TopLabelsOpt
from vestis.cli.output import note, out, print_json
from vestis.errors import InputError


def tag(
    labels: LabelsOpt,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Tags parquet file to write.")],
    catalog: Annotated[
        str | None,
        typer.Argument(
            metavar="CATALOG",
            help="Catalog (parquet, CSV, JSONL, image folder), index directory or postgresql:// URL "
            "(or --store / VESTIS_STORE).",
            show_default=False,
        ),
    ] = None,
    k: TopLabelsOpt = 3,
    model: ModelOpt = None,
    id_column: IdColOpt = "id",
    image_column: ImageColOpt = "image",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Zero-shot tag every product against one or more taxonomies; writes a parquet file."""
    from vestis.index.stores import is_store_url
    from vestis.tag import tag_catalog

    catalog = catalog or store
    if catalog is None:
        raise InputError("give the CATALOG to tag (a file, folder, index or postgresql:// URL) or --store")
    catalog = catalog if is_store_url(catalog) else Path(catalog)

    report = tag_catalog(
        catalog, labels, out_file, model=model, k=k, id_column=id_column, image_column=image_column, quiet=quiet
    )
    if as_json:
        print_json(report.to_dict())
        return
    out.print(f"tagged {report.tagged} of {report.items} items with {report.model} → {report.out}")
    for f in report.failed[:10]:
        out.print(f"  [yellow]{f['id']}[/]: {f['reason']}", highlight=False)


def classify(
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Image files.")],
    labels: LabelsOpt,
    k: TopLabelsOpt = 3,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot classify a few images (top-k labels per taxonomy)."""
    from rich.table import Table

    from vestis.tag import classify as classify_images

    result = classify_images(images, labels, model=model, k=k)
    if as_json:
        print_json(result.to_dict())
        return
    if result.rows:
        table = Table(title=f"zero-shot ({result.model})")
        table.add_column("image", overflow="fold")
        for t in result.taxonomies:
            table.add_column(t, overflow="fold")
        for row in result.rows:
            cells = [", ".join(f"{p.label} {p.score:.2f}" for p in row.labels[t]) for t in result.taxonomies]
            table.add_row(str(row.image), *cells)
        out.print(table)
    for f in result.failed:
        note(f"  {f['image']}: {f['error']}")
    if not result.rows:
        raise InputError("none of the images could be read")
