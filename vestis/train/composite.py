"""Shoppers' photos simulated from catalog photos: a product pasted onto a real scene.

A catalog photo is a product on white (or, for KAGL's model shots, a grey
backdrop).  The backdrop is found as the near-white or backdrop-coloured pixels
connected to the image border (so a white shirt keeps its white).  The product
is scaled and placed at random, and pasted onto a crop of a street photo from
Clothing Co-Parsing where no person is (the mask says which pixels are
background), onto a side strip of a photo without a mask, or onto a synthetic
backdrop (a colour with a gradient and noise).  The caption does not change:
the product is still what it was.

All of it works on uint8 batches at the model's input size, in torch, so a step
composes a whole batch with two ``grid_sample`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from vestis.data.ccp import read_photos
from vestis.progress import progress_bar

#: A pixel whose channels are all at least this is "white" (JPEG noise included).
WHITE = 238


def _backdrop_colour(image: np.ndarray) -> np.ndarray | None:
    """The studio backdrop's colour when it is not white (KAGL's model shots are on grey), else None."""
    ring = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3),
                           image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)])  # fmt: skip
    coloured = ring[ring.min(axis=1) < WHITE]
    if len(coloured) < 0.2 * len(ring):
        return None
    return np.median(coloured, axis=0)


def product_alpha(image: np.ndarray, tolerance: int = 22) -> np.ndarray:
    """uint8 (S, S, 3) catalog photo -> uint8 (S, S) alpha: 0 for the backdrop reaching the border.

    The backdrop is white (the letterbox's padding too) and, where the photo's edge is
    mostly one other colour, pixels within ``tolerance`` of that colour.
    """
    backdrop = image.min(axis=2) >= WHITE
    colour = _backdrop_colour(image)
    if colour is not None:
        backdrop |= np.abs(image.astype(np.int16) - colour.astype(np.int16)).max(axis=2) <= tolerance
    labels, _ = ndimage.label(backdrop)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    return np.where(background, 0, 255).astype(np.uint8)


def product_alphas(images: np.ndarray, quiet: bool = False) -> np.ndarray:
    out = np.empty(images.shape[:3], dtype=np.uint8)
    with progress_bar(len(images), "finding product outlines", quiet=quiet) as advance:
        for i, img in enumerate(images):
            out[i] = product_alpha(img)
            advance(1)
    return out


def _windows(rng: np.random.Generator, w: int, h: int, n: int) -> list[tuple[int, int, int, int]]:
    out = []
    for _ in range(n):
        side = int(min(w, h) * rng.uniform(0.3, 0.7))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append((x, y, x + side, y + side))
    return out


def background_bank(
    path: str, size: int, *, per_photo: int = 3, min_background: float = 0.9, seed: int = 0, quiet: bool = False
) -> np.ndarray:
    """uint8 (M, size, size, 3) scenes without a person from the training (not held-out) CCP photos.

    A pixel-annotated photo gives up to ``per_photo`` square windows whose pixels are at
    least ``min_background`` background by its mask; a photo with tags only gives its
    outer side strips (people stand in the middle of these photos).
    """
    rng = np.random.default_rng(seed)
    photos = list(read_photos(path, "train"))
    crops = []
    with progress_bar(len(photos), "cutting background scenes", quiet=quiet) as advance:
        for photo in photos:
            advance(1)
            w, h = photo.image.size
            if photo.mask is not None:
                good = [b for b in _windows(rng, w, h, 12)
                        if (photo.mask[b[1]:b[3], b[0]:b[2]] == 0).mean() >= min_background]  # fmt: skip
                boxes = good[:per_photo]
            else:
                side = w // 5
                boxes = [(0, 0, side, min(h, 2 * side)), (w - side, h - min(h, 2 * side), w, h)]
            for box in boxes:
                crops.append(np.asarray(photo.image.crop(box).resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def synthetic_backgrounds(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """float (n, 3, size, size) in [0, 1]: a random colour, a linear gradient and pixel noise."""
    base = torch.rand(n, 3, 1, 1, generator=gen)
    ramp = torch.linspace(-1, 1, size)
    angle = torch.rand(n, generator=gen) * 2 * np.pi
    grad = torch.cos(angle).view(n, 1, 1) * ramp.view(1, 1, size) + torch.sin(angle).view(n, 1, 1) * ramp.view(
        1, size, 1
    )
    strength = 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    noise = 0.1 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(n, 3, size, size, generator=gen)
    return (base + strength * grad.unsqueeze(1) + noise).clamp(0, 1)


def composite(
    images: torch.Tensor,
    alpha: torch.Tensor,
    bank: torch.Tensor,
    gen: torch.Generator,
    scale: Sequence[float] = (0.4, 0.95),
    synthetic: float = 0.3,
) -> torch.Tensor:
    """Paste each product (uint8 (B, S, S, 3), alpha (B, S, S)) onto a scene; returns uint8 (B, S, S, 3).

    The product's side becomes ``scale`` of the scene's, at a random place; the scene is a
    random, randomly flipped entry of ``bank`` or, with probability ``synthetic`` (or when
    the bank is empty), a synthetic backdrop.
    """
    b, s = images.shape[0], images.shape[1]
    x = images.permute(0, 3, 1, 2).float().div(255)
    a = alpha.unsqueeze(1).float().div(255)
    lo, hi = scale
    side = lo + (hi - lo) * torch.rand(b, generator=gen)
    centre = (1 - side).unsqueeze(1) * (2 * torch.rand(b, 2, generator=gen) - 1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / side
    theta[:, :, 2] = -centre / side.unsqueeze(1)
    grid = F.affine_grid(theta, [b, 3, s, s], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    a = F.grid_sample(a, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    a = F.avg_pool2d(a, 3, 1, 1)  # a soft edge, as a real photo's
    scene = synthetic_backgrounds(b, s, gen)
    if len(bank):
        real = torch.rand(b, generator=gen) >= synthetic
        pick = torch.randint(len(bank), (b,), generator=gen)
        photos = bank[pick].permute(0, 3, 1, 2).float().div(255)
        flip = torch.rand(b, generator=gen) < 0.5
        photos[flip] = photos[flip].flip(-1)
        scene = torch.where(real.view(b, 1, 1, 1), photos, scene)
    out = a * x + (1 - a) * scene
    return out.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
