"""CLI commands for catalogs: ``index build/add/update/delete/info``, ``search``, ``similar``,
``tag`` and ``classify``. Thin wrappers over :mod:`vestis.index`, :mod:`vestis.search` and
:mod:`vestis.tag`; registered on the main app in :mod:`vestis.cli`.

With ``--json`` each prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vestis.errors import InputError

out = Console()

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Registry name or model directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line of stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
IdColOpt = Annotated[str, typer.Option("--id-column", help="Column holding the product id.")]
ImageColOpt = Annotated[str, typer.Option("--image-column", help="Column holding image bytes or paths.")]
TitleColOpt = Annotated[
    str | None,
    typer.Option("--title-column", help="Title column (default: productDisplayName, title or name; '' for none)."),
]
KOpt = Annotated[int, typer.Option("--k", "-k", min=1, max=1000, help="Number of results.")]
WhereOpt = Annotated[
    str | None, typer.Option("--where", help="Metadata filter, SQL-like: \"baseColour = 'Red' AND season IN (...)\".")
]
SteerOpt = Annotated[
    list[str] | None,
    typer.Option("--steer", help="Move the query: darker, more formal, without sleeves, ... or 'from->to'."),
]

index_app = typer.Typer(help="Build and maintain a catalog index (a directory).", no_args_is_help=True)


def _weights(text: str) -> tuple[float, float]:
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError:
        w = ()
    if len(w) != 2:
        raise InputError(f"--weights must be two numbers 'image,title', got {text!r}")
    return w


def _ann(threshold: int | None, quantizer: str | None, ef_search: int | None):
    from vestis.index.vectors import AnnConfig

    if threshold is None and quantizer is None and ef_search is None:
        return None
    if quantizer not in (None, "float32", "float16", "int8"):
        raise InputError(f"--quantizer must be float32, float16 or int8, got {quantizer!r}")
    base = AnnConfig()
    return AnnConfig(
        threshold=base.threshold if threshold is None else threshold,
        quantizer=quantizer or base.quantizer,
        ef_search=ef_search or base.ef_search,
    )


def _print_report(report, as_json: bool) -> None:
    data = report.to_dict()
    if as_json:
        print(json.dumps(data, default=str))
        return
    table = Table(title=f"index {data['index']} ({data['model']})")
    table.add_column("")
    table.add_column("items", justify="right")
    rows = [
        ("read from the catalog", data["seen"]), ("added", data["added"]), ("updated", data["updated"]),
        ("metadata updated", data["metadata_updated"]), ("unchanged (skipped)", data["unchanged"]),
        ("pruned", data["pruned"]), ("already in the index (skipped)", len(data["skipped_existing"])),
        ("not in the index (skipped)", len(data["skipped_missing"])),
        ("duplicate ids (later rows skipped)", len(data["duplicate_ids"])), ("without an id", data["missing_id"]),
        ("unreadable images (indexed by title)", len(data["unreadable_images"])),
        ("not indexed (no image, no title)", len(data["not_indexed"])), ("in the index now", data["total_items"]),
    ]  # fmt: skip
    for name, n in rows:
        if n or name in ("read from the catalog", "in the index now"):
            table.add_row(name, str(n))
    out.print(table)
    out.print(f"{data['seconds']:.1f} s, {data['items_per_second']:.0f} items/s")
    problems = data["unreadable_images"] + data["not_indexed"]
    for p in problems[:10]:
        out.print(f"  [yellow]{p['id']}[/]: {p['reason']}", highlight=False)
    if len(problems) > 10:
        out.print(f"  … and {len(problems) - 10} more; the full list is in {data['index']}/reports/")


def _build(mode: str, catalog: Path, index: Path, **kw) -> None:
    from vestis.index.build import build_index

    as_json = kw.pop("as_json")
    report = build_index(catalog, index, mode=mode, **kw)
    _print_report(report, as_json)


@index_app.command("build")
def index_build(
    catalog: Annotated[
        Path, typer.Argument(help="Parquet file/folder, CSV or JSONL with image paths, or image folder.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Index directory (created, or resumed).")],
    model: ModelOpt = None,
    id_column: IdColOpt = "id",
    image_column: ImageColOpt = "image",
    title_column: TitleColOpt = None,
    weights: Annotated[str, typer.Option("--weights", help="Document weights 'image,title' (Marqo's).")] = "0.9,0.1",
    prune: Annotated[bool, typer.Option("--prune", help="Delete indexed items no longer in the catalog.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per committed batch.")] = 256,
    ann_threshold: Annotated[int | None, typer.Option("--ann-threshold", help="Build HNSW from this size.")] = None,
    quantizer: Annotated[str | None, typer.Option("--quantizer", help="HNSW vectors: float32|float16|int8.")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Index a catalog: skips items already embedded, resumes after an interruption."""
    _build(
        "build", catalog, out_dir, model=model, id_column=id_column, image_column=image_column,
        title_column=title_column, weights=_weights(weights), prune=prune, batch_size=batch_size,
        ann=_ann(ann_threshold, quantizer, None), quiet=quiet, as_json=as_json,
    )  # fmt: skip


