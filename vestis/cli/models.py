"""``vestis models`` and ``vestis embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vestis.cli.options import DownloadOpt, JsonOpt, ModelOpt, RuntimeOpt, ThreadsOpt
from vestis.cli.output import out, print_json
from vestis.errors import InputError


def models(as_json: JsonOpt = False) -> None:
    """List the registered models and whether their files are on this machine."""
    from rich.table import Table

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
        print_json({"models": rows})
        return
    table = Table(title="vestis models")
    for col in ("name", "format", "published as", "on this machine"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        status = f"[green]{r['location']}[/]" if r["present"] else "[yellow]missing[/]"
        table.add_row(name, r["format"], r["hub_id"] or "-", status)
    out.print(table)


def embed(
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Text to embed (repeatable).")] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="Image file to embed (repeatable).")] = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the embeddings.")] = False,
    threads: ThreadsOpt = None,
    runtime: RuntimeOpt = None,
    download: DownloadOpt = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per encoder call.")] = 32,
) -> None:
    """Embed texts and images; print a summary table or, with --json, the vectors."""
    import numpy as np
    from rich.table import Table

    from vestis.models import load_encoder

    texts, images = list(text or []), list(image or [])
    if not texts and not images:
        raise InputError("nothing to embed: give --text and/or --image")
    enc = load_encoder(model, threads=threads, batch_size=batch_size, runtime=runtime, download=download or None)
    items: list[tuple[str, str, np.ndarray]] = []
    if texts:
        items += [("text", t, v) for t, v in zip(texts, enc.encode_texts(texts))]
    if images:
        items += [("image", str(p), v) for p, v in zip(images, enc.encode_images(images))]
    if as_json:
        data = [{"type": k, "input": s, "embedding": [round(float(x), 7) for x in v]} for k, s, v in items]
        print_json({"model": enc.name, "dim": enc.dim, "data": data})
        return
    table = Table(title=f"{enc.name} ({enc.runtime}), dim {enc.dim}")
    for col in ("type", "input", "norm", "first values"):
        table.add_column(col)
    for kind, src, vec in items:
        table.add_row(kind, src, f"{np.linalg.norm(vec):.4f}", " ".join(f"{x:+.3f}" for x in vec[:4]) + " …")
    out.print(table)
