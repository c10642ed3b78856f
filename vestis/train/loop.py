"""``vestis train``: contrastive multi-field training, resumable and seeded.

Trains vestis-mini from scratch, or fine-tunes a checkpoint named by ``init``
(vestis-mini, a transformers CLIP / Chinese-CLIP or an open_clip one) through
the same loop (:mod:`vestis.train.models`).  Captions are prepared once (with
vestis-mini's frozen text tower, embedded once), so a step costs the image
tower plus whatever text tower is trained.  Each epoch ends with a zero-shot
check on the validation split (KAGL ``articleType``, weighted F1, the same
protocol as ``vestis eval classify``) and an atomic checkpoint; ``--resume``
continues from it with the same data order.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from vestis.classify import DEFAULT_TEMPLATES
from vestis.data import shared_data_dir
from vestis.errors import InputError
from vestis.eval.metrics import classification_metrics
from vestis.models.preprocess import ImageConfig
from vestis.models.registry import cache_root
from vestis.models.vestis_mini import MiniConfig
from vestis.progress import progress_bar
from vestis.train.augment import AugmentConfig, normalize
from vestis.train.captions import COLOUR_FIELDS, DEFAULT_FIELD_WEIGHTS
from vestis.train.composite import background_bank, product_alphas
from vestis.train.data import TrainingSet, build_training_set, ccp_items, ccp_val_items, kagl_items
from vestis.train.loss import field_loss
from vestis.train.models import Trainable, build_trainable
from vestis.train.views import ViewMaker, cache_key, cached_trunk_features


@dataclass
class TrainConfig:
    out: str = "runs/vestis-mini"
    init: str | None = None  # fine-tune this model (name or path) instead of training vestis-mini from scratch
    kagl: str = "{data}/kagl"
    ccp: str | None = "{data}/ccp/ccp.parquet"
    ccp_cutout: bool = True  # also train on each street-photo garment cut out onto white
    val_fraction: float = 0.1
    limit: int | None = None  # use only the first N KAGL rows (tests, quick runs)
    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    seed: int = 0
    bf16: bool = True
    channels_last: bool = False  # NHWC convolutions: ~1.5x faster on CPU, other float sums than NCHW
    synonym_field: bool = False  # synonyms as a field of their own ("synonym") instead of among article captions
    label_aware: bool = False  # every caption true of an image is its positive, not only the one drawn for it
    # pretrained image towers (model: image_tower: efficientnet-lite0, ...)
    pretrained: bool = True  # start the image tower from its ImageNet weights
    freeze_blocks: int = 0  # keep the stem and the first N blocks fixed (their BatchNorm statistics too)
    backbone_lr: float = 1.0  # learning-rate multiplier of the trainable pretrained blocks
    cache_views: int = 0  # with freeze_blocks: render N augmented views per item once, cache the frozen blocks' output
    ccp_holdout: bool = False  # leave out the held-out CCP photos (vestis.data.ccp); validate on them each epoch
    threads: int | None = None
    keep_epochs: list[int] = field(default_factory=list)  # also save the model after these epochs
    fields: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FIELD_WEIGHTS))
    model: MiniConfig = field(default_factory=MiniConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        # Checked here, not only in from_yaml, so a config built in code is held to it too.
        if self.fields.get("synonym", 0) > 0 and not self.synonym_field:
            raise InputError("a 'synonym' field weight needs synonym_field: true")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"{path}: no such training config") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from None
        model, aug = raw.pop("model", {}) or {}, raw.pop("augment", {}) or {}
        # A misspelt key must not silently train with the default (MiniConfig.from_dict
        # ignores unknown keys, as saved configs carry more than the architecture).
        for section, given, known in (("", raw, cls.__dataclass_fields__),
                                      ("model ", model, MiniConfig.__dataclass_fields__),
                                      ("augment ", aug, AugmentConfig.__dataclass_fields__)):  # fmt: skip
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise InputError(f"{path}: unknown {section}settings {unknown}")
        aug = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        try:
            return cls(model=MiniConfig.from_dict(model), augment=aug, **raw)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None


def _resolve(path: str | None) -> str | None:
    if path and "{data}" in path:
        root = shared_data_dir()
        if root is None:
            raise InputError(f"{path}: the shared data folder is not here (set VESTIS_DATA_DIR)")
        path = path.replace("{data}", str(root))
    return path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------ data and text embeddings


def load_data(
    cfg: TrainConfig, image_config: ImageConfig, quiet: bool
) -> tuple[TrainingSet, TrainingSet, TrainingSet | None]:
    """Training items, KAGL validation products and (with ``ccp_holdout``) held-out street-photo garments."""
    kagl = _resolve(cfg.kagl)

    def limited(items):
        for n, item in enumerate(items):
            if cfg.limit is not None and n >= cfg.limit:
                return
            yield item

    syn = cfg.synonym_field
    sources = [("kagl", limited(kagl_items(kagl, image_config, cfg.val_fraction, "train", quiet, synonym_field=syn)))]
    ccp = _resolve(cfg.ccp)
    real_val = None
    if ccp and Path(ccp).is_file():
        items = ccp_items(ccp, image_config, cutout=cfg.ccp_cutout, quiet=quiet, synonym_field=syn,
                          holdout=cfg.ccp_holdout)  # fmt: skip
        sources.append(("ccp", limited(items)))
        if cfg.ccp_holdout:
            real_val = build_training_set([("ccp-val", limited(ccp_val_items(ccp, image_config, quiet)))], quiet)
    train = build_training_set(sources, quiet)
    val = build_training_set([("kagl", limited(kagl_items(kagl, image_config, cfg.val_fraction, "val", quiet)))], quiet)
    return train, val, real_val


def view_maker(cfg: TrainConfig, train_set: TrainingSet, image_config: ImageConfig, quiet: bool) -> ViewMaker:
    """Augmented views of the training items; catalog-style items may be pasted onto street scenes."""
    images = torch.from_numpy(train_set.images)
    maker = ViewMaker(images, cfg.augment, image_config.mean, image_config.std)
    if cfg.augment.composite > 0:
        ccp = _resolve(cfg.ccp)
        size = train_set.images.shape[1]
        bank = background_bank(ccp, size, seed=cfg.seed, quiet=quiet) if ccp and Path(ccp).is_file() else None
        composable = [src == "kagl" or item.endswith("-cutout") for src, item in zip(train_set.source, train_set.ids)]
        maker.alpha = torch.from_numpy(product_alphas(train_set.images, quiet))
        maker.composable = torch.tensor(composable)
        maker.bank = torch.from_numpy(bank) if bank is not None else torch.zeros(0, size, size, 3, dtype=torch.uint8)
    return maker


# ------------------------------------------------------------------ evaluation during training


@torch.inference_mode()
def zero_shot_f1(model: Trainable, val: TrainingSet, label_bank, labels: list[str], prefix: str = "val_article"):
    model.eval()
    index = {lbl: i for i, lbl in enumerate(labels)}
    keep = [i for i, lbl in enumerate(val.labels) if lbl in index]
    cfg = model.image_config
    feats = []
    for start in range(0, len(keep), 256):
        x = torch.from_numpy(val.images[keep[start : start + 256]]).permute(0, 3, 1, 2).float().div(255)
        feats.append(F.normalize(model.encode_images(normalize(x, cfg.mean, cfg.std)), dim=-1))
    image = torch.cat(feats)
    text = F.normalize(model.encode_texts(label_bank, torch.arange(len(labels))), dim=-1)
    pred = (image @ text.T).argmax(dim=1).numpy()
    truth = np.array([index[val.labels[i]] for i in keep])
    m = classification_metrics(truth, pred, labels)
    model.train()
    if prefix == "val_article":  # the names the logs of v1-v6 carry
        return {"val_article_weighted_f1": m["weighted_f1"], "val_article_accuracy": m["accuracy"], "val_n": m["n"]}
    return {f"{prefix}_weighted_f1": m["weighted_f1"], f"{prefix}_accuracy": m["accuracy"], f"{prefix}_n": m["n"]}


# ------------------------------------------------------------------ the loop


def _options(item_views: dict[str, list[int]], field_name: str, colourless: bool) -> list[int] | None:
    """The captions of ``field_name`` that are true of an item as augmented (none if colour is gone)."""
    if colourless:
        if field_name in COLOUR_FIELDS:
            return None
        if field_name == "composed":
            field_name = "composed_plain"
    return item_views.get(field_name)


def _draw(views: list[dict[str, list[int]]], idx: np.ndarray, field_name: str, colourless: np.ndarray, rng):
    """One caption index per item for ``field_name`` (-1 where the item has none)."""
    out = np.full(len(idx), -1, dtype=np.int64)
    for j, i in enumerate(idx):
        options = _options(views[i], field_name, colourless[j])
        if options:
            out[j] = options[rng.integers(len(options))]
    return out


def _positives(views, idx: np.ndarray, field_name: str, colourless: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(len(idx), len(columns)) bool: which of the batch's caption columns are true of each item.

    A caption that leaves the colour out ("a t-shirt for casual wear") is true of the
    coloured product too, so a coloured item's composed positives include those.
    """
    rows = []
    for i, c in zip(idx, colourless):
        true = list(_options(views[i], field_name, c) or [])
        if field_name == "composed" and not c:
            true += views[i].get("composed_plain", [])
        rows.append(np.isin(columns, true))
    return np.stack(rows)