def _incremental(mode: str, doc: str):
    """``index add`` and ``index update``: the same options, another mode of build_index."""

    def command(
        index: Annotated[Path, typer.Argument(help="Index directory.")],
        catalog: Annotated[Path, typer.Argument(help="Catalog with the new or changed items.")],
        id_column: IdColOpt = "id",
        image_column: ImageColOpt = "image",
        title_column: TitleColOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        _build(
            mode, catalog, index, id_column=id_column, image_column=image_column, title_column=title_column,
            quiet=quiet, as_json=as_json,
        )  # fmt: skip

    command.__doc__ = doc
    return command


index_app.command("add")(_incremental("add", "Add the catalog's items whose ids are not in the index yet."))
index_app.command("update")(
    _incremental("update", "Refresh indexed items from the catalog (re-embedding only changed images or titles).")
)


@index_app.command("delete")
def index_delete(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    ids: Annotated[list[str] | None, typer.Argument(help="Item ids to delete.")] = None,
    ids_file: Annotated[Path | None, typer.Option("--ids-file", help="File with one id per line.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete items by id (atomically)."""
    from vestis.index.build import delete_items

    wanted = list(ids or [])
    if ids_file:
        try:
            wanted += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise InputError(f"{ids_file}: {exc.strerror}") from None
    if not wanted:
        raise InputError("no ids given: list them or use --ids-file")
    result = delete_items(index, wanted)
    if as_json:
        print(json.dumps(result))
        return
    out.print(f"deleted {len(result['deleted'])}, not found {len(result['not_found'])}; {result['total_items']} left")


@index_app.command("info")
def index_info(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    facets: Annotated[list[str] | None, typer.Option("--facet", help="Show value counts of a field.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What an index holds: model, size, fields, consistency, and value counts of fields."""
    from vestis.index.local import LocalStore

    with LocalStore.open(index) as store:
        info = {
            "index": str(index), "model": store.info.model, "dim": store.info.dim, "items": store.count(),
            "fields": store.fields(), "settings": store.info.settings, "check": store.check(),
            "facets": {f: store.facets(f) for f in facets or []},
        }  # fmt: skip
    if as_json:
        print(json.dumps(info, default=str))
        return
    out.print(f"[bold]{index}[/]: {info['items']} items, model {info['model']} (dim {info['dim']})")
    out.print(f"fields: {', '.join(info['fields'])}")
    out.print(f"consistent: {'yes' if info['check']['ok'] else 'NO: ' + json.dumps(info['check'])}")
    for f, counts in info["facets"].items():
        out.print(f"{f}: " + ", ".join(f"{v} ({n})" for v, n in counts))


# -------------------------------------------------------------------------- searching


def _show(results, as_json: bool, html: Path | None, title: str) -> None:
    from vestis.data.catalog import TITLE_COLUMNS

    if html is not None:
        from vestis.html import render_results, write_html

        path = write_html(html, render_results(title, [(title, results)]))
        if not as_json:
            out.print(f"wrote {path}")
    if as_json:
        print(json.dumps({"results": [h.to_dict() for h in results.hits]}, default=str))
        return
    keys: list[str] = []
    for h in results.hits:
        keys += [k for k in h.metadata if k not in keys]
    preferred = [k for k in (*TITLE_COLUMNS, "articleType", "baseColour", "season", "usage", "path") if k in keys]
    shown = (preferred or [k for k in keys if k != "id"])[:5]
    table = Table(title=title)
    for col in ("#", "id", "score", *shown):
        table.add_column(col, overflow="fold")
    for n, h in enumerate(results.hits, results.query.get("offset", 0) + 1):
        table.add_row(str(n), str(h.id), f"{h.score:.4f}", *(str(h.metadata.get(k) or "") for k in shown))
    out.print(table)
    if not results.hits:
        out.print("no results")


def search(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    query: Annotated[str | None, typer.Argument(help="Text; 'a, -b, c:0.5' weights terms (negative with '-').")] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Search by this photo.")] = None,
    k: KOpt = 10,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many results (pagination).")] = 0,
    where: WhereOpt = None,
    hybrid: Annotated[
        float, typer.Option("--hybrid", min=0.0, max=1.0, help="Keyword (BM25) weight in rank fusion; 0 = vector.")
    ] = 0.0,
    steer: SteerOpt = None,
    steer_strength: Annotated[
        float | None,
        typer.Option("--steer-strength", help="How far to move the query (default 0.5 for text, 1 for images)."),
    ] = None,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Drop results below this cosine.")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="Exact search even where an HNSW graph exists.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a page of result thumbnails here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search an index by text and/or photo."""
    from vestis.search import Catalog

    if query is None and image is None:
        raise InputError("give a text QUERY and/or --image")
    with Catalog.open(index) as cat:
        results = cat.search(
            query, image=image, k=k, offset=offset, where=where, hybrid=hybrid, steer=steer or (),
            steer_strength=steer_strength, min_score=min_score, exact=exact, thumbnails=html is not None,
        )  # fmt: skip
    label = " + ".join(x for x in (repr(query) if query else "", f"image {image}" if image else "") if x)
    _show(results, as_json, html, f"search {label}" + (f" steered {', '.join(steer)}" if steer else ""))


def similar(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    item_id: Annotated[str, typer.Argument(help="The item to find neighbours of.")],
    k: KOpt = 10,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    where: WhereOpt = None,
    steer: SteerOpt = None,
    steer_strength: Annotated[float | None, typer.Option("--steer-strength")] = None,
    min_score: Annotated[float | None, typer.Option("--min-score")] = None,
    html: Annotated[Path | None, typer.Option("--html")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Items like ITEM_ID (never itself or its exact duplicates); --steer for "like this, but darker"."""
    from vestis.search import Catalog

    with Catalog.open(index) as cat:
        results = cat.similar(
            item_id, k=k, offset=offset, where=where, steer=steer or (), steer_strength=steer_strength,
            min_score=min_score, thumbnails=html is not None,
        )  # fmt: skip
    _show(results, as_json, html, f"similar to {item_id}" + (f" steered {', '.join(steer)}" if steer else ""))


LabelsOpt = Annotated[
    list[str],
    typer.Option(
        "--labels", "-l", help="kagl, built-in names (articleType,baseColour), a YAML/JSON/txt file, or 'a,b,c'."
    ),
]


def tag(
    catalog: Annotated[Path, typer.Argument(help="Catalog (parquet, CSV, JSONL, image folder) or index directory.")],
    labels: LabelsOpt,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Tags parquet file to write.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Labels kept per taxonomy.")] = 3,
    model: ModelOpt = None,
    id_column: IdColOpt = "id",
    image_column: ImageColOpt = "image",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Zero-shot tag every product against one or more taxonomies; writes a parquet file."""
    from vestis.tag import parse_labels, tag_catalog

    result = tag_catalog(
        catalog, parse_labels(labels), out_file, model=model, k=k, id_column=id_column, image_column=image_column,
        quiet=quiet,
    )  # fmt: skip
    if as_json:
        print(json.dumps(result, default=str))
        return
    out.print(f"tagged {result['tagged']} of {result['items']} items with {result['model']} → {result['out']}")
    for f in result["failed"][:10]:
        out.print(f"  [yellow]{f['id']}[/]: {f['reason']}", highlight=False)


def classify(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    labels: LabelsOpt,
    k: Annotated[int, typer.Option("--k", "-k", min=1)] = 3,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot classify a few images (top-k labels per taxonomy)."""
    from vestis.embed import embed_images
    from vestis.models import load_encoder
    from vestis.tag import parse_labels, tag_vectors

    taxonomies = parse_labels(labels)
    enc = load_encoder(model)
    embedded = embed_images(enc, list(images), quiet=True)
    ok = [i for i in range(len(images)) if embedded.ok[i]]
    tags = tag_vectors(enc, embedded.vectors[ok], taxonomies, k=k)
    errors = dict(embedded.failed)
    rows = []
    for n, i in enumerate(ok):
        preds = {t: [{"label": p.label, "score": round(p.score, 6)} for p in tags[t][n]] for t in tags}
        rows.append({"image": str(images[i]), "labels": preds})
    failed = [{"image": str(images[i]), "error": r} for i, r in errors.items()]
    if as_json:
        print(json.dumps({"model": enc.name, "results": rows, "failed": failed}))
        return
    table = Table(title=f"zero-shot ({enc.name})")
    table.add_column("image", overflow="fold")
    for t in tags:
        table.add_column(t, overflow="fold")
    for r in rows:
        cells = [", ".join(f"{p['label']} {p['score']:.2f}" for p in r["labels"][t]) for t in tags]
        table.add_row(r["image"], *cells)
    out.print(table)
    for f in failed:
        out.print(f"  [yellow]{f['image']}[/]: {f['error']}", highlight=False)
    if not rows:
        raise InputError("none of the images could be read")
