"""Figures published by the models' authors, quoted for comparison -- never measured here.

Each entry names its source. Keys are the suite's ``published`` task ids.
"""

from __future__ import annotations

MARQO = "Marqo-FashionCLIP LEADERBOARD.md (marqo-ai/marqo-FashionCLIP, updated 2024-08-09)"
FASHIONCLIP = "FashionCLIP README / model card (patrickjohncyh/fashion-clip), weighted macro F1"


def _marqo(rows: dict[str, tuple[float, float, float, float]], recall: bool) -> dict[str, dict[str, float]]:
    names = ("avg_recall", "recall@1", "recall@10", "mrr@10") if recall else (
        "avg_precision", "precision@1", "precision@10", "mrr@10"
    )  # fmt: skip
    return {model: dict(zip(names, values)) for model, values in rows.items()}


PUBLISHED: dict[str, dict] = {
    "kagl/text-to-image": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.263, 0.122, 0.404, 0.217),
                "Marqo-FashionCLIP": (0.303, 0.159, 0.446, 0.265),
                "Marqo-FashionSigLIP": (0.334, 0.179, 0.489, 0.293),
                "OpenFashionCLIP": (0.208, 0.091, 0.325, 0.170),
                "ViT-B-16 laion2b_s34b_b88k": (0.295, 0.155, 0.435, 0.259),
            },
            recall=True,
        ),
    },
    "kagl/category-to-product": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.700, 0.714, 0.686, 0.714),
                "Marqo-FashionCLIP": (0.643, 0.714, 0.571, 0.714),
                "Marqo-FashionSigLIP": (0.629, 0.571, 0.686, 0.643),
                "OpenFashionCLIP": (0.493, 0.429, 0.557, 0.500),
                "ViT-B-16 laion2b_s34b_b88k": (0.550, 0.571, 0.529, 0.619),
            },
            recall=False,
        ),
    },
    "kagl/sub-category-to-product": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.586, 0.600, 0.571, 0.627),
                "Marqo-FashionCLIP": (0.640, 0.667, 0.613, 0.691),
                "Marqo-FashionSigLIP": (0.699, 0.711, 0.687, 0.756),
                "OpenFashionCLIP": (0.479, 0.467, 0.491, 0.566),
                "ViT-B-16 laion2b_s34b_b88k": (0.598, 0.622, 0.573, 0.664),
            },
            recall=False,
        ),
    },
    "kagl/fine-category-to-product": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.605, 0.634, 0.577, 0.694),
                "Marqo-FashionCLIP": (0.669, 0.725, 0.613, 0.772),
                "Marqo-FashionSigLIP": (0.667, 0.704, 0.629, 0.763),
                "OpenFashionCLIP": (0.515, 0.542, 0.489, 0.607),
                "ViT-B-16 laion2b_s34b_b88k": (0.628, 0.683, 0.573, 0.748),
            },
            recall=False,
        ),
    },
    "kagl/color-to-product": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.428, 0.413, 0.443, 0.518),
                "Marqo-FashionCLIP": (0.498, 0.500, 0.496, 0.614),
                "Marqo-FashionSigLIP": (0.545, 0.587, 0.502, 0.664),
                "OpenFashionCLIP": (0.472, 0.478, 0.465, 0.587),
                "ViT-B-16 laion2b_s34b_b88k": (0.487, 0.500, 0.474, 0.605),
            },
            recall=False,
        ),
    },
    "kagl/season-to-product": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.362, 0.500, 0.225, 0.550),
                "Marqo-FashionCLIP": (0.338, 0.250, 0.425, 0.542),
                "Marqo-FashionSigLIP": (0.425, 0.500, 0.350, 0.500),
                "OpenFashionCLIP": (0.400, 0.500, 0.300, 0.583),
                "ViT-B-16 laion2b_s34b_b88k": (0.300, 0.250, 0.350, 0.490),
            },
            recall=False,
        ),
    },
    "kagl/usage-to-product": {
        "source": MARQO,
        "models": _marqo(
            {
                "FashionCLIP 2.0": (0.244, 0.250, 0.237, 0.275),
                "Marqo-FashionCLIP": (0.256, 0.250, 0.263, 0.354),
                "Marqo-FashionSigLIP": (0.388, 0.375, 0.400, 0.438),
                "OpenFashionCLIP": (0.188, 0.125, 0.250, 0.225),
                "ViT-B-16 laion2b_s34b_b88k": (0.263, 0.250, 0.275, 0.292),
            },
            recall=False,
        ),
    },
    "fashion-mnist": {
        "source": FASHIONCLIP,
        "models": {
            "OpenAI CLIP ViT-B/32": {"weighted_f1": 0.66},
            "FashionCLIP": {"weighted_f1": 0.74},
            "LAION CLIP ViT-B/32": {"weighted_f1": 0.78},
            "FashionCLIP 2.0": {"weighted_f1": 0.83},
        },
    },
    "kagl/classify": {
        "source": FASHIONCLIP + "; FashionCLIP's own KAGL label set, which may differ from a single KAGL column",
        "models": {
            "OpenAI CLIP ViT-B/32": {"weighted_f1": 0.63},
            "FashionCLIP": {"weighted_f1": 0.67},
            "LAION CLIP ViT-B/32": {"weighted_f1": 0.71},
            "FashionCLIP 2.0": {"weighted_f1": 0.73},
        },
    },
}
