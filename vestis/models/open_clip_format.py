"""open_clip checkpoints (Marqo-FashionCLIP's format) without open_clip.

An open_clip model directory holds ``open_clip_config.json`` (``model_cfg`` and
``preprocess_cfg``) and ``open_clip_pytorch_model.bin`` or
``open_clip_model.safetensors``.  For the standard CLIP architecture (a ViT
image tower and a causal text transformer pooled at the end-of-text token)
:func:`convert_state_dict` maps the weights one-to-one onto a transformers
``CLIPModel``:

* the fused attention ``in_proj_weight`` (3w, w) splits into q, k and v;
* projections are stored as ``x @ P`` in open_clip and as ``Linear`` weights
  (``P.T``) in transformers;
* ``quick_gelu`` in the config selects CLIP's ``x * sigmoid(1.702 x)``; its
  absence means exact GELU (Marqo-FashionCLIP uses GELU; OpenAI's weights
  QuickGELU) -- the parity tests fail if the two are swapped.

Anything else (timm or HF text towers, SigLIP, attentional pooling, layer
scale) is refused by :func:`clip_config_from_open_clip` with a message, and
runs through open_clip itself when that is importable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vestis.errors import ModelFormatError
from vestis.models.registry import OPEN_CLIP_WEIGHT_FILES

CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = OPEN_CLIP_WEIGHT_FILES

# Settings whose non-default values change the architecture beyond CLIPModel.
_TOWER_DEFAULTS: dict[str, Any] = {
    "ls_init_value": None,  # layer scale
    "final_ln_after_pool": False,
    "act_kwargs": None,
    "norm_kwargs": None,
    "block_type": None,  # custom attention blocks and their options:
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
}
_VISION_DEFAULTS: dict[str, Any] = {
    **_TOWER_DEFAULTS,
    "attentional_pool": False,
    "no_ln_pre": False,
    "pos_embed_type": "learnable",
    "pool_type": "tok",
    "timm_model_name": None,
}
_TEXT_DEFAULTS: dict[str, Any] = {
    **_TOWER_DEFAULTS,
    "embed_cls": False,
    "no_causal_mask": False,
    "pool_type": "argmax",
    "proj_bias": False,
    "proj_type": "linear",
    "hf_model_name": None,
    "hf_tokenizer_name": None,
    "tokenizer_mode": None,
}


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{directory}: no {CONFIG_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
    if "model_cfg" not in cfg:
        cfg = {"model_cfg": cfg, "preprocess_cfg": {}}
    return cfg


def weight_file(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    raise ModelFormatError(f"{directory}: no open_clip weights; expected one of {', '.join(WEIGHT_FILES)}")


def unsupported_reason(model_cfg: dict[str, Any]) -> str | None:
    """Why ``model_cfg`` cannot become a ``CLIPModel``, or None when it can."""
    if model_cfg.get("custom_text"):
        return "custom_text towers (e.g. SigLIP) are not the CLIP layout"
    if "init_logit_bias" in model_cfg:
        return "a logit bias (SigLIP loss) has no CLIPModel equivalent"
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    if isinstance(vision.get("layers", 12), (list, tuple)):
        return "ModifiedResNet image towers are not converted"
    for section, cfg, defaults in (("vision_cfg", vision, _VISION_DEFAULTS), ("text_cfg", text, _TEXT_DEFAULTS)):
        for key, default in defaults.items():
            if cfg.get(key, default) != default:
                return f"{section}.{key}={cfg[key]!r} is not supported by the CLIPModel conversion"
    if text.get("vocab_size", 49408) != 49408:
        return "only CLIP's 49,408-token BPE vocabulary is supported"
    return None


def clip_config_from_open_clip(model_cfg: dict[str, Any]) -> Any:
    """A transformers ``CLIPConfig`` with the same architecture as ``model_cfg``."""
    from transformers import CLIPConfig

    reason = unsupported_reason(model_cfg)
    if reason:
        raise ModelFormatError(f"open_clip config cannot be converted: {reason}")
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    v_width = int(vision.get("width", 768))
    v_heads = v_width // int(vision.get("head_width", 64))
    image_size = vision.get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        if image_size[0] != image_size[-1]:
            raise ModelFormatError("non-square open_clip image_size is not supported")
        image_size = image_size[0]
    t_width = int(text.get("width", 512))
    return CLIPConfig(
        projection_dim=int(model_cfg.get("embed_dim", 512)),
        text_config={
            "vocab_size": int(text.get("vocab_size", 49408)),
            "hidden_size": t_width,
            "intermediate_size": int(t_width * float(text.get("mlp_ratio", 4.0))),
            "num_hidden_layers": int(text.get("layers", 12)),
            "num_attention_heads": int(text.get("heads", 8)),
            "max_position_embeddings": int(text.get("context_length", 77)),
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": v_width,
            "intermediate_size": int(v_width * float(vision.get("mlp_ratio", 4.0))),
            "num_hidden_layers": int(vision.get("layers", 12)),
            "num_attention_heads": v_heads,
            "image_size": int(image_size),
            "patch_size": int(vision.get("patch_size", 16)),
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
        },
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from ``.safetensors`` or a torch pickle; unwraps training checkpoints."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign files raise many types
        raise ModelFormatError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ModelFormatError(f"{path}: does not hold a state dict")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


# (open_clip name, transformers name, transposed): projections are ``x @ P`` in open_clip
# and ``Linear`` weights (``P.T``) in transformers.
_TENSORS = [
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", False),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding", False),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", False),
    *[(f"visual.ln_pre.{p}", f"vision_model.pre_layrnorm.{p}", False) for p in ("weight", "bias")],
    *[(f"visual.ln_post.{p}", f"vision_model.post_layernorm.{p}", False) for p in ("weight", "bias")],
    *[(f"ln_final.{p}", f"text_model.final_layer_norm.{p}", False) for p in ("weight", "bias")],
    ("visual.proj", "visual_projection.weight", True),
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight", False),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight", False),
    ("text_projection", "text_projection.weight", True),
    ("logit_scale", "logit_scale", False),
]
_BLOCK_TENSORS = [
    (f"{a}.{p}", f"{c}.{p}")
    for a, c in (
        ("attn.out_proj", "self_attn.out_proj"),
        ("ln_1", "layer_norm1"),
        ("ln_2", "layer_norm2"),
        ("mlp.c_fc", "mlp.fc1"),
        ("mlp.c_proj", "mlp.fc2"),
    )  # fmt: skip
    for p in ("weight", "bias")
]
_TOWERS = [("visual.transformer.resblocks", "vision_model.encoder.layers"),
           ("transformer.resblocks", "text_model.encoder.layers")]  # fmt: skip


def _layers(sd: dict[str, torch.Tensor], prefix: str, probe: str) -> int:
    n = 0
    while f"{prefix}.{n}.{probe}" in sd:
        n += 1
    return n


def convert_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip CLIP state dict -> transformers ``CLIPModel`` state dict.

    Every source tensor must be used (buffers such as ``attn_mask`` aside), so a
    checkpoint of another architecture fails loudly instead of loading half.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def need(src: str) -> torch.Tensor:
        if src not in sd:
            raise ModelFormatError(f"open_clip weights lack {src!r}")
        used.add(src)
        return sd[src]

    def take(src: str, dst: str, transpose: bool = False) -> None:
        out[dst] = need(src).t().contiguous() if transpose else need(src)

    for src, dst, transpose in _TENSORS:
        take(src, dst, transpose)
    for tower_in, tower_out in _TOWERS:
        for layer in range(_layers(sd, tower_in, "ln_1.weight")):
            src, dst = f"{tower_in}.{layer}", f"{tower_out}.{layer}"
            for kind in ("weight", "bias"):
                # the fused attention in_proj (3w, w) splits into q, k and v
                for name, part in zip("qkv", need(f"{src}.attn.in_proj_{kind}").chunk(3, dim=0)):
                    out[f"{dst}.self_attn.{name}_proj.{kind}"] = part
            for a, c in _BLOCK_TENSORS:
                take(f"{src}.{a}", f"{dst}.{c}")
    leftover = sorted(k for k in sd if k not in used and not k.endswith("attn_mask"))
    if leftover:
        raise ModelFormatError(
            f"open_clip weights hold {len(leftover)} tensors the CLIP layout does not use, "
            f"e.g. {', '.join(leftover[:3])}"
        )
    return out


def to_open_clip_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``CLIPModel`` state dict -> open_clip's: the inverse of :func:`convert_state_dict`."""
    out = {src: (sd[dst].t() if transpose else sd[dst]).contiguous() for src, dst, transpose in _TENSORS}
    for tower_in, tower_out in _TOWERS:
        for layer in range(_layers(sd, tower_out, "layer_norm1.weight")):
            src, dst = f"{tower_in}.{layer}", f"{tower_out}.{layer}"
            for kind in ("weight", "bias"):
                parts = [sd[f"{dst}.self_attn.{name}_proj.{kind}"] for name in "qkv"]
                out[f"{src}.attn.in_proj_{kind}"] = torch.cat(parts, dim=0).contiguous()
            for a, c in _BLOCK_TENSORS:
                out[f"{src}.{a}"] = sd[f"{dst}.{c}"].contiguous()
    return out


