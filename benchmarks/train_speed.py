"""What a training step of a pretrained image tower costs on this CPU: the recipe's budget.

For EfficientNet-Lite0 at several input sizes, and for several freeze points (the stem
and the first ``k`` of its 16 blocks frozen), measures side by side in one run:

* the frozen trunk's forward (images/s): what caching one view of every item costs;
* a training step of the rest (forward + backward of blocks ``k..15``, the 1x1 head and
  the projection) from cached trunk features (images/s): what an epoch costs;
* ``k = 0`` is full fine-tuning (no cache possible).

bf16 autocast and channels-last as the recipes use them, batch 64, ``--threads``.

    python benchmarks/train_speed.py                       # sizes 96 128 160 224, k 0 9 12 16
    python benchmarks/train_speed.py --sizes 128 --freeze 12

Prints a table and writes results/bench/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vestis.models.vestis_mini import MiniConfig, MiniModel

REPO = Path(__file__).resolve().parents[1]


def _rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def measure(size: int, freeze: int, batch: int, repeats: int) -> dict:
    tower = MiniModel(MiniConfig(image_tower="efficientnet-lite0", image_size=size)).image_tower
    tower = tower.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)

    def trunk():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return tower.trunk(x, freeze)

    feats = trunk().float().contiguous(memory_format=torch.channels_last)

    def step():
        tower.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tower.from_trunk(feats, freeze) if freeze else tower(x)
        out.float().square().mean().backward()

    row = {"size": size, "freeze_blocks": freeze, "batch": batch,
           "cache_features": list(feats.shape[1:]) if freeze else None,
           "trunk_images_per_s": round(_rate(trunk, batch, repeats), 1) if freeze else None,
           "train_images_per_s": round(_rate(step, batch, repeats), 1)}  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160, 224])
    ap.add_argument("--freeze", type=int, nargs="+", default=[0, 9, 12, 16])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "results" / "bench" / "train_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| size | frozen blocks | cached features | trunk img/s (caching) | train img/s |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        for k in args.freeze:
            r = measure(size, k, args.batch, args.repeats)
            rows.append(r)
            feats = "x".join(map(str, r["cache_features"])) if r["cache_features"] else "-"
            print(f"| {size} | {k} | {feats} | {r['trunk_images_per_s'] or '-'} | {r['train_images_per_s']} |",
                  flush=True)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": args.threads,
                               "torch": torch.__version__, "rows": rows}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
