"""FashionCLIP's format: a transformers CLIPModel directory, compared with transformers' own forward."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

import vestis
from tests.conftest import features, normalized, perturb_
from vestis.models.preprocess import CLIP_PREPROCESSOR_CONFIG
from vestis.models.text import clip_tokenizer_from_bpe

# FashionCLIP's preprocessor_config.json, in its (old) spelling.
FASHION_CLIP_PREPROCESSOR = CLIP_PREPROCESSOR_CONFIG


def tiny_fashion_clip_config() -> CLIPConfig:
    """FashionCLIP's architecture family (ViT-B/32, QuickGELU, legacy eos_token_id=2), shrunk."""
    return CLIPConfig(
        projection_dim=32,
        text_config=dict(
            vocab_size=49408,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=0,
            eos_token_id=2,
        ),
        vision_config=dict(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            patch_size=32,
            hidden_act="quick_gelu",
        ),
    )


def write_hf_clip(directory, *, weights: str = "safetensors", seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    model = CLIPModel(tiny_fashion_clip_config()).eval()
    perturb_(model, seed)
    model.save_pretrained(str(directory))
    if weights == "bin":  # FashionCLIP also ships pytorch_model.bin
        (directory / "model.safetensors").unlink()
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    clip_tokenizer_from_bpe().save_pretrained(str(directory))
    (directory / "preprocessor_config.json").write_text(json.dumps(FASHION_CLIP_PREPROCESSOR))
    return model


@pytest.fixture(scope="module", params=["safetensors", "bin"])
def hf_clip_dir(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"fashion-clip-{request.param}")
    write_hf_clip(directory, weights=request.param)
    return directory


def reference_embeddings(directory, images, texts):
    """transformers' own processor, tokenizer and forward pass, read from the directory."""
    model = CLIPModel.from_pretrained(str(directory)).eval()
    processor = CLIPImageProcessorPil.from_pretrained(str(directory))
    tokenizer = CLIPTokenizer.from_pretrained(str(directory))
    import io

    from PIL import Image

    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        img = normalized(features(model.get_image_features(pixel_values=pixels)))
        txt = normalized(features(model.get_text_features(**tokens)))
    return pixels.numpy(), img, txt


def test_hf_clip_matches_transformers(hf_clip_dir, sample_images, sample_texts, record_parity):
    pixels_ref, img_ref, txt_ref = reference_embeddings(hf_clip_dir, sample_images, sample_texts)
    enc = vestis.load_encoder(hf_clip_dir)
    assert enc.dim == 32 and enc.context_length == 77
    assert enc.logit_scale == pytest.approx(
        float(np.exp(CLIPModel.from_pretrained(str(hf_clip_dir)).logit_scale.item()))
    )
    from vestis.models.preprocess import preprocess_images

    fmt = f"transformers CLIPModel ({hf_clip_dir.name.split('-')[-1][:-1]})"
    record_parity(
        fmt, "pixels vs CLIPImageProcessorPil", preprocess_images(sample_images, enc.image_config), pixels_ref, 1e-5
    )
    img = enc.encode_images(sample_images)
    txt = enc.encode_texts(sample_texts)
    assert img.dtype == np.float32 and img.shape == (len(sample_images), 32)
    record_parity(fmt, "image embeddings", img, img_ref, 1e-4)
    record_parity(fmt, "text embeddings", txt, txt_ref, 1e-4)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)


def test_batch_size_and_order_do_not_change_results(hf_clip_dir, sample_texts, sample_images):
    enc = vestis.load_encoder(hf_clip_dir, batch_size=3)
    whole = vestis.load_encoder(hf_clip_dir, batch_size=64)
    assert np.abs(enc.encode_texts(sample_texts) - whole.encode_texts(sample_texts)).max() < 1e-5
    assert np.abs(enc.encode_images(sample_images[:7]) - whole.encode_images(sample_images[:7])).max() < 1e-5
    single = np.stack([whole.encode_texts([t])[0] for t in sample_texts[:5]])
    assert np.abs(single - whole.encode_texts(sample_texts[:5])).max() < 1e-5


def test_images_as_paths_pil_and_bytes_agree(hf_clip_dir, sample_images, image_files):
    from PIL import Image

    enc = vestis.load_encoder(hf_clip_dir)
    by_bytes = enc.encode_images(sample_images[:4])
    by_path = enc.encode_images(image_files[:4])
    by_pil = enc.encode_images([Image.open(p) for p in image_files[:4]])
    assert np.abs(by_bytes - by_path).max() < 1e-6
    assert np.abs(by_bytes - by_pil).max() < 1e-6


def test_threads_setting_is_scoped(hf_clip_dir, sample_texts):
    before = torch.get_num_threads()
    enc = vestis.load_encoder(hf_clip_dir, threads=1)
    enc.encode_texts(sample_texts[:2])
    assert torch.get_num_threads() == before
