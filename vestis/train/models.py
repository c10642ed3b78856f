"""What ``vestis train`` trains: vestis-mini from scratch, or any loaded checkpoint fine-tuned.

One training loop serves both.  It sees a :class:`Trainable`: an image encoder,
a text encoder over *banks* of caption strings (prepared once, indexed per
step), a learnable temperature and a way to save.  The kinds:

- vestis-mini with its frozen MiniLM text tower: every caption's sentence
  embedding is computed once (cached on disk), so a step runs the image tower
  and a small head only;
- vestis-mini with a text tower trained from scratch, and
- transformers ``CLIPModel`` / ``ChineseCLIPModel`` checkpoints (FashionCLIP,
  Chinese-CLIP, and open_clip ones, which vestis converts to ``CLIPModel`` on
  load): captions are tokenised once and both towers are trained.  A fine-tuned
  checkpoint is saved in the transformers format, next to its tokenizer and
  preprocessor config, so vestis, transformers and ONNX export load it as any other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vestis.errors import InputError, VestisError
from vestis.models.preprocess import ImageConfig
from vestis.models.text import TextTokenizer
from vestis.models.vestis_mini import (
    TEXT_DIM,
    MiniConfig,
    MiniModel,
    PretrainedImageTower,
    SentenceEncoder,
    sentence_tokenizer,
)
from vestis.progress import progress_bar


class TokenBank:
    """Caption strings tokenised once; ``batch(idx)`` gives ids and mask trimmed to the longest."""

    def __init__(self, strings: list[str], tokenizer: TextTokenizer) -> None:
        ids, mask = tokenizer(strings) if strings else (np.zeros((0, 1), np.int64), np.zeros((0, 1), np.int64))
        self.ids, self.mask = torch.from_numpy(ids), torch.from_numpy(mask)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask[idx]
        width = max(1, int(mask.sum(dim=1).max()))
        return self.ids[idx, :width], mask[:, :width]


def module_digest(modules: list[nn.Module]) -> str:
    """A digest of ``modules``' weights and buffers (what features cached from them depend on)."""
    h = hashlib.sha256()
    for module in modules:
        for name, t in module.state_dict().items():
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


