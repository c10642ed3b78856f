"""Catalog commands: ``index build/add/update/delete/info``, ``search``, ``similar``, ``recommend`` and
``explain``.

Thin wrappers over :func:`vestis.build_index` (``--engine ray``: on a Ray cluster) and
:class:`vestis.Catalog`.  With ``--json`` each prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vestis.cli.options import (
    AnnThresholdOpt,
    BoostOpt,
    EfSearchOpt,
    EngineOpt,
    HtmlOpt,
    IdColOpt,
    ImageColOpt,
    IndexArg,
    JsonOpt,
    KOpt,
    MinScoreOpt,
    ModelOpt,
    OffsetOpt,
    QuantizerOpt,
    QuietOpt,
    RayAddressOpt,
    RayWorkersOpt,
    SteerOpt,
    SteerStrengthOpt,
    StoreOpt,
    TitleColOpt,
    WeightsOpt,
    WhereOpt,
    ann_changes,
    parse_weights,
    ray_options,
    store_location,
)
from vestis.cli.output import note, out, print_json
from vestis.errors import InputError

index_app = typer.Typer(
    help="Build and maintain a catalog index (a directory, or PostgreSQL with --store).", no_args_is_help=True
)

CatalogArg = Annotated[
    Path,
    typer.Argument(metavar="CATALOG", help="Parquet file/folder, CSV or JSONL with image paths, or image folder."),
]


def _report_counts(data: dict) -> list[tuple[str, int]]:
    """A build report's counts as the CLI names them."""
    return [
        ("read from the catalog", data.get("seen", 0)), ("added", data.get("added", 0)),
        ("updated", data.get("updated", 0)), ("metadata updated", data.get("metadata_updated", 0)),
        ("unchanged (skipped)", data.get("unchanged", 0)), ("pruned", data.get("pruned", 0)),
        ("already in the index (skipped)", len(data.get("skipped_existing", []))),
        ("not in the index (skipped)", len(data.get("skipped_missing", []))),
        ("duplicate ids (later rows skipped)", len(data.get("duplicate_ids", []))),
        ("without an id", data.get("missing_id", 0)),
        ("ids that are not text or int64 (refused)", len(data.get("bad_ids", []))),
        ("unreadable images (indexed by title)", len(data.get("unreadable_images", []))),
        ("not indexed (no image, no title)", len(data.get("not_indexed", []))),
        ("in the index now", data.get("total_items", 0)),
    ]  # fmt: skip


def _print_report(report, as_json: bool) -> None:
    from rich.table import Table

    data = report.to_dict()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"index {data['index']} ({data['model']})")
    table.add_column("")
    table.add_column("items", justify="right")
    for name, n in _report_counts(data):
        if n or name in ("read from the catalog", "in the index now"):
            table.add_row(name, str(n))
    out.print(table)
    out.print(f"{data['seconds']:.1f} s, {data['items_per_second']:.0f} items/s")
    if data.get("engine") == "ray":
        shares = ", ".join(f"{name} {n}" for name, n in sorted(data["workers"].items()))
        out.print(f"embedded on Ray by {len(data['workers'])} worker process(es){': ' + shares if shares else ''}")
    for text in data.get("notes", []):
        note(f"note: {text}")
    problems = data["bad_ids"] + data["unreadable_images"] + data["not_indexed"]
    for p in problems[:10]:
        out.print(f"  [yellow]{p['id']}[/]: {p['reason']}", highlight=False)
    if len(problems) > 10:
        out.print(f"  … and {len(problems) - 10} more; the full list: vestis index info {data['index']} --json")


def _build_summary(report: dict) -> str:
    """One line of a build report: what, when, the counts that are not zero, the time it took."""
    shown = ", ".join(f"{name} {n}" for name, n in _report_counts(report) if n or name == "read from the catalog")
    return (f"{report.get('mode', 'build')} of {report.get('catalog') or '?'} at {report.get('finished_at') or '?'}: "
            f"{shown}; {report.get('seconds', 0):.1f} s")  # fmt: skip


def _shifted(index: str, what: str) -> None:
    raise InputError(f"unexpected argument {index!r}: with --store / VESTIS_STORE, give only {what}")


def _build(mode: str, catalog: Path, index: str, *, as_json: bool, **kw) -> None:
    from vestis.index.build import build_index

    _print_report(build_index(catalog, index, mode=mode, **kw), as_json)


