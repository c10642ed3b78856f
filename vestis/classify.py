"""Zero-shot classification: labels x prompt templates -> class embeddings -> scores."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vestis.errors import InputError
from vestis.models.base import Encoder, l2_normalize

DEFAULT_TEMPLATES = ("a photo of a {}.",)
#: Default prompt templates per label language: Chinese as vestis-mini's Chinese training
#: captions phrase a photo of something (一张…的照片; vestis.train.captions).
LANGUAGE_TEMPLATES = {"en": DEFAULT_TEMPLATES, "zh": ("一张{}的照片",)}


def language_templates(lang: str) -> tuple[str, ...]:
    """The default prompt templates of labels in ``lang``, or an error naming the languages known."""
    if lang not in LANGUAGE_TEMPLATES:
        raise InputError(f"label language must be one of {', '.join(LANGUAGE_TEMPLATES)}, not {lang!r}")
    return LANGUAGE_TEMPLATES[lang]


def label_embeddings(
    encoder: Encoder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> np.ndarray:
    """One unit vector per label: the normalised mean of its templated prompts (CLIP's ensemble)."""
    labels = list(labels)
    if not labels:
        raise InputError("no labels given")
    if len(set(labels)) != len(labels):
        raise InputError("labels must be unique")
    if not templates or any("{}" not in t for t in templates):
        raise InputError("every prompt template must contain '{}' where the label goes")
    prompts = [t.format(label) for label in labels for t in templates]
    emb = encoder.encode_texts(prompts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return l2_normalize(emb)


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


def top_labels(
    image_embeddings: np.ndarray, label_emb: np.ndarray, labels: Sequence[str], k: int = 1, logit_scale: float = 100.0
) -> list[list[Prediction]]:
    """For each image, the ``k`` most probable labels with softmax probabilities."""
    logits = logit_scale * image_embeddings @ label_emb.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    k = min(k, len(labels))
    order = np.argsort(-probs, axis=1)[:, :k]
    return [[Prediction(labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


class _CallableModule(types.ModuleType):
    """``vestis.classify(images, labels)`` runs :func:`vestis.tag.classify`; the module's names stay importable."""

    def __call__(self, images: Sequence[Any], labels: Any, **kwargs: Any) -> Any:
        from vestis.tag import classify

        return classify(images, labels, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
