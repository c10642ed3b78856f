"""Marqo-FashionCLIP's format: open_clip checkpoints, compared with open_clip's own forward pass.

open_clip runs in the side environment ``.venv-ref`` (see tests/reference/open_clip_ref.py);
it writes the checkpoints and their reference embeddings, vestis loads the same
files here without open_clip.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

import vestis
from tests.conftest import REF_PYTHON, REPO, need_reference_env
from vestis.errors import ModelFormatError
from vestis.models import open_clip_format
from vestis.models.preprocess import preprocess_images


def run_open_clip_reference(spec: dict, spec_file) -> None:
    """Run tests/reference/open_clip_ref.py in the reference environment on ``spec``."""
    need_reference_env()
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [str(REF_PYTHON), str(REPO / "tests" / "reference" / "open_clip_ref.py"), str(spec_file)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def open_clip_reference(tmp_path_factory, image_files, sample_texts, all_titles):
    need_reference_env()
    out = tmp_path_factory.mktemp("open_clip")
    spec = {"out": str(out), "images": image_files, "texts": sample_texts, "titles": all_titles}
    run_open_clip_reference(spec, out / "spec.json")
    return out


@pytest.mark.parametrize("variant", ["gelu", "quickgelu"])
def test_open_clip_checkpoint_matches_open_clip(open_clip_reference, variant, image_files, sample_texts, record_parity):
    directory = open_clip_reference / variant
    ref = np.load(directory / "reference.npz")
    enc = vestis.load_encoder(directory)
    assert "converted" in enc.runtime  # the default path needs no open_clip
    pixels = preprocess_images(image_files, enc.image_config)
    fmt = f"open_clip -> CLIPModel ({variant})"
    record_parity(fmt, "pixels vs open_clip transform", pixels, ref["pixels"], 1e-5)
    record_parity(fmt, "image embeddings", enc.encode_images(image_files), ref["image_emb"], 1e-4)
    record_parity(fmt, "text embeddings", enc.encode_texts(sample_texts), ref["text_emb"], 1e-4)


@pytest.mark.parametrize("variant", ["gelu", "quickgelu"])
def test_open_clip_native_backend_matches(open_clip_reference, variant, record_parity):
    """vestis' open_clip runtime (run inside the reference env) agrees with open_clip directly."""
    ref = np.load(open_clip_reference / variant / "reference.npz")
    fmt = f"open_clip runtime ({variant})"
    record_parity(fmt, "image embeddings", ref["native_image_emb"], ref["image_emb"], 1e-4)
    record_parity(fmt, "text embeddings", ref["native_text_emb"], ref["text_emb"], 1e-4)


def test_swapping_gelu_for_quickgelu_breaks_parity(open_clip_reference, tmp_path, sample_texts, image_files):
    """The parity check is sensitive to the activation: a wrong one is caught."""
    wrong = tmp_path / "wrong-act"
    shutil.copytree(open_clip_reference / "quickgelu", wrong)
    cfg = json.loads((wrong / "open_clip_config.json").read_text())
    cfg["model_cfg"]["quick_gelu"] = False
    (wrong / "open_clip_config.json").write_text(json.dumps(cfg))
    ref = np.load(wrong / "reference.npz")
    enc = vestis.load_encoder(wrong)
    assert np.abs(enc.encode_texts(sample_texts) - ref["text_emb"]).max() > 1e-3
    assert np.abs(enc.encode_images(image_files) - ref["image_emb"]).max() > 1e-3


def test_tokenizer_matches_open_clip_on_every_title(open_clip_reference, all_titles):
    """CLIP's BPE rebuilt from the bundled vocabulary gives open_clip's ids for every KAGL title."""
    ref = np.load(open_clip_reference / "gelu" / "reference.npz")["title_tokens"]
    enc = vestis.load_encoder(open_clip_reference / "gelu")
    ids, mask = enc.tokenizer(all_titles)
    ours = np.where(mask == 1, ids, 0)
    width = ours.shape[1]
    assert np.array_equal(ours, ref[:, :width]) and not ref[:, width:].any()


def test_weights_convert_back_to_open_clip_exactly(open_clip_reference):
    path = open_clip_format.weight_file(open_clip_reference / "gelu")
    original = open_clip_format.load_state_dict(path)
    back = open_clip_format.to_open_clip_state_dict(open_clip_format.convert_state_dict(original))
    assert back.keys() == {k for k in original if not k.endswith("attn_mask")}
    assert all(torch.equal(back[k], original[k]) for k in back)


def test_config_conversion_details():
    cfg = {"embed_dim": 512, "quick_gelu": True, "vision_cfg": {"width": 768, "patch_size": 16, "layers": 12}}
    hf = open_clip_format.clip_config_from_open_clip(cfg)
    assert hf.vision_config.hidden_act == "quick_gelu" and hf.text_config.hidden_act == "quick_gelu"
    assert hf.vision_config.num_attention_heads == 12 and hf.vision_config.patch_size == 16
    assert hf.text_config.eos_token_id == 49407 and hf.projection_dim == 512
    cfg.pop("quick_gelu")
    assert open_clip_format.clip_config_from_open_clip(cfg).vision_config.hidden_act == "gelu"


@pytest.mark.parametrize(
    "model_cfg, words",
    [
        ({"custom_text": True}, "SigLIP"),
        ({"vision_cfg": {"timm_model_name": "vit_base_patch16_siglip_224"}}, "timm_model_name"),
        ({"text_cfg": {"hf_model_name": "xlm-roberta-base"}}, "hf_model_name"),
        ({"vision_cfg": {"layers": [3, 4, 6, 3]}}, "ModifiedResNet"),
    ],
)
def test_unconvertible_configs_are_refused_with_reason(model_cfg, words):
    with pytest.raises(ModelFormatError, match=words):
        open_clip_format.clip_config_from_open_clip(model_cfg)


def test_unconvertible_checkpoint_without_open_clip_says_what_to_install(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"custom_text": True}}))
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="open_clip"):
        vestis.load_encoder(tmp_path)


def test_state_dict_with_foreign_tensors_is_refused(open_clip_reference, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(open_clip_reference / "gelu", tmp_path / "m")
    path = tmp_path / "m" / "open_clip_model.safetensors"
    sd = load_file(str(path))
    sd["visual.extra_head.weight"] = torch.zeros(2, 2)
    save_file(sd, str(path))
    with pytest.raises(ModelFormatError, match="does not use"):
        vestis.load_encoder(tmp_path / "m")