def save_open_clip(model: Any, directory: Path, config: dict[str, Any]) -> Path:
    """Write a ``CLIPModel`` as an open_clip directory with ``config`` (``model_cfg``, ``preprocess_cfg``)."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = to_open_clip_state_dict({k: v.detach().float() for k, v in model.state_dict().items()})
    save_file(weights, str(out / "open_clip_model.safetensors"))
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return out


def load_as_clip_model(directory: Path) -> tuple[Any, dict[str, Any]]:
    """Build a transformers ``CLIPModel`` from an open_clip directory; returns (model, config)."""
    from transformers import CLIPModel

    cfg = read_config(directory)
    hf_config = clip_config_from_open_clip(cfg["model_cfg"])
    weights = convert_state_dict(load_state_dict(weight_file(directory)))
    model = CLIPModel(hf_config)
    expected = model.state_dict()
    for key, tensor in weights.items():
        if key not in expected:
            raise ModelFormatError(f"converted weight {key} has no place in CLIPModel")
        if tuple(expected[key].shape) != tuple(tensor.shape):
            raise ModelFormatError(
                f"weight {key}: checkpoint shape {tuple(tensor.shape)} does not match "
                f"the config's {tuple(expected[key].shape)}"
            )
    missing = [k for k in expected if k not in weights and not k.endswith("position_ids")]
    if missing:
        raise ModelFormatError(f"open_clip weights miss {len(missing)} tensors, e.g. {missing[:3]}")
    model.load_state_dict(weights, strict=False)
    return model.eval(), cfg


def import_open_clip() -> Any:
    """The open_clip module, or None when it is not installed."""
    try:
        import open_clip
    except ImportError:
        return None
    return open_clip
