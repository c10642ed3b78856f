"""Catalog -> index: embed products (image + title, Marqo's multi-field documents) into a store.

Incremental and resumable: each item is keyed by its id and a content hash (image
bytes + title, and separately its other columns); items already embedded are
skipped, changed ones re-embedded (or, when only their metadata changed, re-stored
without embedding). Every batch is committed atomically, so a killed build resumes
where it stopped. Unreadable images are counted and listed in the report; such an
item is still indexed by its title when it has one.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from vestis.data.catalog import TITLE_COLUMNS, CatalogItem, CatalogReader, normalize_id
from vestis.embed import embed_images
from vestis.errors import InputError
from vestis.index.store import Record, Store, StoreInfo, load_index_encoder
from vestis.index.stores import create_store, open_store, store_exists
from vestis.index.vectors import AnnConfig
from vestis.models.base import Encoder, l2_normalize
from vestis.models.text import catalog_text, without_surrogates
from vestis.progress import progress_bar

#: Marqo-FashionCLIP's multi-field document weights (image, title).
DEFAULT_WEIGHTS = (0.9, 0.1)
MODES = ("build", "add", "update")
#: Longest side of a stored thumbnail: the result page shows them 140 px tall (serve/static/style.css).
THUMBNAIL_SIZE = 160


@dataclass
class BuildReport:
    index: str
    model: str
    mode: str
    catalog: str = ""
    seen: int = 0
    added: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    skipped_existing: list[str] = field(default_factory=list)  # add: already in the index
    skipped_missing: list[str] = field(default_factory=list)  # update: not in the index
    duplicate_ids: list[str] = field(default_factory=list)  # later rows with an id seen before
    missing_id: int = 0
    bad_ids: list[dict] = field(default_factory=list)  # {"id", "reason"}: not text or an int64; refused
    notes: list[str] = field(default_factory=list)  # what the catalog was read as (a folder's parquets, not its images)
    unreadable_images: list[dict] = field(default_factory=list)  # {"id", "reason", "indexed_by_title"}
    not_indexed: list[dict] = field(default_factory=list)  # no image and no title: nothing to embed
    total_items: int = 0
    engine: str = "local"  # "ray": embedded by the workers of a Ray cluster (vestis.index.distributed)
    workers: dict[str, int] = field(default_factory=dict)  # ray: items embedded by each worker (host:pid)
    seconds: float = 0.0
    items_per_second: float = 0.0
    finished_at: str = ""  # ISO 8601, UTC

    def to_dict(self) -> dict:
        return asdict(self)


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _image_bytes(item: CatalogItem) -> bytes | None:
    if isinstance(item.image, bytes):
        return item.image
    if isinstance(item.image, Path):
        try:
            return item.image.read_bytes()
        except OSError as exc:
            item.image_problem = f"cannot read {item.image}: {exc.strerror}"
    return None


def thumbnail(data: bytes, size: int = THUMBNAIL_SIZE) -> bytes | None:
    """Small JPEG/PNG bytes for result pages: the original when already small, else a JPEG thumbnail."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if len(data) <= 24_000 and max(im.size) <= size and im.format in ("JPEG", "PNG", "WEBP"):
                return data
            im.draft("RGB", (size, size))
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            return buf.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def resolve_title_column(columns: Sequence[str], title_column: str | None) -> str | None:
    if title_column == "":
        return None
    if title_column is not None:
        if title_column not in columns:
            raise InputError(f"no column {title_column!r} (--title-column); the catalog has {', '.join(columns)}")
        return title_column
    return next((c for c in TITLE_COLUMNS if c in columns), None)


#: What a build does with one catalog row (:func:`plan_item`): the first two and the skips are
#: counted in the report, ``metadata`` re-stores an item without embedding, ``embed`` embeds it.
ACTIONS = ("missing_id", "bad_id", "skip_existing", "skip_missing", "unchanged", "metadata", "embed")


@dataclass
class Plan:
    """What to do with one catalog row, decided from the row and the index's content hash for its id."""

    item: CatalogItem
    action: str  # one of ACTIONS
    key: str = ""  # the id as text ('' when the row has no usable id)
    title: str = ""
    content_hash: str = ""  # "<hash of image and title>.<hash of the other columns>"
    is_new: bool = True  # no item with this id in the index
    image: bytes | None = None  # the image, read once when hashed; kept only for ``embed``
    reason: str = ""  # why an id was refused


