"""Torch backend: transformers ``CLIPModel`` and ``ChineseCLIPModel``.

FashionCLIP is published as a ``CLIPModel`` directory and Chinese-CLIP as a
``ChineseCLIPModel`` one; open_clip checkpoints are converted into a
``CLIPModel`` (see :mod:`vestis.models.open_clip_format`).  All of them run
through :class:`TorchEncoder`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vestis.errors import InputError
from vestis.models.base import Encoder
from vestis.models.preprocess import ImageConfig
from vestis.models.runtime import bf16_supported
from vestis.models.text import TextTokenizer


def _features(out: Any) -> torch.Tensor:
    """transformers 5 returns an output object from ``get_*_features``; 4.x a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected output from get_*_features: {type(out).__name__}")
    return pooled


def _class_token_vit(model: torch.nn.Module) -> bool:
    """Whether ``model`` has the CLIP / Chinese-CLIP vision layout :func:`image_features` shortcuts."""
    vision = getattr(model, "vision_model", None)
    layers = getattr(getattr(vision, "encoder", None), "layers", None)
    if vision is None or not layers or not hasattr(model, "visual_projection"):
        return False
    last = layers[-1]
    attn = getattr(last, "self_attn", None)
    return (
        all(hasattr(vision, a) for a in ("embeddings", "pre_layrnorm", "post_layernorm"))
        and all(hasattr(last, a) for a in ("layer_norm1", "layer_norm2", "mlp"))
        and all(hasattr(attn, a) for a in ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads", "head_dim", "scale"))
    )


def image_features(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """``model.get_image_features(pixel_values)``, computing only what the embedding uses.

    CLIP's image embedding is the class token after the last layer.  Every layer
    but the last needs all tokens; the last needs every token's keys and values
    but the query, attention output, residual and MLP of the class token only.
    Computing just those is the same function (to float rounding, tested) with
    ~6% fewer FLOPs for a 12-layer ViT.  Models of another layout take the
    ordinary path.
    """
    if not _class_token_vit(model):
        return _features(model.get_image_features(pixel_values=pixel_values))
    vision = model.vision_model
    h = vision.pre_layrnorm(vision.embeddings(pixel_values))
    *layers, last = vision.encoder.layers
    for layer in layers:
        h = layer(h, None)
    attn = last.self_attn
    b, t, d = h.shape
    y = last.layer_norm1(h)
    q = attn.q_proj(y[:, :1]).view(b, 1, attn.num_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(y).view(b, t, attn.num_heads, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(y).view(b, t, attn.num_heads, attn.head_dim).transpose(1, 2)
    weights = torch.softmax((q @ k.transpose(-1, -2)) * attn.scale, dim=-1, dtype=torch.float32).to(q.dtype)
    cls = h[:, 0] + attn.out_proj((weights @ v).reshape(b, d))
    cls = cls + last.mlp(last.layer_norm2(cls))
    return model.visual_projection(vision.post_layernorm(cls))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the previous setting after."""
    if not n:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype a precision runs in; bf16 only where the CPU has bf16 instructions."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if not bf16_supported():
            raise InputError("precision bf16 needs a CPU with AVX512-BF16 or AMX (this one has neither); use fp32")
        return torch.bfloat16
    raise InputError(f"the torch backend runs fp32 or bf16, not {precision!r} (int8 runs on onnxruntime)")


def torch_runtime(threads: int | None) -> contextlib.ExitStack:
    """Inference mode with ``threads`` intra-op threads, for every torch encoder."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch_threads(threads))
    stack.enter_context(torch.inference_mode())
    return stack


class TorchEncoder(Encoder):
    """A transformers two-tower model (anything with ``get_image_features``/``get_text_features``)."""

    overlap_decode = False  # OpenMP: decode between batches, with every core (see Encoder)
    #: the open_clip config (``model_cfg``, ``preprocess_cfg``) when the weights came from an
    #: open_clip checkpoint, so that a fine-tuned copy can be written back in that format
    open_clip_config: dict | None = None

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        name: str,
        tokenizer: TextTokenizer,
        image_config: ImageConfig,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
        uses_token_type_ids: bool = False,
        precision: str = "fp32",
    ) -> None:
        self.dtype = torch_dtype(precision)
        self.precision = precision
        # Taken in fp32, before any conversion.
        self.logit_scale = float(model.logit_scale.detach().float().exp().clamp(max=100).item())
        # bf16: weights stored in bf16 (half the memory traffic, no cast per call); oneDNN runs
        # the products with AVX512-BF16 and accumulates in fp32.
        self.model = model.eval().to(device=device, dtype=self.dtype)
        self.name = name
        self.tokenizer = tokenizer
        self.image_config = image_config
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.threads = threads
        self._token_type_ids = uses_token_type_ids
        cfg = model.config
        self.dim = int(cfg.projection_dim)
        self.runtime = f"torch {precision} ({type(model).__name__})"

    def _runtime_context(self) -> contextlib.AbstractContextManager[Any]:
        return torch_runtime(self.threads)

    def _forward_images(self, pixel_values: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixel_values).to(self.device, self.dtype)
        return image_features(self.model, x).float().cpu().numpy()

    def _forward_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        kwargs = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(attention_mask).to(self.device),
        }
        if self._token_type_ids:
            kwargs["token_type_ids"] = torch.zeros_like(kwargs["input_ids"])
        return _features(self.model.get_text_features(**kwargs)).float().cpu().numpy()
