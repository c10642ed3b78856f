"""Export an encoder's towers to ONNX in the layout the ONNX backend reads.

``onnx/vision_model.onnx`` (``pixel_values`` -> ``image_embeds``) and
``onnx/text_model.onnx`` (``input_ids``, ``attention_mask`` -> ``text_embeds``),
with a dynamic batch and a dynamic sequence length, the tokenizer and
preprocessor config beside them, and ``vestis_onnx.json`` holding what the
graphs cannot (logit scale, context length, embedding size).  It is the layout
FashionCLIP's and Marqo-FashionCLIP's published ONNX files use.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch

from vestis.errors import InputError
from vestis.models.base import Encoder
from vestis.models.onnx_backend import META_FILE
from vestis.models.torch_backend import TorchEncoder, _features

OPSET = 17


class _ImageTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))


class _TextTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, token_type_ids: bool) -> None:
        super().__init__()
        self.model = model
        self.token_type_ids = token_type_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.token_type_ids else {}
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask, **extra))


class _MiniText(torch.nn.Module):
    """vestis-mini's text side: frozen sentence encoder, then the learned head."""

    def __init__(self, sentence: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.sentence = sentence
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.sentence(input_ids, attention_mask))


def _towers(encoder: Encoder) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(image module, text module, module whose attention to switch to eager) of a torch encoder."""
    from vestis.models.vestis_mini import VestisMiniEncoder

    if isinstance(encoder, TorchEncoder):
        return _ImageTower(encoder.model), _TextTower(encoder.model, encoder._token_type_ids), encoder.model
    if isinstance(encoder, VestisMiniEncoder):
        return encoder.model.image_tower, _MiniText(encoder.text, encoder.model.text_head), encoder.text.bert
    raise InputError(f"only torch encoders can be exported to ONNX, not {encoder.runtime}")


def export_onnx(encoder: Encoder, out_dir: str | Path) -> Path:
    """Write ``encoder`` (a torch encoder) as two fp32 ONNX graphs under ``out_dir``."""
    image_tower, text_tower, attn_owner = _towers(encoder)
    out = Path(out_dir)
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    # The eager attention path traces into shape-generic ONNX; SDPA bakes in the trace's length.
    previous = getattr(attn_owner.config, "_attn_implementation", None)
    attn_owner.set_attn_implementation("eager")
    h, w = encoder.image_config.output_hw
    ids, mask = encoder.tokenizer(["a red summer dress", "shoes"])
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                image_tower,
                (torch.zeros(2, 3, h, w),),
                str(onnx_dir / "vision_model.onnx"),
                input_names=["pixel_values"],
                output_names=["image_embeds"],
                dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
            torch.onnx.export(
                text_tower,
                (torch.from_numpy(ids), torch.from_numpy(mask)),
                str(onnx_dir / "text_model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["text_embeds"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "text_embeds": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        if previous:
            attn_owner.set_attn_implementation(previous)
    encoder.tokenizer.tokenizer.save_pretrained(str(out))
    cfg = encoder.image_config
    if cfg.crop_rounding == "floor" and cfg.resize_mode != "longest":
        (out / "preprocessor_config.json").write_text(json.dumps(cfg.to_hf_dict(), indent=2))
    meta = {
        "source": encoder.name,
        "dim": encoder.dim,
        "logit_scale": encoder.logit_scale,
        "context_length": encoder.context_length,
        "image_config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "extra"},
    }
    (onnx_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return out
