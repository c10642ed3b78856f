"""Catalog -> index: embed products (image + title, Marqo's multi-field documents) into a store.

Incremental and resumable: each item is keyed by its id and a content hash (image
bytes + title, and separately its other columns); items already embedded are
skipped, changed ones re-embedded (or, when only their metadata changed, re-stored
without embedding). Every batch is committed atomically, so a killed build resumes
where it stopped. Unreadable images are counted and listed in the report; such an
item is still indexed by its title when it has one.

:func:`build_index` is the one entry point, for both engines: ``engine="local"`` runs the steps
(:mod:`vestis.index.steps`) in this process, ``engine="ray"`` places them on a Ray cluster
(:mod:`vestis.index.distributed`, with :class:`~vestis.index.distributed.RayOptions`). The
CLI's ``vestis index build/add/update`` and the API's item writes call it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from vestis.data.catalog import TITLE_COLUMNS, CatalogReader
from vestis.errors import InputError
from vestis.index.distributed import RayOptions, embed_on_ray, ray_session
from vestis.index.steps import BuildJob, BuildReport, Plan, embed_plans, plan_item, tally
from vestis.index.store import Store, StoreInfo, load_index_encoder
from vestis.index.stores import create_store, open_store, store_exists
from vestis.index.vectors import AnnConfig
from vestis.models.base import Encoder
from vestis.progress import progress_bar

#: Marqo-FashionCLIP's multi-field document weights (image, title).
DEFAULT_WEIGHTS = (0.9, 0.1)
MODES = ("build", "add", "update")
#: Where decoding and embedding run: in this process, or on the actors of a Ray cluster.
ENGINES = ("local", "ray")


def resolve_title_column(columns: Sequence[str], title_column: str | None) -> str | None:
    if title_column == "":
        return None
    if title_column is not None:
        if title_column not in columns:
            raise InputError(f"no column {title_column!r} (--title-column); the catalog has {', '.join(columns)}")
        return title_column
    return next((c for c in TITLE_COLUMNS if c in columns), None)


def check_build_args(
    out: str | Path,
    mode: str,
    weights: tuple[float, float],
    engine: str = "local",
    ray: RayOptions | None = None,
    ann: Mapping[str, object] | None = None,
) -> None:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use {', '.join(MODES)}")
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; use {' or '.join(ENGINES)}")
    if ray is not None and engine != "ray":
        raise InputError(f"Ray options are for engine='ray', not {engine!r}")
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise InputError(f"weights must be two non-negative numbers (image, title), got {weights}")
    if mode != "build" and not store_exists(out):
        raise InputError(f"{out} is not a vestis index; create it with `vestis index build`")
    AnnConfig().changed(**(ann or {}))  # a setting unknown or out of range, before anything is loaded


def finish_report(store: Store, report: BuildReport, start: float, write_report: bool) -> BuildReport:
    """Count the store's items, time the build (``start``: its ``time.perf_counter()``) and keep the
    report in the store (``write_report``)."""
    report.total_items = store.count()
    report.seconds = round(time.perf_counter() - start, 3)
    report.items_per_second = round(report.seen / report.seconds, 1) if report.seconds else 0.0
    report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    if write_report:
        store.save_report(report.to_dict())
    return report


def open_catalog(
    catalog: str | Path | Sequence[Mapping], id_column: str, image_column: str
) -> tuple[CatalogReader, str]:
    """The reader of a catalog file or folder, or of products in memory, and how to name it in the report."""
    if isinstance(catalog, (str, Path)):
        return CatalogReader.open(catalog, id_column=id_column, image_column=image_column), str(catalog)
    reader = CatalogReader.from_rows(catalog, id_column=id_column, image_column=image_column)
    return reader, f"{reader.total} items in memory"


def resolve_encoder(out: str | Path, model: str | None) -> Encoder:
    """``model``, or when none is named and ``out`` is an index, the encoder it was built with."""
    from vestis.models import load_encoder

    if model is None and store_exists(out):
        with open_store(out) as existing:
            return load_index_encoder(existing.info)
    return load_encoder(model)


def open_or_create(
    out: str | Path, encoder: Encoder, weights: tuple[float, float], ann: Mapping[str, object] | None = None
):
    """The store at ``out``, created for ``encoder`` when there is none, with the ANN settings in ``ann``
    changed (:meth:`~vestis.index.store.BaseStore.set_ann`; a new store's others are the defaults)."""
    settings = {
        "weights": list(weights),
        "ann": AnnConfig().changed(**(ann or {})).to_dict(),
        "precision": getattr(encoder, "precision", "fp32"),
    }
    store = create_store(out, StoreInfo(encoder.name, encoder.fingerprint, encoder.dim, settings))
    if ann:
        try:
            store.set_ann(**ann)
        except BaseException:
            store.close()
            raise
    return store


def build_index(
    catalog: str | Path | Sequence[Mapping],
    out: str | Path,
    *,
    encoder: Encoder | None = None,
    model: str | None = None,
    id_column: str = "id",
    image_column: str = "image",
    title_column: str | None = None,
    weights: tuple[float, float] = DEFAULT_WEIGHTS,
    mode: str = "build",
    prune: bool = False,
    batch_size: int = 256,
    ann: Mapping[str, object] | None = None,
    engine: str = "local",
    ray: RayOptions | None = None,
    quiet: bool = False,
    on_commit: Callable[[BuildReport], None] | None = None,
    write_report: bool = True,
) -> BuildReport:
    """Index ``catalog`` into ``out``: an index directory or a ``postgresql://`` URL (created, or
    extended when it is an index).

    ``catalog``: a catalog file or folder (see :class:`~vestis.data.catalog.CatalogReader`), or
    products in memory, one mapping each, as a parquet row would hold them (``{"id": 7, "image":
    jpeg_bytes, "productDisplayName": ...}``).
    ``mode``: ``build`` adds new items and refreshes changed ones; ``add`` only adds ids not in
    the index; ``update`` only refreshes ids already there. ``prune`` (build) deletes items no
    longer in the catalog. ``batch_size``: items per committed transaction. ``ann``: ANN settings
    to change (:class:`~vestis.index.vectors.AnnConfig`'s fields, e.g. ``{"ef_search": 200}``; the
    others stay as the index has them, the defaults for a new one).
    ``engine``: where decoding and embedding run, ``"local"`` (this process) or ``"ray"`` (the
    actors of a Ray cluster, :mod:`vestis.index.distributed`, as ``ray`` says: a local Ray of two
    workers by default); the modes, the skipping by content hash and the report are the same.
    ``encoder``: the model to embed with (on Ray the workers load its model by name, checked against
    its fingerprint); else ``model``, or the index's own model.
    ``on_commit`` is called with the report so far after each committed batch. ``write_report``
    keeps the report in the store (an index folder's ``reports/``, a database's ``reports`` table),
    where ``vestis index info`` shows the latest.
    """
    check_build_args(out, mode, weights, engine, ray, ann)
    if engine == "ray":
        ray = ray or RayOptions()
    # Ray is started first: some native libraries (usearch) abort the process when loaded before ray.init().
    with ray_session(ray) if ray is not None else contextlib.nullcontext() as session:
        reader, source = open_catalog(catalog, id_column, image_column)
        title_col = resolve_title_column(reader.columns, title_column)
        encoder = encoder or resolve_encoder(out, model)
        start = time.perf_counter()
        report = BuildReport(
            index=str(out), model=encoder.name, mode=mode, catalog=source, notes=list(reader.notes), engine=engine
        )
        store = open_or_create(out, encoder, weights, ann)
        weights = tuple(store.info.settings.get("weights", weights))
        try:
            with store.writer():
                job = BuildJob(
                    store, reader, source, store.content_hashes(), mode, title_col, weights, batch_size, report,
                    quiet=quiet, on_commit=on_commit,
                )  # fmt: skip
                if session is None:
                    seen = _embed_here(job, encoder)
                else:
                    seen = embed_on_ray(session, ray, job, model or store.info.model)
                if prune and mode == "build":
                    report.pruned = len(store.delete([i for i in job.existing if i not in seen]))
                store.refresh()
                return finish_report(store, report, start, write_report)
        finally:
            store.close()


def _embed_here(job: BuildJob, encoder: Encoder) -> set[str]:
    """The local engine: plan, embed and store the catalog one batch at a time in this process;
    returns the ids seen (for ``prune``)."""
    seen: set[str] = set()
    with progress_bar(job.reader.total, f"indexing {Path(job.source).name}", quiet=job.quiet) as advance:
        for batch in job.reader.batches(job.batch_size):
            restored: list[Plan] = []
            pending: list[Plan] = []
            for item in batch:
                plan = plan_item(item, job.existing, job.mode, job.title_col)
                if tally(job.report, plan, seen):
                    (restored if plan.action == "metadata" else pending).append(plan)
            job.commit(restored, embed_plans(encoder, pending, job.weights, job.title_col) if pending else [])
            advance(len(batch))
    return seen


def delete_items(out: str | Path, ids: Sequence[str]) -> dict:
    """Delete ``ids`` from the index at ``out``; returns which were deleted and which were absent."""
    with open_store(out, writable=True) as store:
        deleted = store.delete([str(i) for i in ids])
        store.refresh()
        missing = sorted(set(map(str, ids)) - set(deleted))
        return {"deleted": deleted, "not_found": missing, "total_items": store.count()}
