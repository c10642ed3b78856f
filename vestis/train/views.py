"""What the image tower sees in a step: augmented views, made on the fly or cached through a frozen trunk.

:class:`ViewMaker` turns item indices into a normalised batch (composite onto a
scene where the recipe asks for it, then the geometric and photometric
augmentations) and says which items lost their colour.  When the first blocks of
a pretrained image tower are frozen, :func:`cached_trunk_features` renders a fixed
number of such views per item once, runs them through the frozen blocks and keeps
the result (float16 on disk, by content key), so an epoch costs only the trainable
blocks.  A view's features are the frozen blocks' output for exactly the pixels
the uncached path would have made with the same generator.  With the whole image tower
locked (Chinese-CLIP's stage 1) the same cache holds the views' embeddings, and an epoch
costs only the text side.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vestis.progress import progress_bar
from vestis.train.augment import AugmentConfig, augment
from vestis.train.composite import composite


@dataclass
class ViewMaker:
    images: torch.Tensor  # uint8 (N, S, S, 3)
    cfg: AugmentConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]
    alpha: torch.Tensor | None = None  # uint8 (N, S, S): the product's outline, for compositing
    composable: torch.Tensor | None = None  # bool (N,): catalog-style items that may be pasted onto scenes
    bank: torch.Tensor | None = None  # uint8 (M, S, S, 3) scenes

    def __call__(self, idx: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float (B, 3, S, S) and a bool (B,) mask of items whose colour is gone."""
        batch = self.images[idx]
        if self.cfg.composite > 0 and self.alpha is not None:
            which = (torch.rand(len(idx), generator=gen) < self.cfg.composite) & self.composable[idx]
            pasted = composite(batch, self.alpha[idx], self.bank, gen, self.cfg.composite_scale,
                               self.cfg.composite_synthetic)  # fmt: skip
            batch = torch.where(which.view(-1, 1, 1, 1), pasted, batch)
        return augment(batch, self.cfg, gen, self.mean, self.std)


def view_generator(seed: int, view: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + 500 + view)


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _save_atomic(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:  # a file object: np.save would append ".npy" to a name
        np.save(f, array)
    os.replace(tmp, path)


@torch.inference_mode()
def render_view(trunk, views: ViewMaker, n: int, view: int, seed: int, batch_size: int, dtype, bf16: bool,
                memory_format=torch.contiguous_format, quiet: bool = True):  # fmt: skip
    """View ``view`` of every item through ``trunk``: features (n, ...) as ``dtype``, colourless (n,) bool."""
    gen = view_generator(seed, view)
    feats, lost = None, np.zeros(n, dtype=bool)
    with progress_bar(n, f"caching view {view + 1}", quiet=quiet) as advance:
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            x, colourless = views(idx, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                f = trunk(x.contiguous(memory_format=memory_format)).float()
            if feats is None:
                feats = np.empty((n, *f.shape[1:]), dtype=dtype)
            feats[idx] = f.numpy().astype(dtype)
            lost[idx] = colourless.numpy()
            advance(len(idx))
    return feats, lost


def array_digest(array: np.ndarray) -> str:
    """A digest of an array's shape, type and bytes (the decoded training images: what a cache depends on)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.shape}:{a.dtype}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:32]


def cached_array(path: Path, compute) -> np.ndarray:
    """The array saved at ``path``, or ``compute()`` saved there first."""
    if path.is_file():
        return np.load(path)
    array = compute()
    _save_atomic(array, path)
    return array


def cached_trunk_features(trunk, views: ViewMaker, n: int, n_views: int, seed: int, key: str, cache_dir: Path,
                          batch_size: int = 256, dtype=np.float16, bf16: bool = True,
                          memory_format=torch.contiguous_format, quiet: bool = False,
                          prefix: str = "trunk"):  # fmt: skip
    """(features (V, n, ...), colourless (V, n)) for ``n_views`` views of each item, each view cached on disk.

    ``key`` names what the views depend on (data, augmentation, seed, trunk); a run
    that stops while caching resumes at the first view not yet written. ``trunk`` may be
    a whole locked image tower (``prefix`` "images"): then the features are the embeddings.
    """
    feats, lost = [], []
    for v in range(n_views):
        fpath, lpath = cache_dir / f"{prefix}-{key}-v{v}.npy", cache_dir / f"{prefix}-{key}-v{v}-colourless.npy"
        if fpath.is_file() and lpath.is_file():
            f, c = np.load(fpath, mmap_mode="r"), np.load(lpath)
        else:
            f, c = render_view(trunk, views, n, v, seed, batch_size, dtype, bf16, memory_format, quiet)
            _save_atomic(c, lpath)
            _save_atomic(f, fpath)
        feats.append(np.asarray(f))
        lost.append(c)
    return np.stack(feats), np.stack(lost)