class Trainable(nn.Module):
    """The interface the loop trains; subclasses hold the model."""

    image_config: ImageConfig
    #: set by :meth:`freeze`: the image tower is fixed (no gradient, eval mode), so its
    #: embeddings may be computed once (Chinese-CLIP's stage 1, LiT)
    image_locked: bool = False
    #: set by :meth:`freeze`: the text side (tower or head) is fixed
    text_locked: bool = False

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_modules(self) -> list[nn.Module]:
        """The modules that make the image embedding."""
        raise NotImplementedError

    def text_modules(self) -> list[nn.Module]:
        """The trainable modules that make the text embedding (a frozen sentence encoder is not one)."""
        raise NotImplementedError

    def freeze(self, *, image: bool = False, text: bool = False, blocks: int = 0) -> None:
        """Fix the image tower (``image``), the text side (``text``) or, where the image tower is a
        pretrained ConvNet, its stem and first ``blocks`` blocks; whatever is not named is trained
        again (one training stage's choice, made afresh for the next). Fixed modules have no
        gradient and stay in eval mode (BatchNorm statistics, no dropout) even in training."""
        if blocks:
            raise InputError("freeze_blocks is for vestis-mini's pretrained image tower; this model has none")
        self._fix(image, text)

    def _fix(self, image: bool, text: bool) -> None:
        self.image_locked, self.text_locked = image, text
        for module in (*self.image_modules(), *self.text_modules()):
            module.requires_grad_(True)
        for module in self.fixed_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def fixed_modules(self) -> list[nn.Module]:
        """The modules :meth:`freeze` fixed."""
        return [*(self.image_modules() if self.image_locked else []),
                *(self.text_modules() if self.text_locked else [])]  # fmt: skip

    def train(self, mode: bool = True) -> Trainable:
        super().train(mode)
        for module in self.fixed_modules():
            module.eval()
        return self

    def image_digest(self) -> str:
        """A digest of the image tower's weights and buffers (what cached image embeddings depend on)."""
        return module_digest(self.image_modules())

    def text_bank(self, strings: list[str], cache_dir: Path, quiet: bool) -> Any:
        """Whatever :meth:`encode_texts` needs to embed any of ``strings`` by index."""
        raise NotImplementedError

    def encode_texts(self, bank: Any, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def temperature(self) -> nn.Parameter:
        raise NotImplementedError

    def save(self, directory: Path, training: dict[str, Any]) -> Path:
        raise NotImplementedError

    def backbone_parameters(self) -> set[int]:
        """ids of the trainable parameters that started from pretrained weights (their own learning rate)."""
        return set()


class MiniTrainable(Trainable):
    """vestis-mini; with a pretrained image tower, its first ``freeze_blocks`` blocks (and stem) stay fixed.

    Frozen blocks run in eval mode (ImageNet's BatchNorm statistics) without
    gradients, so :meth:`trunk_features` may be computed once and cached, and
    :meth:`encode_features` gives the same embedding from the cached features.
    """

    def __init__(self, model: MiniModel, freeze_blocks: int = 0) -> None:
        super().__init__()
        self.model = model
        self.image_config = model.cfg.image_config()
        self.freeze_blocks = 0
        self._sentence_encoders: dict = {}  # the frozen encoder, loaded once for every bank (not a submodule)
        self.freeze(blocks=freeze_blocks)

    def freeze(self, *, image: bool = False, text: bool = False, blocks: int = 0) -> None:
        if blocks and not isinstance(self.model.image_tower, PretrainedImageTower):
            raise InputError("freeze_blocks needs a pretrained image tower (model: image_tower: efficientnet-...)")
        if blocks and image:
            raise InputError("lock_image fixes the whole image tower; freeze_blocks is for a partly trained one")
        self.freeze_blocks = blocks
        self._fix(image, text)

    def _frozen(self) -> nn.Module:
        net = self.model.image_tower.net
        return nn.ModuleList([net.stem, *net.blocks[: self.freeze_blocks]])

    def fixed_modules(self) -> list[nn.Module]:
        return [*super().fixed_modules(), *([self._frozen()] if self.freeze_blocks else [])]

    def frozen_digest(self) -> str:
        """A digest of the frozen blocks' weights (what their cached output depends on)."""
        return module_digest([self._frozen()])

    def image_modules(self) -> list[nn.Module]:
        return [self.model.image_tower]

    def text_modules(self) -> list[nn.Module]:
        return [self.model.text_encoder if self.model.cfg.text_tower == "scratch" else self.model.text_head]

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen blocks' output (no gradient)."""
        with torch.no_grad():
            return self.model.image_tower.trunk(x, self.freeze_blocks)

    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.image_tower.from_trunk(features, self.freeze_blocks)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.freeze_blocks:
            return self.encode_features(self.trunk_features(x))
        return self.model.image_tower(x)

    def backbone_parameters(self) -> set[int]:
        """ids of the trainable parameters that started from pretrained weights (their own learning rate)."""
        if not isinstance(self.model.image_tower, PretrainedImageTower):
            return set()
        return {id(p) for p in self.model.image_tower.net.parameters() if p.requires_grad}

    def text_bank(self, strings: list[str], cache_dir: Path, quiet: bool) -> Any:
        cfg = self.model.cfg
        if cfg.text_tower == "scratch":
            return TokenBank(strings, sentence_tokenizer(cfg.context_length, cfg.text_model))
        return sentence_embeddings(strings, cfg, cache_dir, quiet, memo=self._sentence_encoders)

    def encode_texts(self, bank: Any, idx: torch.Tensor) -> torch.Tensor:
        if isinstance(bank, TokenBank):
            return self.model.text_encoder(*bank.batch(idx))
        # A small head over fixed sentence embeddings: fp32 even under the loop's bf16
        # autocast (cheap, and the shipped weights were trained that way).
        with torch.autocast("cpu", enabled=False):
            return self.model.text_head(bank[idx])

    @property
    def temperature(self) -> nn.Parameter:
        return self.model.logit_scale

    def save(self, directory: Path, training: dict[str, Any]) -> Path:
        return self.model.save(directory, training=training)


class HFTrainable(Trainable):
    """A transformers two-tower model (``get_image_features`` / ``get_text_features``), both towers trained."""

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, image_config: ImageConfig,
                 token_type_ids: bool = False, open_clip_config: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_config = image_config
        self.token_type_ids = token_type_ids
        self.open_clip_config = open_clip_config  # set: save in open_clip's format, as loaded

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        from vestis.models.torch_backend import _features

        return _features(self.model.get_image_features(pixel_values=x))

    def image_modules(self) -> list[nn.Module]:
        return [self.model.vision_model, self.model.visual_projection]

    def text_modules(self) -> list[nn.Module]:
        return [self.model.text_model, self.model.text_projection]

    def text_bank(self, strings: list[str], cache_dir: Path, quiet: bool) -> Any:
        return TokenBank(strings, self.tokenizer)

    def encode_texts(self, bank: Any, idx: torch.Tensor) -> torch.Tensor:
        from vestis.models.torch_backend import _features

        ids, mask = bank.batch(idx)
        kwargs = {"input_ids": ids, "attention_mask": mask}
        if self.token_type_ids:
            kwargs["token_type_ids"] = torch.zeros_like(ids)
        return _features(self.model.get_text_features(**kwargs))

    @property
    def temperature(self) -> nn.Parameter:
        return self.model.logit_scale

    def save(self, directory: Path, training: dict[str, Any]) -> Path:
        from dataclasses import replace

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "vestis_training.json").write_text(json.dumps(training, indent=2, default=str))
        if self.open_clip_config is not None:  # a Marqo-FashionCLIP-style checkpoint stays one
            from vestis.models.open_clip_format import save_open_clip

            return save_open_clip(self.model, out, self.open_clip_config)
        self.model.save_pretrained(str(out))
        self.tokenizer.tokenizer.model_max_length = self.tokenizer.context_length
        self.tokenizer.tokenizer.save_pretrained(str(out))
        # transformers crops with floor rounding; open_clip (torchvision) rounds: at most one pixel apart
        image_config = replace(self.image_config, crop_rounding="floor")
        (out / "preprocessor_config.json").write_text(json.dumps(image_config.to_hf_dict(), indent=2))
        return out


