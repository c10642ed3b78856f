"""``vestis train``: contrastive multi-field training, resumable and seeded.

Trains vestis-mini from scratch, or fine-tunes a checkpoint named by ``init``
(vestis-mini, a transformers CLIP / Chinese-CLIP or an open_clip one) through
the same loop (:mod:`vestis.train.models`).  Captions are prepared once (with
vestis-mini's frozen text tower, embedded once), so a step costs the image
tower plus whatever text tower is trained.  Each epoch ends with a zero-shot
check on the validation split (KAGL ``articleType``, weighted F1, the same
protocol as ``vestis eval classify``) and an atomic checkpoint; ``--resume``
continues from it with the same data order.

``stages:`` splits a run into stages trained one after another, each with its own
epochs, learning rate, warmup and frozen parts (Chinese-CLIP's recipe: the image tower
locked while the text side learns, then both towers trained); see :class:`Stage`.
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

from vestis.classify import DEFAULT_TEMPLATES, LANGUAGE_TEMPLATES
from vestis.data import shared_data_dir
from vestis.errors import InputError
from vestis.eval.metrics import classification_metrics
from vestis.models.preprocess import ImageConfig
from vestis.models.registry import cache_root
from vestis.models.vestis_mini import TEXT_TOWERS, MiniConfig
from vestis.progress import progress_bar
from vestis.train.augment import AugmentConfig, normalize
from vestis.train.captions import (
    COLOUR_FIELDS,
    DEFAULT_FIELD_WEIGHTS,
    caption_languages,
    check_languages,
    field_key,
)
from vestis.train.composite import background_bank, product_alphas
from vestis.train.data import TrainingSet, build_training_set, ccp_items, ccp_val_items, kagl_items
from vestis.train.loss import field_loss
from vestis.train.models import Trainable, build_trainable
from vestis.train.views import ViewMaker, array_digest, cache_key, cached_array, cached_trunk_features

#: what a stage may set: each a top-level setting it overrides (but ``name``), with its type
STAGE_SETTINGS: dict[str, type] = {"name": str, "epochs": int, "batch_size": int, "lr": float, "backbone_lr": float,
                                   "weight_decay": float, "warmup_steps": int, "lock_image": bool, "lock_text": bool,
                                   "freeze_blocks": int, "cache_views": int}  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """One training stage: the top-level settings it may override, as it overrides them.

    Each stage starts a new optimizer and learning-rate schedule (warmup, then cosine over the
    stage's own steps) from the weights the previous stage ended with, and fixes what it names
    (:meth:`~vestis.train.models.Trainable.freeze`): ``lock_image`` the image tower, ``lock_text``
    the text side (tower or head), ``freeze_blocks`` the first blocks of a pretrained ConvNet.
    """

    name: str
    epochs: int
    batch_size: int
    lr: float
    backbone_lr: float
    weight_decay: float
    warmup_steps: int
    lock_image: bool
    lock_text: bool
    freeze_blocks: int
    cache_views: int

    def trains(self) -> str:
        """What the stage trains, in words (the log's stage line)."""
        if self.lock_image:
            return "image tower locked, text side trained"
        if self.lock_text:
            return "text side locked, image tower trained" + (
                f" (its first {self.freeze_blocks} blocks frozen)" if self.freeze_blocks else "")  # fmt: skip
        return "both towers trained" + (f" (the image tower's first {self.freeze_blocks} blocks frozen)"
                                        if self.freeze_blocks else "")  # fmt: skip


def _stage(cfg: TrainConfig, n: int, given: Any) -> Stage:
    """Stage ``n`` (from 1) of ``cfg``: ``given`` over the top-level settings, checked."""
    where = f"stage {n}: " if cfg.stages is not None else ""
    if not isinstance(given, dict):
        raise InputError(f"{where}a stage is a mapping of settings (epochs: 2, lr: 1.0e-4, ...), not {given!r}")
    unknown = sorted(set(given) - set(STAGE_SETTINGS))
    if unknown:
        raise InputError(f"{where}unknown settings {unknown} (a stage may set {list(STAGE_SETTINGS)})")
    for key, value in given.items():
        kind = STAGE_SETTINGS[key]
        ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
        if not ok or (kind is not bool and isinstance(value, bool)):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if kind is float and isinstance(value, str) else ""
            raise InputError(f"{where}{key} must be {kind.__name__ if kind is not float else 'a number'}, "
                             f"not {value!r}{hint}")  # fmt: skip
    values = {key: given.get(key, getattr(cfg, key, None)) for key in STAGE_SETTINGS}
    values["name"] = values["name"] or f"stage {n}"
    stage = Stage(**values)
    for key, low in (("epochs", 1), ("batch_size", 2), ("warmup_steps", 0), ("freeze_blocks", 0), ("cache_views", 0)):
        if getattr(stage, key) < low:
            raise InputError(f"{where}{key} must be at least {low}, not {getattr(stage, key)}")
    if not stage.lr > 0 or stage.backbone_lr < 0 or stage.weight_decay < 0:
        raise InputError(f"{where}lr must be above 0, backbone_lr and weight_decay not below 0")
    if stage.lock_image and stage.freeze_blocks:
        raise InputError(f"{where}lock_image fixes the whole image tower; freeze_blocks is for a partly trained one")
    if stage.lock_image and stage.lock_text:
        raise InputError(f"{where}freezes everything: lock_image and lock_text leave only the temperature to train")
    return stage


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
    # Chinese-CLIP's stage 1 (LiT; issue #21): init's image tower locked, a text head trained over a new text tower
    text_tower: str | None = None  # give init's vestis-mini this frozen text tower (multilingual-e5-small), new head
    languages: list[str] = field(default_factory=lambda: ["en"])  # caption languages: en, zh (each field draws one)
    lock_image: bool = False  # image tower fixed; cache_views views (at least 1) of each item embedded once
    lock_text: bool = False  # the text side (a CLIP's text tower, vestis-mini's head) fixed
    # stages trained one after another, each overriding the settings above it may (STAGE_SETTINGS)
    stages: list[dict[str, Any]] | None = None
    threads: int | None = None
    keep_epochs: list[int] = field(default_factory=list)  # also save the model after these epochs
    fields: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FIELD_WEIGHTS))
    model: MiniConfig = field(default_factory=MiniConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        # Checked here, not only in from_yaml, so a config built in code is held to it too.
        if self.fields.get("synonym", 0) > 0 and not self.synonym_field:
            raise InputError("a 'synonym' field weight needs synonym_field: true")
        self.languages = list(check_languages(self.languages))
        if self.stages is not None and (not isinstance(self.stages, list) or not self.stages):
            raise InputError("stages: give a list of at least one stage (or leave stages out for one stage of the "
                             f"settings above), not {self.stages!r}")  # fmt: skip
        self.plan()  # every stage checked now, not an hour into the run
        if self.text_tower is not None and self.text_tower not in TEXT_TOWERS:
            raise InputError(f"text_tower must be one of {list(TEXT_TOWERS)}, not {self.text_tower!r}")

    def plan(self) -> list[Stage]:
        """The stages to train, in order: those ``stages`` lists, or one of the top-level settings."""
        return [_stage(self, n, given) for n, given in enumerate([{}] if self.stages is None else self.stages, 1)]

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

    syn, langs = cfg.synonym_field, caption_languages(cfg.languages)
    kagl_train = kagl_items(kagl, image_config, cfg.val_fraction, "train", quiet, synonym_field=syn, languages=langs)
    sources = [("kagl", limited(kagl_train))]
    ccp = _resolve(cfg.ccp)
    real_val = None
    if ccp and Path(ccp).is_file():
        items = ccp_items(ccp, image_config, cutout=cfg.ccp_cutout, quiet=quiet, synonym_field=syn,
                          holdout=cfg.ccp_holdout, languages=langs)  # fmt: skip
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
def plain_image_embeddings(model: Trainable, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Unit embeddings of un-augmented images (uint8 (n, S, S, 3)), fp32, as validation sees them."""
    was_training = model.training
    model.eval()
    cfg = model.image_config
    feats = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float().div(255)
        feats.append(F.normalize(model.encode_images(normalize(x, cfg.mean, cfg.std)), dim=-1))
    model.train(was_training)
    return torch.cat(feats) if feats else torch.zeros(0, 0)


@torch.inference_mode()
def zero_shot_f1(model: Trainable, val: TrainingSet, label_bank, labels: list[str], prefix: str = "val_article",
                 image_emb: torch.Tensor | None = None):  # fmt: skip
    """Zero-shot weighted F1 of ``val`` among ``labels``, whose prompts (in any language) ``label_bank`` holds in
    the same order. ``image_emb``: the unit embeddings of every ``val`` item, when computed already."""
    model.eval()
    index = {lbl: i for i, lbl in enumerate(labels)}
    keep = [i for i, lbl in enumerate(val.labels) if lbl in index]
    if image_emb is None:
        image = plain_image_embeddings(model, val.images[keep])
    else:
        image = image_emb[keep]
    text = F.normalize(model.encode_texts(label_bank, torch.arange(len(labels))), dim=-1)
    pred = (image @ text.T).argmax(dim=1).numpy()
    truth = np.array([index[val.labels[i]] for i in keep])
    m = classification_metrics(truth, pred, labels)
    model.train()
    if prefix == "val_article":  # the names the logs of v1-v6 carry
        return {"val_article_weighted_f1": m["weighted_f1"], "val_article_accuracy": m["accuracy"], "val_n": m["n"]}
    return {f"{prefix}_weighted_f1": m["weighted_f1"], f"{prefix}_accuracy": m["accuracy"], f"{prefix}_n": m["n"]}


# ------------------------------------------------------------------ the loop


def _options(item_views: dict[str, list[int]], field_name: str, colourless: bool, lang: str = "en") -> list[int] | None:
    """The captions of ``field_name`` in ``lang`` that are true of an item as augmented (none if colour is gone)."""
    if colourless:
        if field_name in COLOUR_FIELDS:
            return None
        if field_name == "composed":
            field_name = "composed_plain"
    return item_views.get(field_key(field_name, lang))


def _draw(views: list[dict[str, list[int]]], idx: np.ndarray, field_name: str, colourless: np.ndarray, rng,
          languages: tuple[str, ...] = ("en",)):  # fmt: skip
    """One caption index per item for ``field_name`` (-1 where the item has none).

    Each item draws a language among those with captions for the field, then a caption in
    it, so every language gets an equal share whatever its number of phrasings. (An item with
    captions in one language draws no language: English-only runs draw exactly as v1-v6 did.)
    """
    out = np.full(len(idx), -1, dtype=np.int64)
    for j, i in enumerate(idx):
        per_language = [o for o in (_options(views[i], field_name, colourless[j], lang) for lang in languages) if o]
        if not per_language:
            continue
        options = per_language[0] if len(per_language) == 1 else per_language[rng.integers(len(per_language))]
        out[j] = options[rng.integers(len(options))]
    return out


def _positives(views, idx: np.ndarray, field_name: str, colourless: np.ndarray, columns: np.ndarray,
               languages: tuple[str, ...] = ("en",)) -> np.ndarray:  # fmt: skip
    """(len(idx), len(columns)) bool: which of the batch's caption columns are true of each item.

    A caption that leaves the colour out ("a t-shirt for casual wear") is true of the
    coloured product too, so a coloured item's composed positives include those. A caption
    is true of an item in every language it has (连衣裙 beside "a photo of a dress.").
    """
    rows = []
    for i, c in zip(idx, colourless):
        true = []
        for lang in languages:
            true += _options(views[i], field_name, c, lang) or []
            if field_name == "composed" and not c:
                true += views[i].get(field_key("composed_plain", lang), [])
        rows.append(np.isin(columns, true))
    return np.stack(rows)


def batch_loss(model: Trainable, image_emb: torch.Tensor, views, idx: np.ndarray, colourless: np.ndarray, captions,
               weights: dict[str, float], rng: np.random.Generator, *, label_aware: bool = False,
               bf16: bool = False, languages: tuple[str, ...] = ("en",)) -> torch.Tensor:  # fmt: skip
    """The weighted multi-field loss of one batch, given its unit image embeddings."""
    scale = model.temperature.exp()
    total, weight_sum = 0.0, 0.0
    for name, w in weights.items():
        cols = _draw(views, idx, name, colourless, rng, languages)
        valid = cols >= 0
        if valid.sum() < 2:
            continue
        unique, inverse = np.unique(cols[valid], return_inverse=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            text_emb = model.encode_texts(captions, torch.from_numpy(unique))
        text_emb = F.normalize(text_emb.float(), dim=-1)
        positives = None
        if label_aware:
            positives = torch.from_numpy(_positives(views, idx[valid], name, colourless[valid], unique, languages))
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


def validation_checks(model: Trainable, cfg: TrainConfig, val: TrainingSet, real_val: TrainingSet | None,
                      cache_dir: Path, quiet: bool) -> list[tuple]:  # fmt: skip
    """The zero-shot checks each epoch ends with, as :func:`zero_shot_f1`'s arguments after the model.

    KAGL validation products (``val_article``) and held-out street-photo garments (``val_real``),
    prompted in English and, when training on Chinese captions, in Chinese as well (``_zh``: the
    term table's names, :meth:`~vestis.data.terms.Terms.labels`). With the image tower locked, the
    items' embeddings are computed once (cached on disk by the tower's weights and the images).
    """
    sets = [("val_article", val, "articleType")] + ([] if real_val is None else [("val_real", real_val, "ccp")])
    languages = caption_languages(cfg.languages)
    checks = []
    for prefix, items, field_name in sets:
        labels = sorted({lbl for lbl in items.labels if lbl})
        emb = None
        if model.image_locked:
            key = cache_key({"image_tower": model.image_digest(), "images": array_digest(items.images)})

            def embed(images: np.ndarray = items.images) -> np.ndarray:
                return plain_image_embeddings(model, images).numpy()

            emb = torch.from_numpy(cached_array(cache_dir / f"val-images-{key}.npy", embed))
        for lang in ("en", *(lang for lang in languages if lang != "en")):
            if lang == "en":
                prompts = [DEFAULT_TEMPLATES[0].format(lbl) for lbl in labels]
            else:
                names = languages[lang].labels(field_name, labels)
                prompts = [LANGUAGE_TEMPLATES[lang][0].format(names[lbl]) for lbl in labels]
            bank = model.text_bank(prompts, cache_dir, quiet)
            checks.append((items, bank, labels, prefix if lang == "en" else f"{prefix}_{lang}", emb))
    return checks


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def stage_features(model: Trainable, cfg: TrainConfig, stage: Stage, first: bool, train_set: TrainingSet,
                   views: ViewMaker, cache_dir: Path, memory_format, quiet: bool, log, t0: float):  # fmt: skip
    """What a stage computes once, before its first step: with ``lock_image``, the locked tower's
    embeddings of ``cache_views`` (at least 1) augmented views of every item; with ``freeze_blocks``
    and ``cache_views``, the frozen blocks' output. Returns ``(cached, n_views)``; ``cached`` is None
    when each step renders its views. ``first``: the first stage (the weights are ``init``'s)."""
    if stage.lock_image:
        n_views = max(1, stage.cache_views)
        key = cache_key({"image_tower": model.image_digest(), "images": array_digest(train_set.images),
                         "ids": train_set.ids, "augment": asdict(cfg.augment), "seed": cfg.seed, "bf16": cfg.bf16,
                         "channels_last": cfg.channels_last,
                         "scenes": [cfg.ccp, cfg.ccp_holdout] if cfg.augment.composite else None})  # fmt: skip
        cached = cached_trunk_features(model.encode_images, views, len(train_set), n_views, cfg.seed, key, cache_dir,
                                       dtype=np.float32, bf16=cfg.bf16, memory_format=memory_format, quiet=quiet,
                                       prefix="images")  # fmt: skip
        log(f"embedded {n_views} view(s) of every item with the locked image tower [{time.time() - t0:.0f} s]")
        return cached, n_views
    if not stage.cache_views:
        return None, 0
    if not stage.freeze_blocks:
        raise InputError("cache_views needs freeze_blocks or lock_image (only frozen blocks' output can be cached)")
    key = {"config": asdict(cfg.model), "augment": asdict(cfg.augment), "seed": cfg.seed,
           "freeze_blocks": stage.freeze_blocks, "pretrained": cfg.pretrained, "init": cfg.init,
           "ids": train_set.ids, "bf16": cfg.bf16}  # fmt: skip
    if not first:  # an earlier stage may have trained the blocks this one freezes
        key["frozen"] = model.frozen_digest()
    cached = cached_trunk_features(model.trunk_features, views, len(train_set), stage.cache_views, cfg.seed,
                                   cache_key(key), cache_dir, bf16=cfg.bf16, memory_format=memory_format,
                                   quiet=quiet)  # fmt: skip
    log(f"cached {stage.cache_views} views of every item through the frozen blocks [{time.time() - t0:.0f} s]")
    return cached, stage.cache_views


def _stage_of(stages: list[Stage], epochs_done: int) -> int:
    """The index of the stage whose epochs include the ``epochs_done``-th (0 for none done)."""
    end = 0
    for k, stage in enumerate(stages):
        end += stage.epochs
        if epochs_done <= end:
            return k
    return len(stages) - 1


def train(
    cfg: TrainConfig, *, resume: bool = False, quiet: bool = False, log=print, stop_after: int | None = None
) -> dict[str, Any]:
    """Train as ``cfg`` says, stage after stage; returns the last epoch's metrics.

    Writes a checkpoint every epoch (recording the stage and the epoch) and, once the last
    epoch is done, the model to ``cfg.out``/model. ``stop_after`` ends this run after that
    epoch, counted over all stages (a time-boxed session); ``resume`` continues from the
    checkpoint, in the stage it was written in, as if never interrupted.
    """
    stages, staged = cfg.plan(), cfg.stages is not None
    total = sum(stage.epochs for stage in stages)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    t0 = time.time()
    model = build_trainable(cfg.init, cfg.model, pretrained=cfg.pretrained, text_tower=cfg.text_tower)
    model.train()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    image_config = model.image_config
    train_set, val_set, real_val = load_data(cfg, image_config, quiet)
    cache_dir = cache_root() / "train"
    captions = model.text_bank(train_set.strings, cache_dir, quiet)
    log(f"data: {len(train_set)} training items ({sum(s == 'ccp' for s in train_set.source)} street-photo "
        f"garments), {len(val_set)} validation products, "
        f"{0 if real_val is None else len(real_val)} held-out street-photo garments, "
        f"{len(train_set.strings)} unique captions ({'+'.join(cfg.languages)}) [{time.time() - t0:.0f} s]")  # fmt: skip
    views = view_maker(cfg, train_set, image_config, quiet)

    start_epoch, history, state = 0, [], None
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        start_epoch, history = state["epoch"], state["history"]
        k = _stage_of(stages, start_epoch)
        if state.get("stage", 1) != k + 1:
            raise InputError(f"{ckpt_path} was written in stage {state['stage']} after epoch {start_epoch}, but "
                             f"this config's stages put epoch {start_epoch} in stage {k + 1}: train with the config "
                             "it was written with, or --restart")  # fmt: skip
        where = f" (stage {k + 1}/{len(stages)}, {stages[k].name})" if staged else ""
        log(f"resumed from {ckpt_path} after epoch {start_epoch}{where}")

    weights = {f: w for f, w in cfg.fields.items() if w > 0}
    languages = tuple(cfg.languages)
    last_epoch = total if stop_after is None else min(total, stop_after)
    end = 0
    for k, stage in enumerate(stages):
        begin, end = end, end + stage.epochs
        if end <= start_epoch or begin >= last_epoch:
            continue
        model.freeze(image=stage.lock_image, text=stage.lock_text, blocks=stage.freeze_blocks)
        if staged:
            log(f"stage {k + 1}/{len(stages)} ({stage.name}): {stage.epochs} epochs, lr {stage.lr:g}, {stage.trains()}")
        checks = validation_checks(model, cfg, val_set, real_val, cache_dir, quiet)
        cached, n_views = stage_features(model, cfg, stage, k == 0, train_set, views, cache_dir, memory_format, quiet,
                                         log, t0)  # fmt: skip
        optimizer = torch.optim.AdamW(_param_groups(model, stage.weight_decay, stage.lr, stage.backbone_lr),
                                      lr=stage.lr)  # fmt: skip
        steps_per_epoch = math.ceil(len(train_set) / stage.batch_size)
        total_steps = stage.epochs * steps_per_epoch

        def lr_at(step: int, stage: Stage = stage, total_steps: int = total_steps) -> float:
            if step < stage.warmup_steps:
                return (step + 1) / stage.warmup_steps
            progress = (step - stage.warmup_steps) / max(1, total_steps - stage.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        if state is not None and begin < start_epoch:  # resumed inside this stage: its optimizer as it was
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])

        for epoch in range(max(begin, start_epoch), min(end, last_epoch)):
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            rng = np.random.default_rng(cfg.seed * 1000 + epoch)
            order = rng.permutation(len(train_set))
            if cached is not None:  # which cached view each item shows this epoch (its own generator)
                view_of = np.random.default_rng(cfg.seed * 1000 + 700 + epoch).integers(n_views, size=len(order))
            losses = []
            t_epoch = time.time()
            name = f"stage {k + 1}/{len(stages)} epoch {epoch - begin + 1}/{stage.epochs}" if staged else \
                f"epoch {epoch + 1}/{total}"  # fmt: skip
            with progress_bar(steps_per_epoch, name, quiet=quiet, unit="steps") as advance:
                for step in range(steps_per_epoch):
                    idx = order[step * stage.batch_size : (step + 1) * stage.batch_size]
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
                        f = torch.from_numpy(feats[pick, idx]).float()
                        colourless = lost[pick, idx]
                        if model.image_locked:  # the cached embeddings themselves
                            image_emb = f
                        else:
                            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                                image_emb = model.encode_features(f.contiguous(memory_format=memory_format))
                    image_emb = F.normalize(image_emb.float(), dim=-1)
                    loss = batch_loss(model, image_emb, train_set.views, idx, colourless, captions, weights, rng,
                                      label_aware=cfg.label_aware, bf16=cfg.bf16, languages=languages)  # fmt: skip
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
                        log(f"{name} step {step + 1}/{steps_per_epoch} loss {np.mean(losses[-50:]):.3f}")
            metrics = {"epoch": epoch + 1, **({"stage": k + 1, "stage_epoch": epoch - begin + 1} if staged else {}),
                       "loss": float(np.mean(losses)), "first_loss": losses[0],
                       "last_loss": float(np.mean(losses[-10:])), "seconds": round(time.time() - t_epoch, 1),
                       "logit_scale": float(model.temperature.detach().exp())}  # fmt: skip
            for check in checks:
                metrics.update(zero_shot_f1(model, *check))
            history.append(metrics)
            log(json.dumps(metrics))
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if epoch + 1 in cfg.keep_epochs:
                model.eval()
                model.save(out / f"model-epoch{epoch + 1}", {"config": asdict(cfg), "history": history})
                model.train()
            _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "stage": k + 1,
                          "stage_epoch": epoch - begin + 1, "history": history, "config": asdict(cfg)},
                         ckpt_path)  # fmt: skip
    final = history[-1] if history else {}
    if len(history) < total:
        k = _stage_of(stages, len(history))
        where = f" (stage {k + 1}/{len(stages)})" if staged else ""
        log(f"stopped after epoch {len(history)} of {total}{where}; resume to finish")
        return final
    model.eval()
    model.save(out / "model", {"config": asdict(cfg), "history": history, "train_seconds": round(time.time() - t0)})
    return final