def plan_item(item: CatalogItem, existing: Mapping[str, str], mode: str, title_col: str | None) -> Plan:
    """The fate of one row: ``existing`` maps the index's ids to their content hashes
    (:meth:`Store.content_hashes`). Duplicate ids are the caller's to find (:func:`tally`)."""
    if item.id is None or (isinstance(item.id, str) and not item.id.strip()):
        return Plan(item, "missing_id")
    try:
        item.id = normalize_id(item.id)
    except InputError as exc:
        return Plan(item, "bad_id", reason=str(exc))
    key = str(item.id)
    old = existing.get(key)
    if mode == "add" and old is not None:
        return Plan(item, "skip_existing", key)
    if mode == "update" and old is None:
        return Plan(item, "skip_missing", key)
    item.metadata = {without_surrogates(k) if isinstance(k, str) else k: without_surrogates(v) if isinstance(v, str)
                     else v for k, v in item.metadata.items()}  # fmt: skip
    title = catalog_text(item.metadata.get(title_col) or "") if title_col else ""  # nothing left: no title
    image = _image_bytes(item)
    embed_hash = _digest(image or b"", title.encode())
    content_hash = f"{embed_hash}.{_digest(json.dumps(item.metadata, sort_keys=True, default=str).encode())}"
    if old == content_hash:
        action = "unchanged"
    elif old is not None and old.split(".")[0] == embed_hash:
        action = "metadata"
    else:
        action = "embed"
    return Plan(item, action, key, title, content_hash, old is None, image if action == "embed" else None)


def tally(report: BuildReport, plan: Plan, seen: set[str]) -> bool:
    """Count one planned row (in catalog order) in the report; True when it has work left
    (``embed`` or ``metadata``). A later row with an id in ``seen`` is a duplicate."""
    report.seen += 1
    if plan.action == "missing_id":
        report.missing_id += 1
        return False
    if plan.action == "bad_id":
        report.bad_ids.append({"id": _shown(plan.item.id), "reason": plan.reason})
        return False
    if plan.key in seen:
        report.duplicate_ids.append(plan.key)
        return False
    seen.add(plan.key)
    if plan.action == "skip_existing":
        report.skipped_existing.append(plan.key)
    elif plan.action == "skip_missing":
        report.skipped_missing.append(plan.key)
    elif plan.action == "unchanged":
        report.unchanged += 1
    return plan.action in ("metadata", "embed")


def check_build_args(out: str | Path, mode: str, weights: tuple[float, float]) -> None:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use {', '.join(MODES)}")
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise InputError(f"weights must be two non-negative numbers (image, title), got {weights}")
    if mode != "build" and not store_exists(out):
        raise InputError(f"{out} is not a vestis index; create it with `vestis index build`")


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


def open_or_create(out: str | Path, encoder: Encoder, weights: tuple[float, float], ann: AnnConfig | None):
    settings = {
        "weights": list(weights),
        "ann": (ann or AnnConfig()).to_dict(),
        "precision": getattr(encoder, "precision", "fp32"),
    }
    store = create_store(out, StoreInfo(encoder.name, encoder.fingerprint, encoder.dim, settings))
    if ann is not None and store.info.settings.get("ann") != ann.to_dict():
        store.update_settings(ann=ann.to_dict())
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
    ann: AnnConfig | None = None,
    quiet: bool = False,
    on_batch: Callable[[int], None] | None = None,
    write_report: bool = True,
) -> BuildReport:
    """Index ``catalog`` into the directory ``out`` (created, or extended when it is an index).

    ``catalog``: a catalog file or folder (see :class:`~vestis.data.catalog.CatalogReader`), or
    products in memory, one mapping each, as a parquet row would hold them (``{"id": 7, "image":
    jpeg_bytes, "productDisplayName": ...}``).
    ``mode``: ``build`` adds new items and refreshes changed ones; ``add`` only adds ids not in
    the index; ``update`` only refreshes ids already there. ``prune`` (build) deletes items no
    longer in the catalog. ``write_report`` keeps the report in the store (an index folder's
    ``reports/``, a database's ``reports`` table), where ``vestis index info`` shows the latest.
    """
    check_build_args(out, mode, weights)
    reader, source = open_catalog(catalog, id_column, image_column)
    title_col = resolve_title_column(reader.columns, title_column)
    encoder = encoder or resolve_encoder(out, model)
    start = time.perf_counter()
    report = BuildReport(index=str(out), model=encoder.name, mode=mode, catalog=source, notes=list(reader.notes))
    store = open_or_create(out, encoder, weights, ann)
    weights = tuple(store.info.settings.get("weights", weights))
    try:
        with store.writer():
            existing = store.content_hashes()
            seen: set[str] = set()
            pending: list[Plan] = []
            restored: list[Plan] = []
            with progress_bar(reader.total, f"indexing {Path(source).name}", quiet=quiet) as advance:
                for batch in reader.batches(batch_size):
                    for item in batch:
                        plan = plan_item(item, existing, mode, title_col)
                        if tally(report, plan, seen):
                            (restored if plan.action == "metadata" else pending).append(plan)
                    if restored:
                        restore_metadata(store, restored, title_col)
                        report.metadata_updated += len(restored)
                        restored = []
                    if pending:
                        store_embedded(store, embed_plans(encoder, pending, weights, title_col), report)
                        pending = []
                    advance(len(batch))
                    if on_batch is not None:
                        on_batch(report.seen)
            if prune and mode == "build":
                gone = [i for i in existing if i not in seen]
                report.pruned = len(store.delete(gone))
            store.refresh()
            return finish_report(store, report, start, write_report)
    finally:
        store.close()


