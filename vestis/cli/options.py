"""Every option and argument the commands share, defined once (name, short flag, help text).

A command declares ``model: ModelOpt = None`` and gets the same ``--model/-m`` with
the same help everywhere.  Options used by one command only live with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# ---------------------------------------------------------------------------- models

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Registry name (see `vestis models`), model directory or hub id (default: vestis-mini)."
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", min=1, help="Intra-op threads for the encoder (default: every CPU).")
]
RuntimeOpt = Annotated[
    str | None, typer.Option("--runtime", help="torch, onnx or open_clip (default: the fastest verified one).")
]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Fetch the model from its hub if it is not here.")]

# ---------------------------------------------------------------------------- output

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line of stdout.")]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress output (a bar on a terminal, a line every few seconds otherwise)."),
]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Also write a page of result thumbnails to this file.")]

# ---------------------------------------------------------------------------- catalogs

IndexArg = Annotated[
    str | None,
    typer.Argument(
        metavar="INDEX",
        help="Index directory (made by `vestis index build`) or postgresql:// URL; may be left out for --store.",
        show_default=False,
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="VESTIS_STORE",
        show_envvar=True,
        help="The catalog's store when INDEX is left out: an index directory or postgresql://user@host/db.",
    ),
]


def store_location(index: str | None, store: str | None) -> tuple[str, bool]:
    """(the index to use, whether INDEX was left out and its place holds the next argument).

    INDEX wins when it names an index (a folder of one, or a postgresql:// URL) or no --store is set."""
    from vestis.index.stores import is_store_url

    if index is not None and (not store or is_store_url(index) or Path(index, "index.sqlite").is_file()):
        return index, False
    if store:
        return store, index is not None
    raise typer.BadParameter(
        "missing: give an index folder or a postgresql:// URL, or set --store / VESTIS_STORE", param_hint="'INDEX'"
    )


AnnThresholdOpt = Annotated[
    int | None, typer.Option("--ann-threshold", min=0, help="Build an HNSW graph from this many items on.")
]
QuantizerOpt = Annotated[
    str | None,
    typer.Option("--quantizer", help="Vectors in the HNSW graph: float32, float16 or int8 (changing it rebuilds it)."),
]
EfSearchOpt = Annotated[
    int | None,
    typer.Option(
        "--ef-search", min=1, max=1000, help="How widely a search explores the HNSW graph: more finds more, slower."
    ),
]


def ann_changes(threshold: int | None, quantizer: str | None, ef_search: int | None) -> dict:
    """The ANN settings given on the command line (:meth:`vestis.index.store.BaseStore.set_ann`'s changes)."""
    given = {"threshold": threshold, "quantizer": quantizer, "ef_search": ef_search}
    return {k: v for k, v in given.items() if v is not None}


IdColOpt = Annotated[str, typer.Option("--id-column", help="Column holding the product id.")]
ImageColOpt = Annotated[str, typer.Option("--image-column", help="Column holding image bytes or paths.")]
TitleColOpt = Annotated[
    str | None,
    typer.Option("--title-column", help="Title column (default: productDisplayName, title or name; '' for none)."),
]
WeightsOpt = Annotated[
    str,
    typer.Option("--weights", help="Weights 'image,title' of the two fields in a product's vector (Marqo's 0.9,0.1)."),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine", help="Where decoding and embedding run: local (this process) or ray (workers of a Ray cluster)."
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", help="--engine ray: the cluster (auto, or ray://head:10001); by default a local Ray is started."
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="--engine ray: embedding workers, one encoder and CPU each (default 2)."),
]


def ray_options(engine: str, address: str | None, workers: int | None):
    """``--engine``, ``--address`` and ``--workers`` as build_index's ``engine`` and ``ray``, or a usage error."""
    from vestis.index.distributed import RayOptions

    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"local or ray, not {engine!r}", param_hint="--engine")
    if engine == "local":
        for given, flag in ((address, "--address"), (workers, "--workers")):
            if given is not None:
                raise typer.BadParameter("only with --engine ray", param_hint=flag)
        return None
    return RayOptions(address=address, **({} if workers is None else {"workers": workers}))


# ---------------------------------------------------------------------------- searching

KOpt = Annotated[int, typer.Option("--k", "-k", min=1, max=1000, help="Number of results.")]
OffsetOpt = Annotated[int, typer.Option("--offset", min=0, help="Skip this many results (pagination).")]
WhereOpt = Annotated[
    str | None, typer.Option("--where", help="Metadata filter, SQL-like: \"baseColour = 'Red' AND season IN (...)\".")
]
SteerOpt = Annotated[
    list[str] | None,
    typer.Option("--steer", help="Move the query: darker, more formal, without sleeves, ... or 'from->to'."),
]
SteerStrengthOpt = Annotated[
    float | None,
    typer.Option("--steer-strength", help="How far to move the query (default 0.5 for text, 1 for images)."),
]
BoostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--boost",
        help="Add a numeric field, scaled 0..1 over the catalog, times a weight to the score: 'rating:0.1' "
        "(missing or NaN counts 0).",
    ),
]
MinScoreOpt = Annotated[
    float | None,
    typer.Option("--min-score", help="Drop results whose cosine to the query is below this (also with --hybrid)."),
]

# ---------------------------------------------------------------------------- labels

LabelsOpt = Annotated[
    list[str],
    typer.Option(
        "--labels",
        "-l",
        help="kagl, kagl-zh (in Chinese), built-in names (articleType,baseColour-zh), "
        "a YAML/JSON/txt file, or 'a,b,c'.",
    ),
]
TopLabelsOpt = Annotated[int, typer.Option("--k", "-k", min=1, help="Labels kept per taxonomy.")]

# ---------------------------------------------------------------------------- evaluation

SplitOpt = Annotated[
    str, typer.Option("--split", help="all, or the train/val split vestis-mini uses (stable hash of the id).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")]


def parse_weights(text: str) -> tuple[float, float]:
    """``--weights 'image,title'`` as two numbers, or a usage error naming the flag."""
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError:
        w = ()
    if len(w) != 2:
        raise typer.BadParameter(
            f"two numbers 'image,title' separated by a comma, got {text!r}", param_hint="--weights"
        )
    return w