@index_app.command("build")
def index_build(
    catalog: CatalogArg,
    out_dir: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            "--store",
            envvar="VESTIS_STORE",
            show_envvar=True,
            help="Index directory or postgresql://user@host/db (created, or resumed).",
        ),
    ],
    model: ModelOpt = None,
    id_column: IdColOpt = "id",
    image_column: ImageColOpt = "image",
    title_column: TitleColOpt = None,
    weights: WeightsOpt = "0.9,0.1",
    prune: Annotated[bool, typer.Option("--prune", help="Delete indexed items no longer in the catalog.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per committed batch.")] = 256,
    ann_threshold: AnnThresholdOpt = None,
    quantizer: QuantizerOpt = None,
    ef_search: EfSearchOpt = None,
    engine: EngineOpt = "local",
    address: RayAddressOpt = None,
    workers: RayWorkersOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Index a catalog: skips items already embedded, resumes after an interruption."""
    _build(
        "build", catalog, out_dir, as_json=as_json, model=model, id_column=id_column, image_column=image_column,
        title_column=title_column, weights=parse_weights(weights), prune=prune, batch_size=batch_size,
        ann=ann_changes(ann_threshold, quantizer, ef_search), engine=engine, ray=ray_options(engine, address, workers),
        quiet=quiet,
    )  # fmt: skip


def _incremental(mode: str, doc: str):
    """``index add`` and ``index update``: the same options, another mode of build_index."""

    def command(
        index: IndexArg = None,
        catalog: Annotated[
            Path | None,
            typer.Argument(metavar="CATALOG", help="Catalog with the new or changed items (as for build)."),
        ] = None,
        id_column: IdColOpt = "id",
        image_column: ImageColOpt = "image",
        title_column: TitleColOpt = None,
        store: StoreOpt = None,
        engine: EngineOpt = "local",
        address: RayAddressOpt = None,
        workers: RayWorkersOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        ray = ray_options(engine, address, workers)
        given = index
        index, shifted = store_location(index, store)
        if shifted:
            if catalog is not None:
                _shifted(str(catalog), "CATALOG")
            catalog = Path(given)
        if catalog is None:
            raise InputError("give the CATALOG with the new or changed items")
        _build(
            mode, catalog, index, id_column=id_column, image_column=image_column, title_column=title_column,
            engine=engine, ray=ray, quiet=quiet, as_json=as_json,
        )  # fmt: skip

    command.__doc__ = doc
    return command


index_app.command("add")(_incremental("add", "Add the catalog's items whose ids are not in the index yet."))
index_app.command("update")(
    _incremental("update", "Refresh indexed items from the catalog (re-embedding only changed images or titles).")
)


@index_app.command("delete")
def index_delete(
    index: IndexArg = None,
    ids: Annotated[list[str] | None, typer.Argument(metavar="ID", help="Item ids to delete.")] = None,
    ids_file: Annotated[Path | None, typer.Option("--ids-file", help="File with one id per line.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete items by id (atomically)."""
    from vestis.index.build import delete_items

    first = index
    index, shifted = store_location(index, store)
    wanted = ([first] if shifted else []) + list(ids or [])
    if ids_file:
        try:
            wanted += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise InputError(f"{ids_file}: {exc.strerror}") from None
    if not wanted:
        raise InputError("no ids given: list them or use --ids-file")
    result = delete_items(index, wanted)
    if as_json:
        print_json(result)
        return
    out.print(f"deleted {len(result['deleted'])}, not found {len(result['not_found'])}; {result['total_items']} left")


