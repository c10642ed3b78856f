"""``vestis eval suite CONFIG``: several models x tasks -> results/*.json, a markdown leaderboard, plots.

CONFIG (YAML)::

    name: kagl-fmnist
    output: results/kagl-fmnist          # one JSON per model and task
    leaderboard: docs/leaderboard.md     # plots go beside it, in docs/leaderboard/
    models: [vestis-tiny-random]
    tasks:
      - {kind: marqo-kagl, data: "{data}/kagl", ground_truth_dir: "{data}/kagl/marqo_gt"}
      - {kind: retrieval, name: my task, data: x.parquet, ground_truth: gt.json}
      - {kind: classify, name: Fashion-MNIST, dataset: fashion-mnist, published: fashion-mnist}
      - {kind: classify, name: KAGL articleType, data: "{data}/kagl", label_column: articleType}
      - {kind: classify, name: KAGL articleType (zh), data: "{data}/kagl", label_column: articleType, language: zh}
      - {kind: retrieval, name: colour+type (zh), data: x.parquet, captions: [baseColour, articleType], language: zh}

``language`` (default ``en``): a classify task names its classes in that language (the term
table's names, :mod:`vestis.data.terms`) with that language's prompt template; a retrieval
task's queries are in it -- composed from the catalog's values (``captions``, the same
items and relevance in every language) or read from a query file written in it.

``{data}`` is the shared data folder (``$VESTIS_DATA_DIR`` or ../shared/data).
Embeddings are cached on disk, keyed by model and data, so a second run is fast.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from vestis.classify import language_templates
from vestis.data import shared_data_dir
from vestis.data.catalog import read_catalog
from vestis.data.split import select_split
from vestis.embed import EmbeddingCache
from vestis.errors import InputError
from vestis.eval.classification import evaluate_zero_shot, plot_confusion
from vestis.eval.datasets import in_language, labelled_images
from vestis.eval.published import PUBLISHED
from vestis.eval.results import EvalResult
from vestis.eval.retrieval import MARQO_KAGL_TASKS, caption_ground_truth, evaluate_retrieval
from vestis.models import load_encoder

RETRIEVAL_COLUMNS = (
    ("recall@1", "R@1"), ("recall@10", "R@10"), ("avg_recall", "AvgRecall"), ("precision@1", "P@1"),
    ("precision@10", "P@10"), ("avg_precision", "AvgP"), ("mrr@10", "MRR@10"), ("ndcg@10", "nDCG@10"),
    ("map@10", "mAP@10"),
)  # fmt: skip
CLASSIFY_COLUMNS = (("weighted_f1", "weighted F1"), ("accuracy", "accuracy"), ("macro_f1", "macro F1"))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _path(value: str) -> str:
    data = shared_data_dir()
    if "{data}" in value:
        if data is None:
            raise InputError(f"{value}: the shared data folder is not here (set VESTIS_DATA_DIR)")
        value = value.replace("{data}", str(data))
    return value


def expand_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resolve paths and expand ``marqo-kagl`` into Marqo's seven KAGL retrieval tasks."""
    out = []
    for task in tasks:
        task = {k: _path(v) if isinstance(v, str) and k in ("data", "ground_truth", "ground_truth_dir") else v
                for k, v in task.items()}  # fmt: skip
        kind = task.get("kind")
        if kind == "marqo-kagl":
            for name, gt in MARQO_KAGL_TASKS:
                prefix = task.get("name", "KAGL")
                out.append(
                    {"kind": "retrieval", "name": f"{prefix} {name}", "data": task["data"],
                     "ground_truth": str(Path(task["ground_truth_dir"]) / gt), "published": f"kagl/{name}",
                     "split": task.get("split", "all")}
                )  # fmt: skip
        elif kind in ("retrieval", "classify"):
            if "name" not in task:
                raise InputError(f"suite task needs a name: {task}")
            lang = task.get("language", "en")
            try:
                language_templates(lang)
            except InputError as exc:
                raise InputError(f"{task['name']}: {exc}") from None
            if kind == "retrieval":
                if ("captions" in task) == ("ground_truth" in task):
                    raise InputError(f"{task['name']}: a retrieval task needs ground_truth or captions (one of them)")
                if (
                    lang != "en"
                    and "ground_truth" in task
                    and Path(task["ground_truth"]).suffix not in (".yaml", ".yml")
                ):
                    raise InputError(f"{task['name']}: queries in {lang} come from captions: [fields] or a query "
                                     f"file (YAML) written in {lang}, not {task['ground_truth']}")  # fmt: skip
            out.append(task)
        else:
            raise InputError(f"unknown suite task kind {kind!r} (use retrieval, classify or marqo-kagl)")
    return out


