"""Reference outputs from open_clip itself, run in the side environment ``.venv-ref``.

open_clip needs torchvision, and the only torchvision for torch 2.13 on PyPI is
a CUDA build whose compiled ``nms``/``qnms`` operators fail to register beside
the CPU torch.  open_clip never calls them, so declaring their schemas before
the import is enough (the issue's option (a)).  Doing that inside vestis'
own environment would break transformers' image utilities, which import
torchvision when it is installed -- hence the separate environment, which
reuses the main one's packages through a ``.pth`` file and adds only
torchvision, open_clip and timm.

Usage: python open_clip_ref.py SPEC.json
SPEC: {"out": dir, "images": [paths], "texts": [str], "titles": [str]}
Writes, per variant, an open_clip model directory and ``reference.npz``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

for _op in ("nms", "qnms"):
    torch.library.define(f"torchvision::{_op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

VARIANTS = {
    # Marqo-FashionCLIP's convention: exact GELU, weights as safetensors and .bin.
    "gelu": {"quick_gelu": False, "weights": "open_clip_model.safetensors", "mean": None},
    # OpenAI's convention: QuickGELU; a non-default mean/std checks the preprocess_cfg is read.
    "quickgelu": {"quick_gelu": True, "weights": "open_clip_pytorch_model.bin", "mean": (0.5, 0.4, 0.3)},
}


def model_cfg(quick_gelu: bool) -> dict:
    return {
        "embed_dim": 32,
        "quick_gelu": quick_gelu,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
    }


def build(directory: Path, variant: dict, seed: int) -> None:
    torch.manual_seed(seed)
    cfg = model_cfg(variant["quick_gelu"])
    model = open_clip.CLIP(**cfg)
    with torch.no_grad():  # perturb every tensor so LayerNorms and biases are not trivially 1 and 0
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    directory.mkdir(parents=True, exist_ok=True)
    preprocess = {}
    if variant["mean"]:
        preprocess = {"mean": list(variant["mean"]), "std": [0.25, 0.26, 0.27]}
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
    state = model.state_dict()
    if variant["weights"].endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(directory / variant["weights"]))
    else:
        torch.save(state, directory / variant["weights"])


def embed(directory: Path, images: list, texts: list[str]) -> tuple[np.ndarray, np.ndarray, torch.Tensor, object]:
    """open_clip's own normalised embeddings of ``images`` and ``texts`` for the model in ``directory``,
    with the pixels it saw and its tokenizer."""
    ref = f"local-dir:{directory}"
    model, _, preprocess = open_clip.create_model_and_transforms(ref)
    tokenizer = open_clip.get_tokenizer(ref)
    model.eval()
    pixels = torch.stack([preprocess(im) for im in images])
    with torch.no_grad():
        image_emb = model.encode_image(pixels, normalize=True).numpy()
        text_emb = model.encode_text(tokenizer(texts), normalize=True).numpy()
    return image_emb, text_emb, pixels, tokenizer


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    images = [Image.open(p).convert("RGB") for p in spec["images"]]
    if "check" in spec:  # embed checkpoints written elsewhere (e.g. fine-tuned by vestis train)
        for directory in map(Path, spec["check"]):
            image_emb, text_emb, _, _ = embed(directory, images, spec["texts"])
            np.savez(directory / "open_clip_check.npz", image_emb=image_emb, text_emb=text_emb)
        print("ok")
        return
    out = Path(spec["out"])
    for seed, (name, variant) in enumerate(VARIANTS.items()):
        directory = out / name
        build(directory, variant, seed)
        image_emb, text_emb, pixels, tokenizer = embed(directory, images, spec["texts"])
        import vestis

        native = vestis.load_encoder(directory, runtime="open_clip")
        np.savez(
            directory / "reference.npz",
            pixels=pixels.numpy(),
            image_emb=image_emb,
            text_emb=text_emb,
            title_tokens=tokenizer(spec["titles"]).numpy(),
            native_image_emb=native.encode_images(spec["images"]),
            native_text_emb=native.encode_texts(spec["texts"]),
        )
    print("ok")


if __name__ == "__main__":
    main()
