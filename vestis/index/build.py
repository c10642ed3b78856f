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
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use {', '.join(MODES)}")
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise InputError(f"weights must be two non-negative numbers (image, title), got {weights}")
    if mode != "build" and not store_exists(out):
        raise InputError(f"{out} is not a vestis index; create it with `vestis index build`")
    in_memory = not isinstance(catalog, (str, Path))
    if in_memory:
        reader = CatalogReader.from_rows(catalog, id_column=id_column, image_column=image_column)
    else:
        reader = CatalogReader.open(catalog, id_column=id_column, image_column=image_column)
    source = f"{reader.total} items in memory" if in_memory else str(catalog)
    title_col = resolve_title_column(reader.columns, title_column)
    if encoder is None:
        from vestis.models import load_encoder

        if model is None and store_exists(out):
            with open_store(out) as existing:
                encoder = load_index_encoder(existing.info)
        else:
            encoder = load_encoder(model)
    start = time.perf_counter()
    report = BuildReport(index=str(out), model=encoder.name, mode=mode, catalog=source, notes=list(reader.notes))
    store = open_or_create(out, encoder, weights, ann)
    weights = tuple(store.info.settings.get("weights", weights))
    try:
        with store.writer():
            existing = store.content_hashes()
            seen: set[str] = set()
            pending: list[tuple[CatalogItem, str, str, bool, bytes | None]] = []
            restored: list[tuple[CatalogItem, str, str]] = []
            with progress_bar(reader.total, f"indexing {Path(source).name}", quiet=quiet) as advance:
                for batch in reader.batches(batch_size):
                    for item in batch:
                        report.seen += 1
                        if item.id is None or (isinstance(item.id, str) and not item.id.strip()):
                            report.missing_id += 1
                            continue
                        try:
                            item.id = normalize_id(item.id)
                        except InputError as exc:
                            report.bad_ids.append({"id": _shown(item.id), "reason": str(exc)})
                            continue
                        key = str(item.id)
                        if key in seen:
                            report.duplicate_ids.append(key)
                            continue
                        seen.add(key)
                        old = existing.get(key)
                        if mode == "add" and old is not None:
                            report.skipped_existing.append(key)
                            continue
                        if mode == "update" and old is None:
                            report.skipped_missing.append(key)
                            continue
                        title = str(item.metadata.get(title_col) or "").strip() if title_col else ""
                        image = _image_bytes(item)
                        embed_hash = _digest(image or b"", title.encode())
                        meta_hash = _digest(json.dumps(item.metadata, sort_keys=True, default=str).encode())
                        if old == f"{embed_hash}.{meta_hash}":
                            report.unchanged += 1
                            continue
                        if old is not None and old.split(".")[0] == embed_hash:
                            restored.append((item, title, f"{embed_hash}.{meta_hash}"))
                            continue
                        pending.append((item, title, f"{embed_hash}.{meta_hash}", old is None, image))
                    if restored:
                        _restore_metadata(store, restored, title_col)
                        report.metadata_updated += len(restored)
                        restored = []
                    if pending:
                        _embed_and_store(store, encoder, pending, weights, title_col, report, quiet=True)
                        pending = []
                    advance(len(batch))
                    if on_batch is not None:
                        on_batch(report.seen)
            if prune and mode == "build":
                gone = [i for i in existing if i not in seen]
                report.pruned = len(store.delete(gone))
            store.refresh()
            report.total_items = store.count()
            report.seconds = round(time.perf_counter() - start, 3)
            report.items_per_second = round(report.seen / report.seconds, 1) if report.seconds else 0.0
            report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
            if write_report:
                store.save_report(report.to_dict())
    finally:
        store.close()
    return report


def _shown(value: object) -> str:
    """A refused id, for the report (printable, short)."""
    text = repr(value).encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _body(metadata: dict, title_col: str | None) -> str:
    return " ".join(str(v) for k, v in metadata.items() if k != title_col and isinstance(v, str) and v.strip())


