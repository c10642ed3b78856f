"""vestis-mini's image encoder against a ViT-B/32 CLIP (FashionCLIP's architecture), side by side.

Both run through vestis' torch backend on the same KAGL JPEG bytes, the same
thread count, in one process, each in fp32 and in bf16 (where the CPU has it;
vestis-mini's bf16 is its default, as its parity check holds): images/s end to end
(decode, preprocess, model) and model only (preprocessed tensors), with each row's
ratio to the ViT-B/32 in fp32 and in the same precision. The ViT-B/32 has random
weights (no pretrained weights can be had here); speed does not depend on them.

    python benchmarks/mini_vs_vitb32.py [--n 512] [--batch 64] [--threads 2] [--out results/bench/...json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

import vestis
from vestis.data import demo_catalog_path, kagl_parquets
from vestis.models.preprocess import preprocess_images


def vit_b32_encoder(tmp: Path, precision: str):
    from transformers import CLIPConfig, CLIPModel

    from vestis.models.preprocess import CLIP_PREPROCESSOR_CONFIG
    from vestis.models.text import clip_tokenizer_from_bpe

    cfg = CLIPConfig(
        projection_dim=512,
        text_config=dict(hidden_act="quick_gelu", eos_token_id=2, bos_token_id=0),
        vision_config=dict(hidden_act="quick_gelu", patch_size=32),
    )
    if not (tmp / "config.json").exists():
        CLIPModel(cfg).save_pretrained(str(tmp))
        clip_tokenizer_from_bpe().save_pretrained(str(tmp))
        (tmp / "preprocessor_config.json").write_text(json.dumps(CLIP_PREPROCESSOR_CONFIG))
    return vestis.load_encoder(tmp, precision=precision)


def rate(fn, n_items: int, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/bench/mini_vs_vitb32.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = kagl_parquets() or [demo_catalog_path()]
    images = pq.read_table(files[0], columns=["image"]).column(0).to_pylist()[: args.n]
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from vestis.models.runtime import bf16_supported

        precisions = ("fp32", "bf16") if bf16_supported() else ("fp32",)
        encoders = {}
        for precision in precisions:
            encoders[f"ViT-B/32 CLIP (random weights) {precision}"] = lambda p=precision: vit_b32_encoder(Path(tmp), p)
        for precision in precisions:
            encoders[f"vestis-mini {precision}"] = lambda p=precision: vestis.load_encoder(precision=p)
        default = vestis.load_encoder().precision
        for name, make in encoders.items():
            enc = make()
            enc.batch_size = args.batch
            pixels = preprocess_images(images, enc.image_config)
            end_to_end = rate(lambda enc=enc: enc.encode_images(images), len(images))

            def forward(enc=enc, pixels=pixels):
                with enc._runtime_context():
                    return [enc._forward_images(pixels[i : i + args.batch]) for i in range(0, len(pixels), args.batch)]

            model_only = rate(forward, len(images))
            rows.append({"model": name, "precision": enc.precision, "runtime": enc.runtime,
                         "default": name.startswith("vestis-mini") and enc.precision == default,
                         "input": list(pixels.shape[1:]), "end_to_end_img_s": end_to_end,
                         "model_only_img_s": model_only})  # fmt: skip
            del enc
    base = rows[0]
    vit = {r["precision"]: r for r in rows if r["model"].startswith("ViT")}
    print(f"{'model':40} {'input':>12} {'end-to-end img/s':>17} {'model-only img/s':>17} {'vs fp32 ViT':>11} "
          f"{'vs same-precision ViT':>21}")  # fmt: skip
    for r in rows:
        ratio = r["end_to_end_img_s"] / base["end_to_end_img_s"]
        r["ratio_end_to_end"] = ratio
        r["ratio_model_only"] = r["model_only_img_s"] / base["model_only_img_s"]
        r["ratio_end_to_end_same_precision"] = r["end_to_end_img_s"] / vit[r["precision"]]["end_to_end_img_s"]
        mark = "  (default)" if r["default"] else ""
        print(f"{r['model']:40} {str(r['input']):>12} {r['end_to_end_img_s']:17.1f} {r['model_only_img_s']:17.1f} "
              f"{ratio:10.1f}x {r['ratio_end_to_end_same_precision']:20.1f}x  {r['runtime']}{mark}")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "batch": args.batch, "n": len(images), "cpu": platform.processor(),
            "torch": torch.__version__}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
