"""``make demo``: zero-shot label a small catalog and search it by text."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from vestis.classify import label_embeddings, top_labels
from vestis.data import demo_catalog_path, kagl_parquets
from vestis.data.split import select_split
from vestis.embed import embed_images
from vestis.models import load_encoder
from vestis.models.registry import default_model

QUERIES = ("red summer dress", "black leather shoes for men", "a watch")


def _catalog(n: int = 200) -> tuple[str, list[dict]]:
    files = kagl_parquets()
    if files:  # validation-split products: vestis-mini never trained on them
        rows = select_split(pq.read_table(files[0]), "val").slice(0, n).to_pylist()
        return f"{files[0].name} (first {len(rows)} validation-split products)", rows
    path = demo_catalog_path()
    return f"bundled {path.name}", pq.read_table(path).to_pylist()


def run_demo(model: str | None = None, *, console: Console | None = None, quiet: bool = False) -> dict:
    console = console or Console()
    name = model or default_model()
    enc = load_encoder(name)
    if enc.name == "vestis-tiny-random":
        console.print(
            "[yellow]Note:[/] the default model is still vestis-tiny-random (random weights): the plumbing "
            "runs end to end, but the labels and search results below are meaningless until the "
            "trained vestis-mini model ships."
        )
    source, rows = _catalog()
    console.print(f"model: {enc}\ncatalog: {source}")
    embedded = embed_images(enc, [r["image"] for r in rows], quiet=quiet)
    rows = [r for r, ok in zip(rows, embedded.ok) if ok]
    image_emb = embedded.vectors[embedded.ok]
    labels = sorted({r["articleType"] for r in rows if r["articleType"]})
    preds = top_labels(image_emb, label_embeddings(enc, labels), labels, k=1, logit_scale=enc.logit_scale)
    truth = [r["articleType"] for r in rows]
    accuracy = float(np.mean([p[0].label == t for p, t in zip(preds, truth)]))
    table = Table(title=f"zero-shot articleType ({len(labels)} labels), first 10 products")
    for col in ("id", "title", "true", "predicted", "p"):
        table.add_column(col)
    for r, p in list(zip(rows, preds))[:10]:
        table.add_row(str(r["id"]), r["productDisplayName"] or "-", r["articleType"], p[0].label, f"{p[0].score:.2f}")
    console.print(table)
    console.print(f"accuracy over {len(rows)} products: {accuracy:.3f} (chance {1 / len(labels):.3f})")
    query_emb = enc.encode_texts(list(QUERIES))
    for q, qv in zip(QUERIES, query_emb):
        best = np.argsort(-(image_emb @ qv))[:3]
        hits = ", ".join(f"{rows[i]['articleType']}/{rows[i]['baseColour']} ({image_emb[i] @ qv:.2f})" for i in best)
        console.print(f"search {q!r}: {hits}")
    return {"model": enc.name, "n": len(rows), "accuracy": accuracy}
