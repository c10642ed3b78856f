"""Training the garment segmenter's decoder on Clothing Co-Parsing's pixel masks.

    python -m vestis.garments.train --config configs/garments-lite0.yaml

Only photos outside CCP's held-out split (:func:`vestis.data.ccp.is_heldout`) are
read.  The trunk is frozen, so its stride-8/16/32 features are computed once per
photo and per horizontal flip and kept (float16) in memory; an epoch then costs
what the decoder costs (about a minute of one CPU thread for the whole run).
The config's ``dev_fraction`` keeps a part of the *training* photos aside to watch
per-group IoU while choosing the recipe; the shipped run sets it to 0 and trains on
every training photo.  One torch thread and a fixed seed: the same config gives the
same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch.nn import functional as F

from vestis.data.ccp import CCP_LABELS, read_photos
from vestis.data.split import is_validation
from vestis.garments.groups import IGNORE_INDEX, ccp_label_to_group
from vestis.garments.model import GarmentSegmenter, SegmenterConfig, prepare_image, to_tensor


@dataclass(frozen=True)
class TrainConfig:
    data: str = "ccp/ccp.parquet"  # relative to the shared data folder, or absolute
    epochs: int = 15
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    #: The loss compares logits upsampled to 1/loss_stride of the canvas with labels sampled there.
    loss_stride: int = 4
    #: Class weights in the loss: (pixel frequency) ** -power, scaled to mean 1 over pixels.
    class_weight_power: float = 0.5
    dev_fraction: float = 0.0
    seed: int = 0
    threads: int = 1
    extra: dict = field(default_factory=dict, compare=False)


@dataclass
class Views:
    """Cached trunk features and group labels of the training views, bucketed by canvas shape."""

    features: dict[tuple[int, int], list[torch.Tensor]]  # per tap: (N, C, h, w) float16
    labels: dict[tuple[int, int], torch.Tensor]  # (N, H, W) uint8 group ids, IGNORE_INDEX outside the photo

    def __len__(self) -> int:
        return sum(len(v) for v in self.labels.values())


def group_mask(mask: np.ndarray) -> np.ndarray:
    """CCP label ids -> group ids (uint8), IGNORE_INDEX for ignored labels."""
    table = np.asarray(ccp_label_to_group(CCP_LABELS), dtype=np.uint8)
    return table[np.minimum(mask, len(table) - 1)]


def view(image: Image.Image, mask: np.ndarray, long_side: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Canvas and its group labels for one (possibly mirrored) photo."""
    groups = Image.fromarray(group_mask(mask))
    if flip:
        image, groups = (
            image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            groups.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        )
    canvas, (h, w) = prepare_image(image, long_side)
    labels = np.full(canvas.shape[:2], IGNORE_INDEX, dtype=np.uint8)
    labels[:h, :w] = np.asarray(groups.resize((w, h), Image.Resampling.NEAREST))
    return canvas, labels


def cache_views(model: GarmentSegmenter, photos: list, *, flips: bool = True, log=print) -> Views:
    by_shape: dict[tuple[int, int], tuple[list, list]] = {}
    for photo in photos:
        for flip in (False, True) if flips else (False,):
            canvas, labels = view(photo.image, photo.mask, model.config.long_side, flip)
            canvases, label_list = by_shape.setdefault(canvas.shape[:2], ([], []))
            canvases.append(canvas)
            label_list.append(labels)
    features, labels = {}, {}
    done, t0, last = 0, time.perf_counter(), 0.0
    total = sum(len(c) for c, _ in by_shape.values())
    for shape, (canvases, label_list) in by_shape.items():
        chunks = []
        for i in range(0, len(canvases), 16):
            feats = model.features(to_tensor(np.stack(canvases[i : i + 16])))
            chunks.append([f.half() for f in feats])
            done += len(canvases[i : i + 16])
            if time.perf_counter() - last > 10:
                last = time.perf_counter()
                log(f"trunk features: {done}/{total} views ({done / (last - t0):.1f}/s)")
        features[shape] = [torch.cat([c[t] for c in chunks]) for t in range(len(chunks[0]))]
        labels[shape] = torch.from_numpy(np.stack(label_list))
    return Views(features, labels)


def class_weights(views: Views, n_classes: int, power: float) -> torch.Tensor:
    counts = torch.zeros(n_classes, dtype=torch.float64)
    for lab in views.labels.values():
        counts += torch.bincount(lab.flatten().long(), minlength=256)[:n_classes].double()
    freq = (counts / counts.sum()).clamp_min(1e-6)
    w = freq**-power
    return (w / (freq * w).sum()).float()