def run_task(encoder, task: dict[str, Any], cache: EmbeddingCache, out_dir: Path, quiet: bool) -> EvalResult:
    lang = task.get("language", "en")
    if task["kind"] == "retrieval":
        catalog = select_split(read_catalog(task["data"]), task.get("split", "all"))
        truth = caption_ground_truth(catalog, task["captions"], lang) if task.get("captions") else task["ground_truth"]
        result = evaluate_retrieval(
            encoder, catalog, truth, query_prefix=task.get("query_prefix", ""), cache=cache, quiet=quiet
        )
        if task.get("captions"):
            result["captions"] = list(task["captions"])
    else:
        data = labelled_images(
            data=task.get("data"),
            dataset=task.get("dataset"),
            image_column=task.get("image_column", "image"),
            label_column=task.get("label_column"),
            limit=task.get("limit"),
            split=task.get("split", "all"),
        )
        data, labels, names = in_language(data, lang, task.get("labels") or data.classes)
        result = evaluate_zero_shot(
            encoder,
            data.images,
            data.labels,
            labels=labels,
            templates=task.get("templates") or language_templates(lang),
            cache=cache,
            quiet=quiet,
        )
        if names:
            result["label_names"] = names
        png = out_dir / f"{slug(encoder.name)}__{slug(task['name'])}-confusion.png"
        english = {name: value for value, name in names.items()}  # the plot's font may lack the language's script
        shown = {**result, "labels": [english[lbl] for lbl in result["labels"]]} if names else result
        plot_confusion(shown, png, title=f"{encoder.name}: {task['name']} (wF1 {result['weighted_f1']:.3f})")
        result["confusion_png"] = png.name
        result["data"] = data.description
    result["language"] = lang
    return result


_MODEL_KEYS = {"model", "precision", "runtime"}


def _model_entry(entry: Any, config_path: Path) -> dict[str, Any]:
    """A suite's model: a name or path, or ``{model: ..., precision: ..., runtime: ...}``."""
    if isinstance(entry, str):
        return {"name_or_path": entry}
    if isinstance(entry, dict) and isinstance(entry.get("model"), str) and set(entry) <= _MODEL_KEYS:
        return {"name_or_path": entry["model"], **{k: v for k, v in entry.items() if k != "model"}}
    raise InputError(
        f"{config_path}: a model is a name or {{model: name, precision: ..., runtime: ...}}, not {entry!r}"
    )


