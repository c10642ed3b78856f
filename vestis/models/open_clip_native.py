"""open_clip itself as a backend, for checkpoints the CLIPModel conversion does not cover."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vestis.errors import ModelFormatError
from vestis.models.base import Encoder
from vestis.models.open_clip_format import import_open_clip
from vestis.models.preprocess import ImageConfig
from vestis.models.torch_backend import torch_runtime


class _OpenClipTokenizer:
    """Adapts open_clip's tokenizer (fixed-length id tensors) to the TextTokenizer calls."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(getattr(tokenizer, "context_length", 77))

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tokenizer(texts).numpy().astype(np.int64)
        return ids, (ids != 0).astype(np.int64)

    def lengths(self, texts: list[str]) -> list[int]:
        return [int(m.sum()) for m in self(texts)[1]]

    def batches(self, texts: list[str], batch_size: int):
        """Fixed-length ids: batches in order (padding costs the same everywhere)."""
        for start in range(0, len(texts), batch_size):
            ids, mask = self(texts[start : start + batch_size])
            yield np.arange(start, start + len(ids)), ids, mask


class OpenClipEncoder(Encoder):
    overlap_decode = False  # OpenMP: decode between batches, with every core (see Encoder)

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        image_config: ImageConfig,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
        why: str | None = None,
    ) -> None:
        open_clip = import_open_clip()
        if open_clip is None:
            detail = f" ({why})" if why else ""
            raise ModelFormatError(
                f"{directory}: this open_clip checkpoint needs the open_clip package{detail}; "
                "install open_clip_torch (with torch pinned) to load it"
            )
        ref = f"local-dir:{Path(directory).resolve()}"
        try:
            model, _, _ = open_clip.create_model_and_transforms(ref, device=device)
            tokenizer = open_clip.get_tokenizer(ref)
        except Exception as exc:
            raise ModelFormatError(f"{directory}: open_clip cannot load it ({type(exc).__name__}: {exc})") from None
        self.model = model.eval()
        self.device = torch.device(device)
        self.name = name
        self.image_config = image_config
        self.tokenizer = _OpenClipTokenizer(tokenizer)  # type: ignore[assignment]
        self.batch_size = batch_size
        self.threads = threads
        with torch.inference_mode():
            probe = model.encode_text(tokenizer(["a"]).to(self.device))
        self.dim = int(probe.shape[-1])
        self.logit_scale = float(model.logit_scale.detach().exp().clamp(max=100).item())
        self.runtime = "torch fp32 (open_clip)"

    def _runtime_context(self) -> contextlib.AbstractContextManager[Any]:
        return torch_runtime(self.threads)

    def _forward_images(self, pixel_values: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixel_values).to(self.device)
        return self.model.encode_image(x).float().cpu().numpy()

    def _forward_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.model.encode_text(torch.from_numpy(input_ids).to(self.device)).float().cpu().numpy()
