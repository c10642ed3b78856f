"""FashionCLIP's zero-shot protocol: labels x templates -> predicted class -> weighted macro F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vestis.classify import DEFAULT_TEMPLATES, label_embeddings
from vestis.embed import EmbeddingCache, cached_image_embeddings
from vestis.errors import InputError
from vestis.eval.metrics import classification_metrics
from vestis.eval.results import ZeroShotResult
from vestis.models.base import Encoder
from vestis.models.preprocess import ImageInput


def evaluate_zero_shot(
    encoder: Encoder,
    images: Sequence[ImageInput],
    true_labels: Sequence[str | None],
    *,
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    cache: EmbeddingCache | None = None,
    quiet: bool = False,
) -> ZeroShotResult:
    """Classify ``images`` among ``labels`` (default: the labels present) and score the result.

    Items with an empty label are unknown, never a class; items whose label is
    not a candidate and unreadable images are skipped and counted.
    """
    if len(images) != len(true_labels):
        raise InputError(f"{len(images)} images but {len(true_labels)} labels")
    known = [(i, str(lbl)) for i, lbl in enumerate(true_labels) if lbl is not None and str(lbl).strip()]
    candidates = list(labels) if labels else sorted({lbl for _, lbl in known})
    if len(candidates) < 2:
        raise InputError(f"zero-shot classification needs at least two labels, got {candidates}")
    index = {lbl: k for k, lbl in enumerate(candidates)}
    chosen = [(i, lbl) for i, lbl in known if lbl in index]
    if not chosen:
        raise InputError("no image has one of the candidate labels")
    counts = Counter(lbl for _, lbl in chosen)
    embedded = cached_image_embeddings(encoder, [images[i] for i, _ in chosen], cache, quiet=quiet)
    ok = embedded.ok
    vectors = embedded.vectors[ok]
    y_true = np.array([index[lbl] for (_, lbl), good in zip(chosen, ok) if good], dtype=np.int64)
    class_vectors = label_embeddings(encoder, candidates, templates)
    y_pred = np.argmax(vectors @ class_vectors.T, axis=1)
    result = classification_metrics(y_true, y_pred, candidates)
    result.update(
        labels=candidates,
        templates=list(templates),
        skipped_unlabelled=len(true_labels) - len(known),
        skipped_other_label=len(known) - len(chosen),
        unreadable_images=len(embedded.failed),
        labels_without_images=[lbl for lbl in candidates if counts[lbl] == 0],
    )
    return ZeroShotResult(result)


def plot_confusion(result: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = result["labels"]
    cm = np.asarray(result["confusion"], dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    size = max(5.0, min(0.28 * n + 3, 40.0))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7 if n > 30 else 9)
    ax.set_yticks(range(n), labels, fontsize=7 if n > 30 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_title(title or f"weighted F1 {result['weighted_f1']:.3f}, accuracy {result['accuracy']:.3f}")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