def _record(item: CatalogItem, title: str, title_col: str | None, content_hash: str, **vectors) -> Record:
    image = item.image if isinstance(item.image, bytes) else None
    return Record(
        id=str(item.id), metadata=item.metadata, content_hash=content_hash, title=title,
        body=_body(item.metadata, title_col), image_ref=item.image_ref,
        id_value=item.id, **vectors,
        image_hash=_digest(image) if image else None,
    )  # fmt: skip


def _restore_metadata(store: Store, items: list[tuple[CatalogItem, str, str]], title_col: str | None) -> None:
    """Store new metadata for items whose image and title did not change, keeping their vectors
    (one read and one transaction for the batch)."""
    olds = store.get([str(item.id) for item, _, _ in items], vectors=True, thumbnails=True)
    records = []
    for item, title, content_hash in items:
        old = olds[str(item.id)]
        rec = _record(item, title, title_col, content_hash, vector=old.vector)
        rec.image_vector, rec.text_vector, rec.thumbnail = old.image_vector, old.text_vector, old.thumbnail
        rec.image_hash, rec.image_error = old.image_hash, old.image_error
        records.append(rec)
    store.upsert(records)


def _embed_and_store(
    store: Store,
    encoder: Encoder,
    pending: list[tuple[CatalogItem, str, str, bool, bytes | None]],
    weights: tuple[float, float],
    title_col: str | None,
    report: BuildReport,
    *,
    quiet: bool,
) -> None:
    """Embed one batch (images, then titles) and commit it as one transaction."""
    images = [p[4] for p in pending]  # read once, when the item was hashed
    readable = [i for i, b in enumerate(images) if b]
    img_vecs: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {i: pending[i][0].image_problem or "no image" for i, b in enumerate(images) if not b}
    if readable:
        result = embed_images(encoder, [images[i] for i in readable], quiet=quiet)
        bad = dict(result.failed)
        for j, i in enumerate(readable):
            if j in bad:
                errors[i] = bad[j]
            else:
                img_vecs[i] = result.vectors[j]
    titled = [i for i, p in enumerate(pending) if p[1]]
    txt_vecs = dict(zip(titled, encoder.encode_texts([pending[i][1] for i in titled]))) if titled else {}
    w_img, w_txt = weights
    records = []
    for i, (item, title, content_hash, is_new, _) in enumerate(pending):
        img, txt = img_vecs.get(i), txt_vecs.get(i)
        if img is not None and txt is not None and w_img > 0 and w_txt > 0:
            doc = l2_normalize((w_img * img + w_txt * txt)[None, :])[0]
        elif img is not None and (w_img > 0 or txt is None):
            doc = img
        elif txt is not None:
            doc = txt
        else:
            # nothing to embed: a new item is not indexed; an existing one keeps its previous version
            report.not_indexed.append({"id": str(item.id), "reason": errors.get(i, "nothing to embed")})
            continue
        if i in errors:
            report.unreadable_images.append({"id": str(item.id), "reason": errors[i], "indexed_by_title": True})
        if is_new:
            report.added += 1
        else:
            report.updated += 1
        rec = _record(item, title, title_col, content_hash, vector=np.asarray(doc, np.float32))
        rec.image_vector, rec.text_vector = img, txt
        rec.image_error = errors.get(i)
        image = images[i]
        rec.thumbnail = thumbnail(image) if image and img is not None else None
        records.append(rec)
    store.upsert(records)


def delete_items(out: str | Path, ids: Sequence[str]) -> dict:
    """Delete ``ids`` from the index at ``out``; returns which were deleted and which were absent."""
    with open_store(out, writable=True) as store:
        deleted = store.delete([str(i) for i in ids])
        store.refresh()
        missing = sorted(set(map(str, ids)) - set(deleted))
        return {"deleted": deleted, "not_found": missing, "total_items": store.count()}
