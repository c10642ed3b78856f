"""The ``vestis`` command line: a thin layer over the library.

Errors the user can fix print as one line (``error: ...``) with exit code 2;
anything unexpected prints one line too, with the traceback only under
``--debug``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vestis import __version__, cli_catalog
from vestis.cli_export import export_app
from vestis.errors import VestisError
from vestis.serve.cli import serve

app = typer.Typer(
    name="vestis",
    help="Fashion images and text in one embedding space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}
out = Console()
err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Registry name, model directory or hub id.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Intra-op threads (default: the runtime's).")]
RuntimeOpt = Annotated[str | None, typer.Option("--runtime", help="torch, onnx or open_clip (default: the format's).")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Fetch the model from its hub if it is not here.")]


def _version(value: bool) -> None:
    if value:
        print(f"vestis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the registered models and whether their files are on this machine."""
    from vestis.models.registry import BUILTIN, REGISTRY, default_model, locate

    rows, default = [], default_model()
    for spec in REGISTRY.values():
        if spec.format == BUILTIN:
            where = "built in"
        else:
            found, _ = locate(spec)
            where = str(found) if found else "missing"
        rows.append(
            {
                "name": spec.name,
                "format": spec.format,
                "hub_id": spec.hub_id,
                "present": where != "missing",
                "location": where,
                "default": spec.name == default,
                "description": spec.description,
            }
        )
    if as_json:
        print(json.dumps({"models": rows}))
        return
    table = Table(title="vestis models")
    for col in ("name", "format", "published as", "on this machine"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        status = f"[green]{r['location']}[/]" if r["present"] else "[yellow]missing[/]"
        table.add_row(name, r["format"], r["hub_id"] or "-", status)
    out.print(table)


@app.command()
def embed(
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Text to embed (repeatable).")] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="Image file to embed (repeatable).")] = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the embeddings.")] = False,
    threads: ThreadsOpt = None,
    runtime: RuntimeOpt = None,
    download: DownloadOpt = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
) -> None:
    """Embed texts and images; print a summary table or, with --json, the vectors."""
    import numpy as np

    from vestis.models import load_encoder

    texts, images = list(text or []), list(image or [])
    if not texts and not images:
        raise VestisError("nothing to embed: give --text and/or --image")
    enc = load_encoder(model, threads=threads, batch_size=batch_size, runtime=runtime, download=download or None)
    items: list[tuple[str, str, np.ndarray]] = []
    if texts:
        items += [("text", t, v) for t, v in zip(texts, enc.encode_texts(texts))]
    if images:
        items += [("image", str(p), v) for p, v in zip(images, enc.encode_images(images))]
    if as_json:
        data = [{"type": k, "input": s, "embedding": [round(float(x), 7) for x in v]} for k, s, v in items]
        print(json.dumps({"model": enc.name, "dim": enc.dim, "data": data}))
        return
    table = Table(title=f"{enc.name} ({enc.runtime}), dim {enc.dim}")
    for col in ("type", "input", "norm", "first values"):
        table.add_column(col)
    for kind, src, vec in items:
        table.add_row(kind, src, f"{np.linalg.norm(vec):.4f}", " ".join(f"{x:+.3f}" for x in vec[:4]) + " …")
    out.print(table)


app.add_typer(cli_catalog.index_app, name="index")
for _command in (cli_catalog.search, cli_catalog.similar, cli_catalog.tag, cli_catalog.classify):
    app.command()(_command)
app.command()(serve)

eval_app = typer.Typer(help="Evaluate with the published protocols (Marqo retrieval, FashionCLIP zero-shot).")
app.add_typer(eval_app, name="eval")
app.add_typer(export_app, name="export")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line of stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")]
SplitOpt = Annotated[
    str, typer.Option("--split", help="all, or the train/val split vestis-mini uses (stable hash of the id).")
]


def _cache(no_cache: bool):
    from vestis.embed import EmbeddingCache

    return None if no_cache else EmbeddingCache()


def _summary(title: str, result: dict, keys: list[str]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        value = result.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)


def _emit(result: dict, as_json: bool, title: str, keys: list[str]) -> None:
    if as_json:
        print(json.dumps(result, default=str))
    else:
        _summary(title, result, keys)


