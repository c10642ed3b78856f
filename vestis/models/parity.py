"""Parity of a fast variant (ONNX fp32/int8, torch bf16) with the torch fp32 model it came from.

Measured on real data: KAGL product photos and titles from ``../shared/data``
when present, else the bundled demo catalog.  Three numbers per variant:

* cosine of each image embedding to the fp32 one (min and mean),
* the same for texts (product titles and the zero-shot prompts),
* zero-shot top-1 agreement: the share of images whose best articleType label
  ("a photo of a {label}.", all of the catalog's article types) is the same
  as fp32's.

A variant *passes* when both minimum cosines are >= ``MIN_COSINE`` and the
agreement is >= ``MIN_AGREEMENT``.  Only a variant that passes is ever picked
by default (see ``vestis.models.loading``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vestis.models.base import Encoder, l2_normalize

MIN_COSINE = 0.99
MIN_AGREEMENT = 0.99
TEMPLATE = "a photo of a {}."


@dataclass
class ParityData:
    """Images, titles and zero-shot labels to compare variants on."""

    images: list[bytes]
    titles: list[str]
    labels: list[str]
    source: str
    #: Further images, never among ``images``: calibration for static quantisation.
    calibration: list[bytes] = field(default_factory=list)

    @property
    def prompts(self) -> list[str]:
        return [TEMPLATE.format(label) for label in self.labels]

    def describe(self) -> str:
        return f"{len(self.images)} images, {len(self.titles)} titles, {len(self.labels)} labels from {self.source}"


def parity_data(n_images: int = 500, n_texts: int = 500, n_calibration: int = 256) -> ParityData:
    """The first ``n_images`` KAGL products (or demo products), their titles and the article types.

    Images are taken evenly over the catalog (every k-th product), so that many
    article types appear; the calibration images are the products just after.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vestis.data import demo_catalog_path, kagl_parquets

    files = kagl_parquets()
    source = "KAGL (../shared/data/kagl)" if files else "the bundled demo catalog (300 KAGL products)"
    columns = ["image", "productDisplayName", "articleType"]
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in (files or [demo_catalog_path()])])
    n_rows = table.num_rows
    want = min(n_rows, n_images + n_calibration)
    step = max(1, n_rows // max(1, want))
    picked = table.take(pa.array(np.arange(0, n_rows, step)[:want]))
    images = picked.column("image").to_pylist()
    all_titles = [t for t in table.column("productDisplayName").to_pylist() if t]
    titles = all_titles[:: max(1, len(all_titles) // max(1, n_texts))][:n_texts]
    labels = sorted({t for t in table.column("articleType").to_pylist() if t})
    return ParityData(
        images=images[:n_images],
        titles=titles,
        labels=labels,
        source=source,
        calibration=images[n_images:],
    )


@dataclass
class Embeddings:
    images: np.ndarray
    titles: np.ndarray
    labels: np.ndarray
    images_per_s: float = 0.0
    texts_per_s: float = 0.0

    @classmethod
    def of(cls, encoder: Encoder, data: ParityData) -> Embeddings:
        t0 = time.perf_counter()
        images = encoder.encode_images(data.images)
        t1 = time.perf_counter()
        titles = encoder.encode_texts(data.titles) if data.titles else np.zeros((0, encoder.dim), np.float32)
        t2 = time.perf_counter()
        labels = encoder.encode_texts(data.prompts)
        return cls(
            images=images,
            titles=titles,
            labels=labels,
            images_per_s=len(data.images) / max(t1 - t0, 1e-9),
            texts_per_s=len(data.titles) / max(t2 - t1, 1e-9),
        )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def compare(reference: Embeddings, candidate: Embeddings) -> dict[str, Any]:
    """The parity numbers of ``candidate`` against ``reference`` (both from the same data)."""
    img = _cosines(candidate.images, reference.images)
    txt = _cosines(
        np.concatenate([candidate.titles, candidate.labels]), np.concatenate([reference.titles, reference.labels])
    )
    ref_top = np.argmax(reference.images @ reference.labels.T, axis=1)
    top = np.argmax(candidate.images @ candidate.labels.T, axis=1)
    # Each tower alone: candidate images against fp32 labels, fp32 images against candidate labels.
    image_only = np.argmax(candidate.images @ reference.labels.T, axis=1)
    text_only = np.argmax(reference.images @ candidate.labels.T, axis=1)
    row = {
        "image_cos_min": float(img.min()),
        "image_cos_mean": float(img.mean()),
        "text_cos_min": float(txt.min()),
        "text_cos_mean": float(txt.mean()),
        "top1_agreement": float(np.mean(top == ref_top)),
        "top1_agreement_image_tower": float(np.mean(image_only == ref_top)),
        "top1_agreement_text_tower": float(np.mean(text_only == ref_top)),
        "n_images": int(len(img)),
        "n_texts": int(len(txt)),
        "images_per_s": round(candidate.images_per_s, 1),
        "texts_per_s": round(candidate.texts_per_s, 1),
    }
    row["image_tower_passed"] = row["image_cos_min"] >= MIN_COSINE and (
        row["top1_agreement_image_tower"] >= MIN_AGREEMENT
    )
    row["text_tower_passed"] = row["text_cos_min"] >= MIN_COSINE and row["top1_agreement_text_tower"] >= MIN_AGREEMENT
    row["passed"] = passed(row)
    return row


def passed(row: dict[str, Any]) -> bool:
    return (
        row["image_cos_min"] >= MIN_COSINE
        and row["text_cos_min"] >= MIN_COSINE
        and row["top1_agreement"] >= MIN_AGREEMENT
    )


def reference_margin(reference: Embeddings) -> dict[str, float]:
    """How decisive fp32's zero-shot choices are: the gap between its best and second-best label.

    With random weights the gaps are tiny, so any rounding flips some choices;
    this says how much the agreement figure can mean for a given model.
    """
    scores = np.sort(reference.images @ reference.labels.T, axis=1)
    gap = scores[:, -1] - scores[:, -2]
    return {"top1_margin_median": float(np.median(gap)), "top1_margin_p10": float(np.quantile(gap, 0.1))}