def with_text_tower(model: MiniModel, tower: str) -> MiniModel:
    """``model``'s image tower and temperature under a new, untrained text side of ``tower``.

    The image tower fixes the target space; a head trained for one sentence encoder means
    nothing over another's embeddings, so the text side starts afresh (the same ``tower``:
    ``model`` itself, its head kept).
    """
    if tower == model.cfg.text_tower:
        return model
    new = MiniModel(replace(model.cfg, text_tower=tower))
    new.image_tower.load_state_dict(model.image_tower.state_dict())
    with torch.no_grad():
        new.logit_scale.copy_(model.logit_scale)
    return new


def build_trainable(
    init: str | None,
    model_cfg: MiniConfig,
    *,
    pretrained: bool = True,
    freeze_blocks: int = 0,
    text_tower: str | None = None,
    lock_image: bool = False,
    lock_text: bool = False,
) -> Trainable:
    """A fresh vestis-mini (``init`` None), or the checkpoint ``init`` names, ready to train.

    A fresh vestis-mini with an EfficientNet-Lite image tower starts from its ImageNet
    weights (``pretrained``) and keeps its first ``freeze_blocks`` blocks fixed.
    ``text_tower`` gives a vestis-mini ``init`` that text tower with a new head
    (:func:`with_text_tower`); ``lock_image`` and ``lock_text`` fix a tower (:meth:`Trainable.freeze`).
    """
    trainable = _build(init, model_cfg, pretrained=pretrained, text_tower=text_tower)
    trainable.freeze(image=lock_image, text=lock_text, blocks=freeze_blocks)
    return trainable