@eval_app.command("classify")
def eval_classify(
    data: Annotated[
        str | None, typer.Option("--data", help="Parquet file, folder of parquets, or class folders.")
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="A built-in dataset: fashion-mnist.")] = None,
    image_column: Annotated[str, typer.Option("--image-column")] = "image",
    label_column: Annotated[str | None, typer.Option("--label-column")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated candidate labels.")] = None,
    template: Annotated[
        list[str] | None, typer.Option("--template", help="Prompt template with {} (repeatable; ensembled).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use the first N items.")] = None,
    split: SplitOpt = "all",
    confusion: Annotated[Path | None, typer.Option("--confusion", help="Write the confusion matrix PNG here.")] = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Zero-shot classification scored as FashionCLIP reports it (weighted macro F1)."""
    from vestis.classify import DEFAULT_TEMPLATES
    from vestis.eval.classification import evaluate_zero_shot, plot_confusion
    from vestis.eval.datasets import labelled_images
    from vestis.models import load_encoder

    items = labelled_images(
        data=data, dataset=dataset, image_column=image_column, label_column=label_column, limit=limit, split=split
    )
    candidates = [x.strip() for x in labels.split(",") if x.strip()] if labels else items.classes
    enc = load_encoder(model)
    result = evaluate_zero_shot(
        enc, items.images, items.labels, labels=candidates, templates=template or DEFAULT_TEMPLATES,
        cache=_cache(no_cache), quiet=quiet,
    )  # fmt: skip
    result.update(model=enc.name, data=items.description)
    if confusion:
        result["confusion_png"] = str(plot_confusion(result, confusion))
    keys = ["weighted_f1", "accuracy", "macro_f1", "n", "skipped_unlabelled", "skipped_other_label",
            "unreadable_images"]  # fmt: skip
    _emit(result, as_json, f"{enc.name} · {items.description}", keys)


@eval_app.command("retrieval")
def eval_retrieval(
    data: Annotated[str, typer.Option("--data", help="Parquet catalog (file or folder of parquets).")],
    ground_truth: Annotated[
        Path,
        typer.Option(
            "--ground-truth",
            help="Marqo-style {query: {id: relevance}} JSON, or a YAML list of queries with label rules.",
        ),
    ],
    image_column: Annotated[str, typer.Option("--image-column")] = "image",
    id_column: Annotated[str, typer.Option("--id-column")] = "id",
    title_column: Annotated[str, typer.Option("--title-column")] = "productDisplayName",
    doc_fields: Annotated[
        str | None, typer.Option("--doc-fields", help="image or image+text (default: from the file name).")
    ] = None,
    weights: Annotated[str, typer.Option("--weights", help="Image,text weights of multi-field docs.")] = "0.9,0.1",
    query_prefix: Annotated[str, typer.Option("--query-prefix")] = "",
    split: SplitOpt = "all",
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Retrieval scored with Marqo's protocol (recall, precision, MRR, nDCG, mAP at 1 and 10)."""
    from vestis.data.catalog import read_catalog
    from vestis.data.split import select_split
    from vestis.eval.retrieval import evaluate_retrieval
    from vestis.models import load_encoder

    try:
        w = tuple(float(x) for x in weights.split(","))
    except ValueError:
        raise VestisError(f"--weights must be numbers separated by a comma, got {weights!r}") from None
    catalog = select_split(read_catalog(data), split, id_column)
    enc = load_encoder(model)
    result = evaluate_retrieval(
        enc, catalog, ground_truth, id_column=id_column, image_column=image_column, title_column=title_column,
        doc_fields=doc_fields.split("+") if doc_fields else None, weights=w, query_prefix=query_prefix,
        cache=_cache(no_cache), quiet=quiet,
    )  # fmt: skip
    result.update(model=enc.name, ground_truth=str(ground_truth))
    keys = ["recall@1", "recall@10", "avg_recall", "precision@1", "precision@10", "avg_precision", "mrr@10",
            "ndcg@10", "map@10", "n_queries", "n_docs", "dropped_ids", "dropped_queries",
            "unreadable_images"]  # fmt: skip
    _emit(result, as_json, f"{enc.name} · {ground_truth.name}", keys)


@eval_app.command("suite")
def eval_suite(config: Path, quiet: QuietOpt = False) -> None:
    """Run several models x tasks; write results/*.json, a markdown leaderboard and plots."""
    from vestis.eval.suite import run_suite

    summary = run_suite(config, quiet=quiet, console=out)
    out.print(f"{len(summary['results'])} results written")


@app.command()
def train(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Training config (YAML), e.g. configs/vestis-mini.yaml.")
    ],
    out: Annotated[str | None, typer.Option("--out", help="Run folder (overrides the config's).")] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Fine-tune this model (name or directory: vestis-mini, a transformers CLIP / "
            "Chinese-CLIP or an open_clip checkpoint) instead of training vestis-mini from scratch.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Continue from the run's checkpoint.")] = True,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the number of epochs.")] = None,
    stop_after: Annotated[
        int | None, typer.Option("--stop-after", min=1, help="End this run after that epoch (resume later).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Override the config's seed (to measure across-seed noise).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train vestis-mini or fine-tune a checkpoint (contrastive, multi-field); checkpoints every epoch, resumes."""
    from vestis.train.loop import TrainConfig
    from vestis.train.loop import train as run_training

    cfg = TrainConfig.from_yaml(config)
    if out:
        cfg.out = out
    if init:
        cfg.init = init
    if epochs:
        cfg.epochs = epochs
    if seed is not None:
        cfg.seed = seed
    final = run_training(
        cfg, resume=resume, quiet=quiet, stop_after=stop_after, log=lambda line: err.print(line, highlight=False)
    )
    out_dir = Path(cfg.out) / "model"
    print(json.dumps({"model": str(out_dir), **final}))


@app.command()
def demo(
    model: ModelOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the index and the HTML page go.")] = Path("build/demo"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Index a few hundred KAGL products, search them several ways, tag them, write an HTML page."""
    from vestis.demo import run_demo

    run_demo(model, out=out_dir, console=out, quiet=quiet)


def main() -> None:
    """Entry point: run the app, turning errors into one clear line."""
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except VestisError as exc:
        if _state["debug"]:
            err.print_exception()
        err.print(Text.assemble(("error: ", "red"), str(exc)))
        sys.exit(2)
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"]:
            err.print_exception()
        err.print(
            Text.assemble(("error: ", "red"), f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