def batch_loss(model: Trainable, image_emb: torch.Tensor, views, idx: np.ndarray, colourless: np.ndarray, captions,
               weights: dict[str, float], rng: np.random.Generator, *, label_aware: bool = False,
               bf16: bool = False) -> torch.Tensor:  # fmt: skip
    """The weighted multi-field loss of one batch, given its unit image embeddings."""
    scale = model.temperature.exp()
    total, weight_sum = 0.0, 0.0
    for name, w in weights.items():
        cols = _draw(views, idx, name, colourless, rng)
        valid = cols >= 0
        if valid.sum() < 2:
            continue
        unique, inverse = np.unique(cols[valid], return_inverse=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            text_emb = model.encode_texts(captions, torch.from_numpy(unique))
        text_emb = F.normalize(text_emb.float(), dim=-1)
        positives = None
        if label_aware:
            positives = torch.from_numpy(_positives(views, idx[valid], name, colourless[valid], unique))
        loss = field_loss(image_emb[torch.from_numpy(valid)], text_emb, torch.from_numpy(inverse), scale, positives)
        total = total + w * loss
        weight_sum += w
    return total / weight_sum


def _param_groups(model: Trainable, weight_decay: float, lr: float, backbone_lr: float = 1.0) -> list[dict[str, Any]]:
    """Decay / no-decay groups (biases, norms and the temperature are not decayed); pretrained blocks
    get ``backbone_lr`` times the learning rate. Frozen parameters are left out."""
    backbone = model.backbone_parameters()
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim < 2 or name.endswith("logit_scale"))
        groups.setdefault((decay, id(p) in backbone), []).append(p)
    order = [(True, False), (False, False), (True, True), (False, True)]  # v1-v6 had the first two only
    return [{"params": groups[k], "weight_decay": weight_decay if k[0] else 0.0,
             "lr": lr * (backbone_lr if k[1] else 1.0)} for k in order if k in groups]  # fmt: skip


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    cfg: TrainConfig, *, resume: bool = False, quiet: bool = False, log=print, stop_after: int | None = None
) -> dict[str, Any]:
    """Train vestis-mini as ``cfg`` says; returns the last epoch's metrics.

    Writes a checkpoint every epoch and, once the last epoch is done, the model to
    ``cfg.out``/model. ``stop_after`` ends this run after that epoch (a time-boxed
    session); ``resume`` continues from the checkpoint as if never interrupted.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    t0 = time.time()
    model = build_trainable(cfg.init, cfg.model, pretrained=cfg.pretrained, freeze_blocks=cfg.freeze_blocks)
    model.train()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    image_config = model.image_config
    train_set, val_set, real_val = load_data(cfg, image_config, quiet)
    cache_dir = cache_root() / "train"
    captions = model.text_bank(train_set.strings, cache_dir, quiet)
    labels = sorted({lbl for lbl in val_set.labels if lbl})
    label_bank = model.text_bank([DEFAULT_TEMPLATES[0].format(lbl) for lbl in labels], cache_dir, quiet)
    if real_val is not None:
        real_labels = sorted(set(real_val.labels))
        real_bank = model.text_bank([DEFAULT_TEMPLATES[0].format(lbl) for lbl in real_labels], cache_dir, quiet)
    log(f"data: {len(train_set)} training items ({sum(s == 'ccp' for s in train_set.source)} street-photo "
        f"garments), {len(val_set)} validation products, "
        f"{0 if real_val is None else len(real_val)} held-out street-photo garments, "
        f"{len(train_set.strings)} unique captions [{time.time() - t0:.0f} s]")  # fmt: skip
    views = view_maker(cfg, train_set, image_config, quiet)
    cached = None
    if cfg.cache_views:
        if not cfg.freeze_blocks:
            raise InputError("cache_views needs freeze_blocks (only frozen blocks' output can be cached)")
        key = cache_key({"config": asdict(cfg.model), "augment": asdict(cfg.augment), "seed": cfg.seed,
                         "freeze_blocks": cfg.freeze_blocks, "pretrained": cfg.pretrained, "init": cfg.init,
                         "ids": train_set.ids, "bf16": cfg.bf16})  # fmt: skip
        cached = cached_trunk_features(model.trunk_features, views, len(train_set), cfg.cache_views, cfg.seed, key,
                                       cache_dir, bf16=cfg.bf16, memory_format=memory_format, quiet=quiet)  # fmt: skip
        log(f"cached {cfg.cache_views} views of every item through the frozen blocks [{time.time() - t0:.0f} s]")

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay, cfg.lr, cfg.backbone_lr), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    start_epoch, history = 0, []
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], state["history"]
        log(f"resumed from {ckpt_path} after epoch {start_epoch}")

    weights = {f: w for f, w in cfg.fields.items() if w > 0}
    last_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    for epoch in range(start_epoch, last_epoch):
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        order = rng.permutation(len(train_set))
        if cached is not None:  # which cached view each item shows this epoch (its own generator)
            view_of = np.random.default_rng(cfg.seed * 1000 + 700 + epoch).integers(cfg.cache_views, size=len(order))
        losses = []
        t_epoch = time.time()
        with progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", quiet=quiet) as advance:
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                if len(idx) < 2:
                    continue
                if cached is None:
                    x, colourless = views(idx, gen)
                    colourless = colourless.numpy()
                    x = x.contiguous(memory_format=memory_format)
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                        image_emb = model.encode_images(x)
                else:
                    feats, lost = cached
                    pick = view_of[idx]
                    f = torch.from_numpy(feats[pick, idx]).float().contiguous(memory_format=memory_format)
                    colourless = lost[pick, idx]
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                        image_emb = model.encode_features(f)
                image_emb = F.normalize(image_emb.float(), dim=-1)
                loss = batch_loss(model, image_emb, train_set.views, idx, colourless, captions, weights, rng,
                                  label_aware=cfg.label_aware, bf16=cfg.bf16)  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    model.temperature.clamp_(0, math.log(100))
                losses.append(float(loss.detach()))
                advance(1)
                if quiet and (step + 1) % 50 == 0:
                    log(f"epoch {epoch + 1} step {step + 1}/{steps_per_epoch} loss {np.mean(losses[-50:]):.3f}")
        metrics = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "first_loss": losses[0],
                   "last_loss": float(np.mean(losses[-10:])), "seconds": round(time.time() - t_epoch, 1),
                   "logit_scale": float(model.temperature.detach().exp())}  # fmt: skip
        metrics.update(zero_shot_f1(model, val_set, label_bank, labels))
        if real_val is not None:
            metrics.update(zero_shot_f1(model, real_val, real_bank, real_labels, prefix="val_real"))
        history.append(metrics)
        log(json.dumps(metrics))
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if epoch + 1 in cfg.keep_epochs:
            model.eval()
            model.save(out / f"model-epoch{epoch + 1}", {"config": asdict(cfg), "history": history})
            model.train()
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                      "config": asdict(cfg)}, ckpt_path)  # fmt: skip
    final = history[-1] if history else {}
    if len(history) < cfg.epochs:
        log(f"stopped after epoch {len(history)} of {cfg.epochs}; resume to finish")
        return final
    model.eval()
    model.save(out / "model", {"config": asdict(cfg), "history": history, "train_seconds": round(time.time() - t0)})
    return final
