"""ONNX: separate image/text graphs (the published layout), a combined graph, a fixed-batch graph."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
import torch
from transformers import CLIPModel

import vestis
from tests.models.test_hf_clip import reference_embeddings, write_hf_clip
from vestis.export import export_onnx


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf-for-onnx")
    write_hf_clip(directory, seed=7)
    return directory


@pytest.fixture(scope="module")
def exported(hf_dir, tmp_path_factory):
    return export_onnx(vestis.load_encoder(hf_dir), tmp_path_factory.mktemp("onnx-export"))


def test_exported_graphs_have_the_published_interface(exported):
    vision = onnx.load(str(exported / "onnx" / "vision_model.onnx"))
    text = onnx.load(str(exported / "onnx" / "text_model.onnx"))
    assert [i.name for i in vision.graph.input] == ["pixel_values"]
    assert [o.name for o in vision.graph.output] == ["image_embeds"]
    assert [i.name for i in text.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in text.graph.output] == ["text_embeds"]
    seq_dim = text.graph.input[0].type.tensor_type.shape.dim[1]
    assert seq_dim.dim_param  # dynamic sequence length, not padded to 77


def test_onnx_matches_transformers(hf_dir, exported, sample_images, sample_texts, record_parity):
    _, img_ref, txt_ref = reference_embeddings(hf_dir, sample_images, sample_texts)
    enc = vestis.load_encoder(exported)
    assert "onnxruntime" in enc.runtime and enc.dim == 32
    assert enc.logit_scale == pytest.approx(vestis.load_encoder(hf_dir).logit_scale)
    record_parity("ONNX separate graphs", "image embeddings", enc.encode_images(sample_images), img_ref, 1e-4)
    record_parity("ONNX separate graphs", "text embeddings", enc.encode_texts(sample_texts), txt_ref, 1e-4)


def test_torch_directory_runs_on_onnx_runtime_when_asked(exported, sample_texts, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(exported, both)
    (both / "config.json").write_text(json.dumps({"model_type": "clip"}))  # config without weights
    enc = vestis.load_encoder(both, runtime="onnx")
    assert "onnxruntime" in enc.runtime


class _Combined(torch.nn.Module):
    """CLIPModel's full forward with Optimum's output names, as FashionCLIP's model.onnx has."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, pixel_values, attention_mask):
        out = self.model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
        return out.logits_per_image, out.logits_per_text, out.text_embeds, out.image_embeds


def test_combined_model_onnx_is_split_and_matches(
    hf_dir, exported, sample_images, sample_texts, tmp_path, monkeypatch, record_parity
):
    monkeypatch.setenv("VESTIS_CACHE_DIR", str(tmp_path / "cache"))
    directory = tmp_path / "fashion-clip"
    (directory / "onnx").mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(exported / f, directory / f)
    model = CLIPModel.from_pretrained(str(hf_dir), attn_implementation="eager").eval()
    ids = torch.tensor([[49406, 320, 49407], [49406, 49407, 49407]])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Combined(model),
            (ids, torch.zeros(1, 3, 224, 224), torch.ones_like(ids)),
            str(directory / "onnx" / "model.onnx"),
            input_names=["input_ids", "pixel_values", "attention_mask"],
            output_names=["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"],
            dynamic_axes={"input_ids": {0: "t", 1: "s"}, "attention_mask": {0: "t", 1: "s"}, "pixel_values": {0: "b"}},
            opset_version=17,
            dynamo=False,
        )
    _, img_ref, txt_ref = reference_embeddings(hf_dir, sample_images, sample_texts)
    enc = vestis.load_encoder(directory)
    record_parity("ONNX combined model.onnx", "image embeddings", enc.encode_images(sample_images), img_ref, 1e-4)
    record_parity("ONNX combined model.onnx", "text embeddings", enc.encode_texts(sample_texts), txt_ref, 1e-4)
    assert len(list((tmp_path / "cache" / "onnx-split").glob("*/vision_model.onnx"))) == 1


def test_fixed_batch_one_graph_runs_item_by_item(hf_dir, exported, sample_images, sample_texts, tmp_path):
    """Chinese-CLIP's own export fixes the batch at 1; vestis still takes lists."""
    directory = tmp_path / "fixed"
    shutil.copytree(exported, directory)
    for name in ("vision_model.onnx", "text_model.onnx"):
        m = onnx.load(str(directory / "onnx" / name))
        for value in list(m.graph.input) + list(m.graph.output):
            value.type.tensor_type.shape.dim[0].dim_value = 1
        onnx.save(m, str(directory / "onnx" / name))
    enc = vestis.load_encoder(directory)
    ref = vestis.load_encoder(exported)
    assert np.abs(enc.encode_images(sample_images[:5]) - ref.encode_images(sample_images[:5])).max() < 1e-5
    assert np.abs(enc.encode_texts(sample_texts[:5]) - ref.encode_texts(sample_texts[:5])).max() < 1e-5


class _RecordingSession:
    """Forwards to an onnxruntime session and records each call's batch size."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def run(self, outputs, feeds):
        self.batches.append(next(iter(feeds.values())).shape[0])
        return self.session.run(outputs, feeds)


def test_large_batches_run_in_slices_with_the_same_result(exported, sample_images):
    enc = vestis.load_encoder(exported)
    images = (list(sample_images) * 12)[:70]
    per_32 = enc.encode_images(images, batch_size=32)
    enc.vision = _RecordingSession(enc.vision)
    enc.max_run_batch = 32
    whole = enc.encode_images(images, batch_size=70)
    assert enc.vision.batches == [32, 32, 6]
    assert np.array_equal(whole, per_32)
    enc.max_run_batch = 100
    enc.vision.batches.clear()
    enc.encode_images(images, batch_size=70)
    assert enc.vision.batches == [70]
