"""``vestis eval classify|retrieval|suite``: the published protocols (Marqo retrieval, FashionCLIP zero-shot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vestis.cli.options import (
    IdColOpt,
    ImageColOpt,
    JsonOpt,
    ModelOpt,
    NoCacheOpt,
    QuietOpt,
    SplitOpt,
    WeightsOpt,
    parse_weights,
)
from vestis.cli.output import metrics_table, out, print_json

eval_app = typer.Typer(
    help="Evaluate with the published protocols (Marqo retrieval, FashionCLIP zero-shot).", no_args_is_help=True
)


def _cache(no_cache: bool):
    from vestis.embed import EmbeddingCache

    return None if no_cache else EmbeddingCache()


def _emit(result: dict, as_json: bool, title: str, keys: list[str]) -> None:
    if as_json:
        print_json(result)
    else:
        out.print(metrics_table(title, result, keys))


@eval_app.command("classify")
def eval_classify(
    data: Annotated[
        str | None, typer.Option("--data", help="Parquet file, folder of parquets, or class folders.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="A built-in dataset: fashion-mnist (zero-shot test), ccp-val (held-out street-photo garments).",
        ),
    ] = None,
    image_column: ImageColOpt = "image",
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="Column holding the true label (default: articleType, label).")
    ] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", help="Comma-separated candidate labels (default: the data's classes).")
    ] = None,
    template: Annotated[
        list[str] | None, typer.Option("--template", help="Prompt template with {} (repeatable; ensembled).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use the first N items.")] = None,
    split: SplitOpt = "all",
    language: Annotated[
        str,
        typer.Option(
            "--language",
            help="Name the classes in this language (zh: the term table's names of the label column's values) "
            "and prompt with its template.",
        ),
    ] = "en",
    confusion: Annotated[Path | None, typer.Option("--confusion", help="Write the confusion matrix PNG here.")] = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Zero-shot classification scored as FashionCLIP reports it (weighted macro F1)."""
    from vestis.classify import language_templates
    from vestis.eval.classification import evaluate_zero_shot, plot_confusion
    from vestis.eval.datasets import in_language, labelled_images
    from vestis.models import load_encoder

    templates = template or language_templates(language)
    items = labelled_images(
        data=data, dataset=dataset, image_column=image_column, label_column=label_column, limit=limit, split=split
    )
    candidates = [x.strip() for x in labels.split(",") if x.strip()] if labels else items.classes
    items, candidates, names = in_language(items, language, candidates)
    enc = load_encoder(model)
    result = evaluate_zero_shot(
        enc, items.images, items.labels, labels=candidates, templates=templates, cache=_cache(no_cache), quiet=quiet,
    )  # fmt: skip
    result.update(model=enc.name, data=items.description, language=language)
    if names:
        result["label_names"] = names
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
    image_column: ImageColOpt = "image",
    id_column: IdColOpt = "id",
    title_column: Annotated[
        str, typer.Option("--title-column", help="Column holding the product title.")
    ] = "productDisplayName",
    doc_fields: Annotated[
        str | None, typer.Option("--doc-fields", help="image or image+text (default: from the file name).")
    ] = None,
    weights: WeightsOpt = "0.9,0.1",
    query_prefix: Annotated[str, typer.Option("--query-prefix", help="Text put before every query.")] = "",
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

    w = parse_weights(weights)
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
def eval_suite(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Suite config (YAML): models x tasks.")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run several models x tasks; write results/*.json, a markdown leaderboard and plots."""
    from vestis.cli.output import err
    from vestis.eval.suite import run_suite

    summary = run_suite(config, quiet=quiet, console=err if as_json else out)
    if as_json:
        print_json(summary)
        return
    out.print(f"{len(summary['results'])} results written")