def _shown(value: object) -> str:
    """A refused id, for the report (printable, short)."""
    text = repr(value).encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _body(metadata: dict, title_col: str | None) -> str:
    texts = (catalog_text(v) for k, v in metadata.items() if k != title_col and isinstance(v, str))
    return " ".join(t for t in texts if t)


def _record(item: CatalogItem, title: str, title_col: str | None, content_hash: str, **vectors) -> Record:
    image = item.image if isinstance(item.image, bytes) else None
    return Record(
        id=str(item.id), metadata=item.metadata, content_hash=content_hash, title=title,
        body=_body(item.metadata, title_col), image_ref=item.image_ref,
        id_value=item.id, **vectors,
        image_hash=_digest(image) if image else None,
    )  # fmt: skip


def restore_metadata(store: Store, plans: Sequence[Plan], title_col: str | None) -> None:
    """Store new metadata for items whose image and title did not change, keeping their vectors
    (one read and one transaction for the batch)."""
    olds = store.get([plan.key for plan in plans], vectors=True, thumbnails=True)
    records = []
    for plan in plans:
        old = olds[plan.key]
        rec = _record(plan.item, plan.title, title_col, plan.content_hash, vector=old.vector)
        rec.image_vector, rec.text_vector, rec.thumbnail = old.image_vector, old.text_vector, old.thumbnail
        rec.image_hash, rec.image_error = old.image_hash, old.image_error
        records.append(rec)
    store.upsert(records)


@dataclass
class Embedded:
    """One planned item after embedding: its record, or none when there was nothing to embed."""

    plan: Plan
    record: Record | None
    problem: str | None = None  # why the image was not used (the title stands in), or why nothing was indexed


def embed_plans(
    encoder: Encoder, plans: Sequence[Plan], weights: tuple[float, float], title_col: str | None
) -> list[Embedded]:
    """Embed a batch of planned items (images, then titles) into records; a pure step that the
    local build runs in-process and the distributed one (:mod:`vestis.index.distributed`) in workers."""
    images = [p.image for p in plans]  # read once, when the item was hashed
    readable = [i for i, b in enumerate(images) if b]
    img_vecs: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {i: plans[i].item.image_problem or "no image" for i, b in enumerate(images) if not b}
    if readable:
        result = embed_images(encoder, [images[i] for i in readable], quiet=True)
        bad = dict(result.failed)
        for j, i in enumerate(readable):
            if j in bad:
                errors[i] = bad[j]
            else:
                img_vecs[i] = result.vectors[j]
    titled = [i for i, p in enumerate(plans) if p.title]
    txt_vecs = dict(zip(titled, encoder.encode_texts([plans[i].title for i in titled]))) if titled else {}
    w_img, w_txt = weights
    out = []
    for i, plan in enumerate(plans):
        img, txt = img_vecs.get(i), txt_vecs.get(i)
        if img is not None and txt is not None and w_img > 0 and w_txt > 0:
            doc = l2_normalize((w_img * img + w_txt * txt)[None, :])[0]
        elif img is not None and (w_img > 0 or txt is None):
            doc = img
        elif txt is not None:
            doc = txt
        else:
            out.append(Embedded(plan, None, errors.get(i, "nothing to embed")))
            continue
        rec = _record(plan.item, plan.title, title_col, plan.content_hash, vector=np.asarray(doc, np.float32))
        rec.image_vector, rec.text_vector = img, txt
        rec.image_error = errors.get(i)
        image = images[i]
        rec.thumbnail = thumbnail(image) if image and img is not None else None
        out.append(Embedded(plan, rec, errors.get(i)))
    return out


def store_embedded(store: Store, embedded: Sequence[Embedded], report: BuildReport) -> None:
    """Count a batch of embedded items in the report and commit their records as one transaction.

    An item with nothing to embed is not indexed; one already in the index keeps its previous version."""
    records = []
    for e in embedded:
        if e.record is None:
            report.not_indexed.append({"id": e.plan.key, "reason": e.problem})
            continue
        if e.problem:
            report.unreadable_images.append({"id": e.plan.key, "reason": e.problem, "indexed_by_title": True})
        if e.plan.is_new:
            report.added += 1
        else:
            report.updated += 1
        records.append(e.record)
    store.upsert(records)


def delete_items(out: str | Path, ids: Sequence[str]) -> dict:
    """Delete ``ids`` from the index at ``out``; returns which were deleted and which were absent."""
    with open_store(out, writable=True) as store:
        deleted = store.delete([str(i) for i in ids])
        store.refresh()
        missing = sorted(set(map(str, ids)) - set(deleted))
        return {"deleted": deleted, "not_found": missing, "total_items": store.count()}