def run_suite(config_path: str | Path, *, quiet: bool = False, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    config_path = Path(config_path)
    try:
        cfg = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise InputError(f"{config_path}: no such suite config") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{config_path}: not valid YAML ({exc})") from None
    if not isinstance(cfg, dict) or not cfg.get("models") or not cfg.get("tasks"):
        raise InputError(f"{config_path}: a suite needs 'models' and 'tasks' lists")
    name = cfg.get("name", config_path.stem)
    out_dir = Path(cfg.get("output", f"results/{slug(name)}"))
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = expand_tasks(cfg["tasks"])
    cache = EmbeddingCache(Path(cfg["cache"]) if cfg.get("cache") else None)
    results: list[dict[str, Any]] = []
    for entry in cfg["models"]:
        encoder = load_encoder(**_model_entry(entry, config_path))
        for task in tasks:
            console.print(f"[bold]{encoder.name}[/] · {task['name']}")
            result = run_task(encoder, task, cache, out_dir, quiet)
            record = {"model": encoder.name, "runtime": encoder.runtime, "task": task["name"], "kind": task["kind"],
                      "language": task.get("language", "en"), "published": task.get("published"),
                      "result": result.to_dict()}  # fmt: skip
            (out_dir / f"{slug(encoder.name)}__{slug(task['name'])}.json").write_text(json.dumps(record, indent=2))
            results.append(record)
    summary = {"suite": name, "date": dt.date.today().isoformat(), "results": results}
    if cfg.get("leaderboard"):
        write_leaderboard(summary, Path(cfg["leaderboard"]), out_dir, command=f"vestis eval suite {config_path}")
    return summary


def _plot(records: list[dict], metric: str, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(dict.fromkeys(r["task"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) + 2), 4))
    for m, model in enumerate(models):
        values = [
            next((r["result"][metric] for r in records if r["task"] == t and r["model"] == model), 0) for t in tasks
        ]
        ax.bar(np.arange(len(tasks)) + m * width, values, width, label=model)
    ax.set_xticks(np.arange(len(tasks)) + width * (len(models) - 1) / 2, tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_leaderboard(summary: dict[str, Any], path: Path, out_dir: Path, command: str) -> Path:
    """Measured results side by side; published figures in their own section, never mixed in."""
    records = summary["results"]
    retrieval = [r for r in records if r["kind"] == "retrieval"]
    classify = [r for r in records if r["kind"] == "classify"]
    plots_dir = path.parent / path.stem
    lines = [
        f"# vestis evaluation: {summary['suite']}",
        "",
        f"Measured on this machine with `{command}` ({summary['date']}). Raw results: `{out_dir}/`.",
        "Figures published by other models' authors are in the last section, **not measured here**.",
        "Ground-truth ids missing from this copy of the catalog are dropped, and queries left with no",
        "relevant item with them; the counts are in the tables.",
        "Tasks marked *-val* run on KAGL's validation split (10% of the products, by a stable hash of the",
        "id): a corpus ten times smaller than the full catalog the published figures use, so their",
        "retrieval numbers are higher than a full-catalog run would give and are not comparable.",
        "",
    ]
    if retrieval:
        lines += ["## Retrieval, Marqo's protocol (measured here)", ""]
        header = " | ".join(h for _, h in RETRIEVAL_COLUMNS)
        lines += [f"| task | model | {header} | queries | docs | dropped ids / queries |"]
        lines += ["|" + "---|" * (len(RETRIEVAL_COLUMNS) + 5)]
        for r in retrieval:
            res = r["result"]
            cells = " | ".join(f"{res[k]:.3f}" for k, _ in RETRIEVAL_COLUMNS)
            lines.append(f"| {r['task']} | {r['model']} | {cells} | {res['n_queries']} | {res['n_docs']} | "
                         f"{res['dropped_ids']} / {res['dropped_queries']} |")  # fmt: skip
        _plot(retrieval, "avg_precision", "AvgP = mean(P@1, P@10)", plots_dir / "retrieval-avgp.png")
        _plot(retrieval, "avg_recall", "AvgRecall = mean(R@1, R@10)", plots_dir / "retrieval-avgrecall.png")
        lines += ["", f"![AvgP]({plots_dir.name}/retrieval-avgp.png)",
                  f"![AvgRecall]({plots_dir.name}/retrieval-avgrecall.png)", ""]  # fmt: skip
    if classify:
        lines += ["## Zero-shot classification, FashionCLIP's protocol (measured here)", ""]
        lines += ["| task | model | " + " | ".join(h for _, h in CLASSIFY_COLUMNS) + " | n | labels |"]
        lines += ["|" + "---|" * (len(CLASSIFY_COLUMNS) + 4)]
        for r in classify:
            res = r["result"]
            cells = " | ".join(f"{res[k]:.3f}" for k, _ in CLASSIFY_COLUMNS)
            lines.append(f"| {r['task']} | {r['model']} | {cells} | {res['n']} | {len(res['labels'])} |")
        _plot(classify, "weighted_f1", "weighted macro F1", plots_dir / "classify-weighted-f1.png")
        lines += ["", f"![weighted F1]({plots_dir.name}/classify-weighted-f1.png)", ""]
    published = [(r["task"], r["published"]) for r in records if r.get("published") in PUBLISHED]
    if published:
        lines += ["## Published by the models' authors, not measured here", ""]
        for task, key in dict.fromkeys(published):
            entry = PUBLISHED[key]
            metrics = list(next(iter(entry["models"].values())))
            lines += [f"**{task}** — source: {entry['source']}", ""]
            lines += ["| model (published) | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
            for model, values in entry["models"].items():
                lines.append(f"| {model} | " + " | ".join(f"{values[m]:.3f}" for m in metrics) + " |")
            lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
