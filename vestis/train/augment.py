"""Batched augmentations for the deployment gap, on uint8 images already at model size.

Catalog photos are 60 x 80 on white; shoppers send phone photos, grayscale and
low-resolution images, and Fashion-MNIST is 28 x 28 grayscale on black.
Geometry (random resized crop, flip), mild brightness/contrast jitter (hue is
never shifted, so colour labels stay true), down-and-up sampling, grayscale
and inversion.  Grayscale and inversion remove colour, so they are reported
per item and the loss then uses captions that name no colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.6, 1.0)
    flip: float = 0.5
    jitter: float = 0.5
    gray: float = 0.25
    invert: float = 0.1
    lowres: float = 0.25
    lowres_sizes: tuple[int, int] = (14, 32)
    #: probability that a catalog product is pasted onto a scene (vestis.train.composite)
    composite: float = 0.0
    composite_scale: tuple[float, float] = (0.4, 0.95)
    #: of those, the share pasted onto a synthetic backdrop rather than a street-photo scene
    composite_synthetic: float = 0.3


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> normalised with the model's per-channel mean and std."""
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def augment(
    images: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, S, S, 3) -> normalised float (B, 3, S, S), and a (B,) mask of colourless items."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    b, _, s, _ = x.shape

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen)

    lo, hi = cfg.crop_scale
    side = (lo + (hi - lo) * rand(b)).sqrt()
    shift = (1 - side).unsqueeze(1) * (2 * rand(b, 2) - 1)
    flip = torch.where(rand(b) < cfg.flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side * flip, side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    low = rand(b) < cfg.lowres
    if low.any():
        r = int(cfg.lowres_sizes[0] + (cfg.lowres_sizes[1] - cfg.lowres_sizes[0]) * rand(1).item())
        small = F.interpolate(x[low], size=(r, r), mode="area")
        x[low] = F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False)

    jit = (rand(b) < cfg.jitter).float().view(b, 1, 1, 1)
    brightness = 1 + jit * (0.4 * rand(b, 1, 1, 1) - 0.2)
    contrast = 1 + jit * (0.4 * rand(b, 1, 1, 1) - 0.2)
    centre = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - centre) * contrast + centre) * brightness

    invert = rand(b) < cfg.invert
    gray = (rand(b) < cfg.gray) | invert
    if gray.any():
        lum = (0.299 * x[gray, 0] + 0.587 * x[gray, 1] + 0.114 * x[gray, 2]).unsqueeze(1)
        x[gray] = lum.expand(-1, 3, -1, -1)
    x = x.clamp_(0, 1)
    x[invert] = 1 - x[invert]
    return normalize(x, mean, std), gray