def _build(init: str | None, model_cfg: MiniConfig, *, pretrained: bool, text_tower: str | None) -> Trainable:
    if init is None:
        if text_tower is not None:
            raise InputError("text_tower replaces the text tower of the model init names; a new vestis-mini "
                             "takes its text tower from model: text_tower")  # fmt: skip
        model = MiniModel(model_cfg)
        if isinstance(model.image_tower, PretrainedImageTower) and pretrained:
            from vestis.models.efficientnet import load_imagenet_weights

            load_imagenet_weights(model.image_tower.net)
        return MiniTrainable(model)
    from vestis.models import registry
    from vestis.models.loading import detect_format, load_encoder, resolve
    from vestis.models.torch_backend import TorchEncoder

    try:
        _, directory, _ = resolve(init)
        if directory is not None and detect_format(directory) == registry.VESTIS:
            # As saved, not through its encoder: an encoder makes its model ready for inference only
            # (BatchNorms folded into the convolutions), which training must not start from.
            model = MiniModel.load(directory)
            return MiniTrainable(with_text_tower(model, text_tower or model.cfg.text_tower))
        enc = load_encoder(init, runtime="torch", precision="fp32")
    except VestisError as exc:
        raise type(exc)(f"cannot fine-tune {init}: {exc}") from None
    if text_tower is not None:
        raise InputError(f"text_tower replaces a vestis-mini's text tower; {init} is not a vestis-mini")
    if isinstance(enc, TorchEncoder):
        return HFTrainable(enc.model, enc.tokenizer, enc.image_config, token_type_ids=enc._token_type_ids,
                           open_clip_config=enc.open_clip_config)  # fmt: skip
    raise InputError(f"{init}: {enc.runtime} models cannot be fine-tuned by vestis train (a transformers "
                     "CLIP/Chinese-CLIP, an open_clip ViT checkpoint or vestis-mini can)")  # fmt: skip


def sentence_embeddings(
    texts: list[str], cfg: MiniConfig, cache_dir: Path, quiet: bool, memo: dict | None = None
) -> torch.Tensor:
    """Frozen sentence-encoder embeddings of ``texts`` (cached on disk by content).

    ``memo`` keeps the encoder once loaded, for the next call (multilingual-e5-small takes
    seconds to dequantise).
    """
    # the MiniLM key is the one caches were written under before there was a second tower
    tower = [] if cfg.text_tower == "minilm" else [cfg.text_tower]
    key = hashlib.sha256(json.dumps([cfg.text_model, cfg.context_length, texts, *tower]).encode()).hexdigest()[:24]
    path = cache_dir / f"sentences-{key}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path))
    memo = {} if memo is None else memo
    which = (cfg.text_model, cfg.text_tower, cfg.context_length)
    if which not in memo:
        memo[which] = (SentenceEncoder(cfg.text_model, cfg.text_tower),
                       sentence_tokenizer(cfg.context_length, cfg.text_model, cfg.text_tower))  # fmt: skip
    encoder, tokenizer = memo[which]
    out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
    order = np.argsort([len(t) for t in texts])
    with progress_bar(len(texts), "embedding captions", quiet=quiet) as advance, torch.inference_mode():
        for start in range(0, len(texts), 256):
            idx = order[start : start + 256]
            ids, mask = tokenizer([texts[i] for i in idx])
            out[idx] = encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            advance(len(idx))
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return torch.from_numpy(out)
