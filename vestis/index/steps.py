"""The steps of a build, one catalog row or one batch at a time, shared by its engines.

:func:`vestis.index.build.build_index` runs them in this process (``engine="local"``) or places
them on Ray (``engine="ray"``, :mod:`vestis.index.distributed`): a row is hashed and planned
against the index's content hashes (:func:`plan_item`), counted in the :class:`BuildReport` in
catalog order (:func:`tally`), embedded (:func:`embed_plans`: pure, so a Ray worker runs it as
well as this process) and stored one batch per transaction (:func:`store_embedded`, or
:func:`restore_metadata` when only an item's other columns changed).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vestis.data.catalog import CatalogItem, CatalogReader, normalize_id
from vestis.embed import embed_images
from vestis.errors import InputError
from vestis.index.store import Record, Store
from vestis.models.base import Encoder, l2_normalize
from vestis.models.text import catalog_text, without_surrogates

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


@dataclass
class BuildJob:
    """One build as an engine runs it: the open store (its writer held), the catalog, the index's
    content hashes when the build started, and the report that counts it all."""

    store: Store
    reader: CatalogReader
    source: str  # the catalog, as the report and the progress line name it
    existing: dict[str, str]  # id -> content hash (Store.content_hashes), read once at the start
    mode: str
    title_col: str | None
    weights: tuple[float, float]
    batch_size: int  # items per committed transaction
    report: BuildReport
    quiet: bool = False
    on_commit: Callable[[BuildReport], None] | None = None

    def commit(self, restored: Sequence[Plan], embedded: Sequence[Embedded]) -> None:
        """Store a batch (items whose metadata alone changed, then the embedded ones: a transaction
        each), count it in the report and tell ``on_commit``."""
        if restored:
            restore_metadata(self.store, restored, self.title_col)
            self.report.metadata_updated += len(restored)
        if embedded:
            store_embedded(self.store, embedded, self.report)
        if self.on_commit is not None:
            self.on_commit(self.report)
