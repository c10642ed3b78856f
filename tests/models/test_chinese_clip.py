"""Chinese-CLIP's format: a transformers ChineseCLIPModel directory with a BERT tokenizer."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertTokenizer, ChineseCLIPConfig, ChineseCLIPImageProcessorPil, ChineseCLIPModel

import vestis
from tests.conftest import features, normalized, perturb_
from vestis.models.preprocess import preprocess_images

CHINESE_TEXTS = ["红色连衣裙", "男士黑色皮鞋", "夏季白色T恤", "一件适合海滩婚礼的衣服", "牛仔裤 " * 40]

# Chinese-CLIP's preprocessor: a square resize to 224 x 224, no centre crop.
PREPROCESSOR = {
    "do_center_crop": False,
    "do_normalize": True,
    "do_resize": True,
    "do_convert_rgb": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": {"height": 224, "width": 224},
    "image_processor_type": "ChineseCLIPImageProcessor",
}


def cn_clip_vocab() -> Path:
    """Chinese-CLIP's real vocabulary (21,128 tokens), shipped inside the cn-clip package."""
    spec = importlib.util.find_spec("cn_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("cn-clip is not installed (requirements/test.txt installs it for its vocab.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "clip" / "vocab.txt"


def write_tiny_chinese_clip(
    directory: Path, *, image_size: int = 224, patch_size: int = 32, max_positions: int = 512, seed: int = 3
) -> Path:
    """A random-weight ChineseCLIPModel in Chinese-CLIP's format (BERT tokenizer with its real vocabulary)."""
    vocab = cn_clip_vocab()
    config = ChineseCLIPConfig(
        projection_dim=32,
        text_config=dict(
            vocab_size=sum(1 for _ in vocab.open(encoding="utf-8")),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=max_positions,
        ),
        vision_config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=patch_size,
        ),
    )
    torch.manual_seed(seed)
    model = ChineseCLIPModel(config).eval()
    perturb_(model, seed)
    model.save_pretrained(str(directory))
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(str(directory))
    preprocessor = {**PREPROCESSOR, "size": {"height": image_size, "width": image_size}}
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return directory


@pytest.fixture(scope="module")
def chinese_clip_dir(tmp_path_factory):
    return write_tiny_chinese_clip(tmp_path_factory.mktemp("chinese-clip"))


def test_chinese_clip_matches_transformers(chinese_clip_dir, sample_images, sample_texts, record_parity):
    texts = CHINESE_TEXTS[:-1] + sample_texts[:6]
    model = ChineseCLIPModel.from_pretrained(str(chinese_clip_dir)).eval()
    processor = ChineseCLIPImageProcessorPil.from_pretrained(str(chinese_clip_dir))
    tokenizer = BertTokenizer.from_pretrained(str(chinese_clip_dir))
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in sample_images]
    pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img_ref = normalized(features(model.get_image_features(pixel_values=pixels)))
        txt_ref = normalized(features(model.get_text_features(**tokens)))

    enc = vestis.load_encoder(chinese_clip_dir)
    assert enc.context_length == 52  # Chinese-CLIP's training context, not BERT's 512
    fmt = "transformers ChineseCLIPModel"
    ours = preprocess_images(sample_images, enc.image_config)
    record_parity(fmt, "pixels vs ChineseCLIPImageProcessorPil", ours, pixels.numpy(), 1e-5)
    record_parity(fmt, "image embeddings", enc.encode_images(sample_images), img_ref, 1e-4)
    record_parity(fmt, "text embeddings", enc.encode_texts(texts), txt_ref, 1e-4)


def test_long_chinese_text_is_truncated_not_fatal(chinese_clip_dir):
    enc = vestis.load_encoder(chinese_clip_dir)
    ids, _ = enc.tokenizer([CHINESE_TEXTS[-1]])
    assert ids.shape[1] == 52
    out = enc.encode_texts([CHINESE_TEXTS[-1]])
    assert out.shape == (1, 32) and np.isfinite(out).all()
