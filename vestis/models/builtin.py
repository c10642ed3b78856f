"""Models built in code rather than read from disk."""

from __future__ import annotations

from typing import Any

import torch

from vestis.models.preprocess import ImageConfig
from vestis.models.text import CLIP_CONTEXT_LENGTH, TextTokenizer, clip_tokenizer_from_bpe
from vestis.models.torch_backend import TorchEncoder

TINY_IMAGE_SIZE = 64


def tiny_clip_config(
    *, image_size: int = TINY_IMAGE_SIZE, act: str = "quick_gelu", width: int = 64, dim: int = 32
) -> Any:
    """A CLIP architecture small enough for tests and demos (two layers per tower)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        projection_dim=dim,
        text_config=dict(
            vocab_size=49408,
            hidden_size=width,
            intermediate_size=width * 4,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=CLIP_CONTEXT_LENGTH,
            hidden_act=act,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=width * 4,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=16,
            hidden_act=act,
        ),
    )


def tiny_random_encoder(
    *, seed: int = 0, batch_size: int = 32, threads: int | None = None, precision: str = "fp32"
) -> TorchEncoder:
    """``vestis-tiny-random``: seeded random weights, CLIP's real tokenizer. Not a useful model."""
    from transformers import CLIPModel

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPModel(tiny_clip_config())
    finally:
        torch.random.set_rng_state(generator_state)
    return TorchEncoder(
        model,
        name="vestis-tiny-random",
        tokenizer=TextTokenizer(clip_tokenizer_from_bpe(), CLIP_CONTEXT_LENGTH),
        image_config=ImageConfig(resize=TINY_IMAGE_SIZE, crop_hw=(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)),
        batch_size=batch_size,
        threads=threads,
        precision=precision,
    )