@index_app.command("info")
def index_info(
    index: IndexArg = None,
    facets: Annotated[list[str] | None, typer.Option("--facet", help="Show value counts of a field.")] = None,
    store_opt: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What an index holds: model, size, fields, consistency, and value counts of fields."""
    from vestis.index.stores import describe, open_store

    given = index
    index, shifted = store_location(index, store_opt)
    if shifted:
        _shifted(given, "options")
    with open_store(index) as store:
        info = {"index": str(index), "facets": {}, **describe(store, facets=facets or (), check=True)}
    if as_json:
        print_json(info)
        return
    out.print(f"[bold]{index}[/]: {info['items']} items, model {info['model']} (dim {info['dim']})")
    out.print(f"fields: {', '.join(info['fields'])}")
    out.print(f"consistent: {'yes' if info['check']['ok'] else 'NO: ' + json.dumps(info['check'])}")
    if (last := info["last_build"]) is not None:
        out.print(f"last build: {_build_summary(last)}", highlight=False, soft_wrap=True)
    for f, counts in info["facets"].items():
        out.print(f"{f}: " + ", ".join(f"{v} ({n})" for v, n in counts))


@index_app.command("settings")
def index_settings(
    index: IndexArg = None,
    ef_search: EfSearchOpt = None,
    ann_threshold: AnnThresholdOpt = None,
    quantizer: QuantizerOpt = None,
    store_opt: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the index's search settings, or change those given: --ef-search applies to the next search
    (a running server reads it when it opens the index), a new --quantizer rebuilds the HNSW graph now."""
    from vestis.index.stores import open_store

    given = index
    index, shifted = store_location(index, store_opt)
    if shifted:
        _shifted(given, "options")
    changes = ann_changes(ann_threshold, quantizer, ef_search)
    with open_store(index, writable=bool(changes)) as store:
        before = store.ann_config
        after = store.set_ann(**changes) if changes else before
    changed = [k for k, v in after.to_dict().items() if before.to_dict()[k] != v]
    rebuilt = before.graph != after.graph
    result = {"index": str(index), "ann": after.to_dict(), "changed": changed, "graph_rebuilt": rebuilt}
    if as_json:
        print_json(result)
        return
    for k, v in after.to_dict().items():
        was = f"  (was {before.to_dict()[k]})" if k in changed else ""
        out.print(f"{k}: {v}{was}", highlight=False)
    if rebuilt:
        out.print("the HNSW graph was built again with the new settings", highlight=False)


@index_app.command("upgrade")
def index_upgrade(index: IndexArg = None, as_json: JsonOpt = False) -> None:
    """Rewrite an index directory in the current format (float16 vectors: about half the disk), in place."""
    from vestis.index.local import upgrade_index
    from vestis.index.stores import is_store_url

    if index is None or is_store_url(str(index)):
        raise InputError("index upgrade takes an index directory")
    if not Path(index).is_dir():
        raise InputError(f"{index}: no such index directory")
    result = upgrade_index(index)
    if as_json:
        print_json(result)
        return
    if not result["upgraded"]:
        out.print(f"{index}: already in the current format ({result['mb_after']} MB)")
        return
    out.print(f"{index}: upgraded, {result['mb_before']} MB -> {result['mb_after']} MB")


# -------------------------------------------------------------------------- searching


def _show_garments(sections: list, as_json: bool, html: Path | None, title: str) -> None:
    """One result list per garment found in the photo (``--garment all``)."""
    headings = [f"{g.group} at {g.box}" if g is not None else "whole photo" for g, _ in sections]
    if html is not None:
        from vestis.html import render_results, write_html

        path = write_html(html, render_results(title, [(h, r) for h, (_, r) in zip(headings, sections)]))
        if not as_json:
            note(f"wrote {path}")
    if as_json:
        garments = [
            {"garment": g.to_dict() if g is not None else None, "results": [h.to_dict() for h in r.hits]}
            for g, r in sections
        ]
        print_json({"garments": garments})
        return
    for heading, (_, results) in zip(headings, sections):
        _show(results, False, None, f"{title}: {heading}")


def _show(results, as_json: bool, html: Path | None, title: str, garment=None) -> None:
    if html is not None:
        from vestis.html import render_results, write_html

        path = write_html(html, render_results(title, [(title, results)]))
        if not as_json:
            note(f"wrote {path}")
    if as_json:
        extra = {"garment": garment.to_dict()} if garment is not None else {}
        print_json({"results": [h.to_dict() for h in results.hits], **extra})
        return
    from rich.table import Table

    from vestis.data.catalog import TITLE_COLUMNS  # (pyarrow: only for the table)

    keys: list[str] = []
    for h in results.hits:
        keys += [k for k in h.metadata if k not in keys]
    preferred = [k for k in (*TITLE_COLUMNS, "articleType", "baseColour", "season", "usage", "path") if k in keys]
    shown = (preferred or [k for k in keys if k != "id"])[:5]
    hybrid = any(h.keyword_rank is not None for h in results.hits)
    table = Table(title=title)
    for col in ("#", "id", "score", *(["cosine"] if hybrid else []), *shown):
        table.add_column(col, overflow="fold")
    for n, h in enumerate(results.hits, results.query.get("offset", 0) + 1):
        cosine = [f"{h.cosine:.4f}" if h.cosine is not None else ""] if hybrid else []
        table.add_row(str(n), str(h.id), f"{h.score:.4f}", *cosine, *(str(h.metadata.get(k) or "") for k in shown))
    out.print(table)
    if not results.hits:
        out.print("no results")


def search(
    index: IndexArg = None,
    query: Annotated[
        str | None,
        typer.Argument(metavar="QUERY", help="Text; 'a, -b, c:0.5' weights terms (negative with '-')."),
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Search by this photo.")] = None,
    k: KOpt = 10,
    offset: OffsetOpt = 0,
    where: WhereOpt = None,
    hybrid: Annotated[
        float,
        typer.Option(
            "--hybrid", min=0.0, max=1.0, help="Keyword (BM25) weight in rank fusion, 0 to 1; 0 = vector only."
        ),
    ] = 0.0,
    steer: SteerOpt = None,
    steer_strength: SteerStrengthOpt = None,
    min_score: MinScoreOpt = None,
    boost: BoostOpt = None,
    exact: Annotated[bool, typer.Option("--exact", help="Exact search even where an HNSW graph exists.")] = False,
    html: HtmlOpt = None,
    garment: Annotated[
        str,
        typer.Option(
            "--garment",
            help="With --image: search with the photo's main garment, each garment found (all), one group "
            "(top, trousers, shoes, ...), or the whole photo (none). Catalog photos are searched whole.",
        ),
    ] = "main",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search an index by text and/or photo."""
    from vestis.search import Catalog

    given = index
    index, shifted = store_location(index, store)
    if shifted:
        if query is not None:
            _shifted(given, "QUERY")
        query = given
    if query is None and image is None:
        raise InputError("give a text QUERY and/or --image")
    if image is not None:  # the segmenter (torch, scipy) is imported only for photo searches
        from vestis.garments.search import check_garment, search_garments

        check_garment(garment)
    options = dict(
        k=k, offset=offset, where=where, hybrid=hybrid, steer=steer or (), steer_strength=steer_strength,
        min_score=min_score, exact=exact, thumbnails=html is not None, boost=boost,
    )  # fmt: skip
    with Catalog.open(index) as cat:
        if image is None:
            found = [None]
            results = [cat.search(query, **options)]
        else:
            per_garment = search_garments(cat, image, garment, text=query, **options)
            found, results = [r.garment for r in per_garment], [r.results for r in per_garment]
    label = " + ".join(x for x in (repr(query) if query else "", f"image {image}" if image else "") if x)
    title = f"search {label}" + (f" steered {', '.join(steer)}" if steer else "")
    if len(results) == 1 and (image is None or garment != "all"):
        if found[0] is not None:
            title += f", {found[0].group} at {found[0].box}"
        _show(results[0], as_json, html, title, garment=found[0])
        return
    _show_garments(list(zip(found, results)), as_json, html, title)


def similar(
    index: IndexArg = None,
    item_id: Annotated[
        str | None, typer.Argument(metavar="ITEM_ID", help="The item to find neighbours of.", show_default=False)
    ] = None,
    k: KOpt = 10,
    offset: OffsetOpt = 0,
    where: WhereOpt = None,
    steer: SteerOpt = None,
    steer_strength: SteerStrengthOpt = None,
    min_score: MinScoreOpt = None,
    boost: BoostOpt = None,
    html: HtmlOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Items like ITEM_ID (never itself or its exact duplicates); --steer for "like this, but darker"."""
    from vestis.search import Catalog

    given = index
    index, shifted = store_location(index, store)
    if shifted:
        if item_id is not None:
            _shifted(given, "ITEM_ID")
        item_id = given
    if item_id is None:
        raise InputError("give the ITEM_ID to find neighbours of")

    with Catalog.open(index) as cat:
        results = cat.similar(
            item_id, k=k, offset=offset, where=where, steer=steer or (), steer_strength=steer_strength,
            min_score=min_score, thumbnails=html is not None, boost=boost,
        )  # fmt: skip
    _show(results, as_json, html, f"similar to {item_id}" + (f" steered {', '.join(steer)}" if steer else ""))


def recommend(
    index: IndexArg,
    query: Annotated[
        str | None, typer.Argument(metavar="[QUERY]", help="Optional text the feedback refines (as for search).")
    ] = None,
    like: Annotated[list[str] | None, typer.Option("--like", help="An item id the results should be like.")] = None,
    dislike: Annotated[
        list[str] | None, typer.Option("--dislike", help="An item id the results should be unlike.")
    ] = None,
    k: KOpt = 10,
    offset: OffsetOpt = 0,
    where: WhereOpt = None,
    steer: SteerOpt = None,
    steer_strength: SteerStrengthOpt = None,
    min_score: MinScoreOpt = None,
    boost: BoostOpt = None,
    query_weight: Annotated[
        float | None, typer.Option("--query-weight", min=0, max=10, help="Rocchio weight of QUERY (default 1).")
    ] = None,
    like_weight: Annotated[
        float | None,
        typer.Option("--like-weight", min=0, max=10, help="Rocchio weight of the liked items' mean (default 0.75)."),
    ] = None,
    dislike_weight: Annotated[
        float | None,
        typer.Option(
            "--dislike-weight", min=0, max=10, help="Rocchio weight of the disliked items' mean (default 0.25)."
        ),
    ] = None,
    html: HtmlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Items like the --like ones and unlike the --dislike ones (Rocchio feedback), optionally for a QUERY.

    The query vector becomes QUERY x query-weight + mean(liked) x like-weight - mean(disliked) x dislike-weight;
    the liked and disliked items themselves are never listed.
    """
    from vestis.recommend import RocchioWeights
    from vestis.search import Catalog

    if not like and query is None:
        raise InputError("give at least one --like (or a QUERY): dislikes alone say nothing to look for")
    given = {"query": query_weight, "like": like_weight, "dislike": dislike_weight}
    weights = RocchioWeights(**{name: w for name, w in given.items() if w is not None})
    with Catalog.open(index) as cat:
        results = cat.recommend(
            like or [], dislike or [], query, rocchio_weights=weights, k=k, offset=offset, where=where,
            steer=steer or (), steer_strength=steer_strength, min_score=min_score, boost=boost,
            thumbnails=html is not None,
        )  # fmt: skip
    parts = [repr(query)] if query else []
    parts += [f"like {', '.join(like or [])}"] if like else []
    parts += [f"unlike {', '.join(dislike)}"] if dislike else []
    _show(results, as_json, html, "recommend " + "; ".join(parts))


def explain(
    index: IndexArg,
    item_id: Annotated[str, typer.Argument(metavar="ITEM_ID", help="The item whose match to explain.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="The text query it matched.")],
    out_png: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the photo with the heat map over it to this PNG.")
    ] = None,
    method: Annotated[
        str,
        typer.Option("--method", help="auto (gradient for torch models, else occlusion), occlusion or gradient."),
    ] = "auto",
    grid: Annotated[int, typer.Option("--grid", min=2, max=16, help="Cells per side of the map.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Why ITEM_ID matches QUERY: which regions of its photo raise the score, and each word's share."""
    from vestis.search import Catalog

    with Catalog.open(index) as cat:
        why = cat.explain(item_id, query, method=method, grid=grid)
    if out_png is not None:
        try:
            out_png.parent.mkdir(parents=True, exist_ok=True)
            out_png.write_bytes(why.overlay_png())
        except OSError as exc:
            raise InputError(f"{out_png}: {exc.strerror}") from None
        if not as_json:
            note(f"wrote {out_png}")
    if as_json:
        print_json(why.to_dict())
        return
    from rich.table import Table

    out.print(f"item {why.item_id} for {query!r}: score {why.score:.4f} (photo alone {why.image_score:.4f})")
    table = Table(title="words (leave-one-out: the score falls by this much without the word)")
    table.add_column("word")
    table.add_column("contribution", justify="right")
    for w in why.words:
        table.add_row(w.word, f"{w.contribution:+.4f}")
    out.print(table)
    out.print(f"regions that raise the photo's score most ({why.method}, {why.grid}x{why.grid} grid):")
    for r in why.regions():
        out.print(f"  row {r['row']}, column {r['col']} (pixels {r['box']}): {r['value']:+.4f}", highlight=False)