def batches(views: Views, batch_size: int, rng: random.Random):
    """Shuffled batches, each of one canvas shape."""
    chunks = []
    for shape, lab in views.labels.items():
        order = list(range(len(lab)))
        rng.shuffle(order)
        chunks += [(shape, order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    rng.shuffle(chunks)
    for shape, idx in chunks:
        index = torch.tensor(idx)
        yield [f[index].float() for f in views.features[shape]], views.labels[shape][index].long()


def subsample(labels: torch.Tensor, stride: int) -> torch.Tensor:
    """Labels at the centres of ``stride`` x ``stride`` cells (what bilinear upsampling to that grid predicts)."""
    return labels[..., stride // 2 :: stride, stride // 2 :: stride] if stride > 1 else labels


def confusion(model: GarmentSegmenter, views: Views) -> np.ndarray:
    n = len(model.config.groups)
    conf = np.zeros((n, n), dtype=np.int64)
    model.eval()
    with torch.no_grad():
        for shape, lab in views.labels.items():
            for i in range(0, len(lab), 32):
                feats = [f[i : i + 32].float() for f in views.features[shape]]
                pred = model.logits(feats, shape).argmax(1)
                target = lab[i : i + 32].long()
                keep = target != IGNORE_INDEX
                conf += np.bincount((target[keep] * n + pred[keep]).numpy(), minlength=n * n).reshape(n, n)
    return conf


def iou_per_group(conf: np.ndarray, groups: tuple[str, ...]) -> dict[str, float]:
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    return {g: round(float(inter[i] / union[i]), 4) if union[i] else float("nan") for i, g in enumerate(groups)}


def cached_views(model: GarmentSegmenter, photos: list, cache: Path | None, *, flips: bool = True, log=print) -> Views:
    """:func:`cache_views`, kept on disk under ``cache`` (keyed by trunk, input size, taps and photos) when given."""
    if cache is None:
        return cache_views(model, photos, flips=flips, log=log)
    c = model.config
    key = hashlib.blake2b(repr((c.variant, c.long_side, c.taps, flips, [p.id for p in photos])).encode(), digest_size=8)
    path = cache / f"garment-views-{key.hexdigest()}.pt"
    if path.is_file():
        return Views(**torch.load(path, weights_only=True))
    views = cache_views(model, photos, flips=flips, log=log)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"features": views.features, "labels": views.labels}, path)
    return views


def train(
    seg_config: SegmenterConfig,
    config: TrainConfig,
    data: Path,
    out: Path | None,
    *,
    feature_cache: Path | None = None,
    log=print,
) -> dict:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model = GarmentSegmenter(seg_config)
    photos = list(read_photos(data, "train", pixel_only=True))
    in_dev = [bool(config.dev_fraction) and is_validation(f"ccp-dev-{p.id}", config.dev_fraction) for p in photos]
    dev = [p for p, d in zip(photos, in_dev) if d]
    fit = [p for p, d in zip(photos, in_dev) if not d]
    log(f"{len(fit)} training photos, {len(dev)} dev photos (CCP held-out photos are never read)")
    t0 = time.perf_counter()
    fit_views = cached_views(model, fit, feature_cache, log=log)
    dev_views = cached_views(model, dev, feature_cache, flips=False, log=log) if dev else None
    log(f"trunk features cached in {time.perf_counter() - t0:.0f}s ({len(fit_views)} views)")
    weights = class_weights(fit_views, len(seg_config.groups), config.class_weight_power)
    params = list(model.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(fit_views) / config.batch_size)
    total = steps_per_epoch * config.epochs

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - config.warmup_steps) / max(1, total - config.warmup_steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history = []
    for epoch in range(config.epochs):
        model.train()
        losses, t1 = [], time.perf_counter()
        for feats, target in batches(fit_views, config.batch_size, rng):
            target = subsample(target, config.loss_stride)
            logits = model.logits(feats, target.shape[-2:])
            loss = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        row = {
            "epoch": epoch + 1,
            "loss": round(float(np.mean(losses)), 5),
            "seconds": round(time.perf_counter() - t1, 1),
        }
        if dev_views is not None and ((epoch + 1) % 5 == 0 or epoch + 1 == config.epochs):
            ious = iou_per_group(confusion(model, dev_views), seg_config.groups)
            row["dev_iou"] = ious
            row["dev_miou"] = round(float(np.nanmean(list(ious.values()))), 4)
        history.append(row)
        log(json.dumps(row))
    model.eval()
    result = {
        "segmenter": asdict(seg_config),
        "train": asdict(config),
        "photos": {"fit": len(fit), "dev": len(dev)},
        "class_weights": dict(zip(seg_config.groups, [round(float(w), 4) for w in weights])),
        "history": history,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if out is not None:
        model.save(out)
        (out / "train_log.json").write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {out}")
    return result


def load_config(path: Path) -> tuple[SegmenterConfig, TrainConfig, dict]:
    raw = yaml.safe_load(path.read_text()) or {}
    seg = SegmenterConfig.from_dict(raw.get("segmenter", {}))
    tr = raw.get("train", {})
    unknown = set(tr) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise SystemExit(f"{path}: unknown train settings {sorted(unknown)}")
    return seg, TrainConfig(**tr), raw


def main(argv: list[str] | None = None) -> None:
    from vestis.data import shared_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the config's 'out')")
    ap.add_argument("--dev-fraction", type=float, default=None, help="override the config's dev_fraction")
    ap.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    ap.add_argument("--feature-cache", type=Path, default=None, help="keep the trunk features in this folder")
    args = ap.parse_args(argv)
    seg, tr, raw = load_config(args.config)
    overrides = {k: v for k, v in (("dev_fraction", args.dev_fraction), ("epochs", args.epochs)) if v is not None}
    if overrides:
        tr = TrainConfig(**{**asdict(tr), **overrides})
    data = Path(tr.data)
    if not data.is_absolute():
        root = shared_data_dir()
        if root is None:
            raise SystemExit("the shared data folder (../shared/data or $VESTIS_DATA_DIR) is not here")
        data = root / data
    out = args.out or (Path(raw["out"]) if raw.get("out") else None)
    train(seg, tr, data, out, feature_cache=args.feature_cache, log=lambda m: print(m, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
