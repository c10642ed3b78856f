"""``load_encoder``: one entry point from a name, a directory or a hub id to an Encoder."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from vestis.errors import InputError, ModelFormatError, ModelNotFoundError
from vestis.models import registry
from vestis.models.base import Encoder
from vestis.models.preprocess import DEFAULT_MAX_IMAGE_PIXELS, ImageConfig
from vestis.models.registry import ModelSpec
from vestis.models.text import (
    CLIP_CONTEXT_LENGTH,
    TextTokenizer,
    clip_tokenizer_from_bpe,
    load_hf_tokenizer,
    open_clip_clean,
)

RUNTIMES = ("torch", "onnx", "open_clip")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def detect_format(directory: Path) -> str:
    """Which format the files in ``directory`` are in."""
    d = Path(directory)
    if (d / "config.json").is_file() and any((d / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        try:
            model_type = json.loads((d / "config.json").read_text()).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{d / 'config.json'}: not valid JSON ({exc})") from None
        if model_type == "clip":
            return registry.HF_CLIP
        if model_type == "chinese_clip":
            return registry.CHINESE_CLIP
        raise ModelFormatError(f"{d}: config.json has model_type {model_type!r}; expected 'clip' or 'chinese_clip'")
    if (d / "open_clip_config.json").is_file():
        return registry.OPEN_CLIP
    if (d / "vestis_config.json").is_file():
        return registry.VESTIS
    graphs = list(d.glob("*.onnx")) + list(d.glob("onnx/*.onnx"))
    if any(p.name.startswith("vision_model") or p.name == "model.onnx" for p in graphs):
        return registry.ONNX
    raise ModelFormatError(
        f"{d}: not a model directory vestis can read; expected a transformers CLIP/Chinese-CLIP "
        "directory (config.json + weights), an open_clip one (open_clip_config.json + weights) "
        "or ONNX graphs (onnx/vision_model.onnx + onnx/text_model.onnx)"
    )


def resolve(
    name_or_path: str | os.PathLike[str], download: bool | None = None
) -> tuple[str, Path | None, ModelSpec | None]:
    """(display name, local directory or None for built-ins, registry spec if named)."""
    if download is None:
        download = os.environ.get("VESTIS_DOWNLOAD", "") == "1"
    text = str(name_or_path)
    if not text.strip():
        raise ModelNotFoundError("empty model name")
    spec = registry.REGISTRY.get(text)
    if spec is not None:
        if spec.format == registry.BUILTIN:
            return spec.name, None, spec
        found, searched = registry.locate(spec)
        if found is not None:
            return spec.name, found, spec
        if download and spec.hub_id:
            return spec.name, _download(spec.hub_id), spec
        where = "\n  ".join(str(p) for p in searched)
        files = ", ".join(" or ".join(a) for a in spec.files)
        raise ModelNotFoundError(
            f"model {spec.name!r} is not on this machine. Place the files of {spec.hub_id} "
            f"({files}) in one of:\n  {where}\nor set VESTIS_MODELS_DIR to a folder holding "
            f"'{spec.name}/'. This machine does not download unless asked (download=True, "
            "--download or VESTIS_DOWNLOAD=1) where a hub is reachable."
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return path.name, path, None
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file; point vestis at the model's directory")
    if _HUB_ID.match(text):
        cached = registry.hub_cache_dir(text)
        if cached is not None:
            return text, cached, None
        if download:
            return text, _download(text), None
        raise ModelNotFoundError(
            f"{text!r} is neither a registered model nor a local directory, and it is not in the "
            "Hugging Face cache; pass download=True (--download) where a hub is reachable"
        )
    known = ", ".join(sorted(registry.REGISTRY))
    raise ModelNotFoundError(f"unknown model {text!r}: not a registered name ({known}) nor a directory")


def _download(hub_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id))
    except Exception as exc:
        raise ModelNotFoundError(f"could not download {hub_id!r}: {type(exc).__name__}: {exc}") from None


def load_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    runtime: str | None = None,
    precision: str = "fp32",
    device: str = "cpu",
    batch_size: int = 32,
    threads: int | None = None,
    download: bool | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Encoder:
    """Load an encoder from a registry name, a local directory or a hub id.

    ``runtime`` picks the backend (``torch``, ``onnx`` or ``open_clip``); by default
    the one the files are published for.  ``threads`` bounds intra-op threads
    for this encoder; ``max_image_pixels`` is the decompression-bomb limit.
    """
    if runtime is not None and runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if precision not in ("fp32", "int8"):
        raise InputError(f"unknown precision {precision!r}; use fp32 or int8")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads}")
    name, directory, spec = resolve(name_or_path or registry.default_model(), download)
    common: dict[str, Any] = dict(batch_size=batch_size, threads=threads)
    if directory is None:
        from vestis.models.builtin import tiny_random_encoder

        if runtime not in (None, "torch") or precision != "fp32":
            raise InputError(
                f"{name} is built in memory and runs on torch fp32 only; export it first "
                "(vestis.export.export_onnx) to run it on onnxruntime"
            )

        enc = tiny_random_encoder(**common)
    else:
        fmt = spec.format if spec is not None else detect_format(directory)
        if runtime == "onnx" or (runtime is None and fmt == registry.ONNX) or precision == "int8":
            enc = _load_onnx(directory, name, spec, precision=precision, **common)
        elif fmt == registry.VESTIS and runtime in (None, "torch"):
            from vestis.models.vestis_mini import load_vestis_mini

            enc = load_vestis_mini(directory, name, **common)
        elif runtime == "open_clip" or fmt == registry.OPEN_CLIP:
            enc = _load_open_clip(directory, name, spec, force_native=runtime == "open_clip", device=device, **common)
        elif fmt in (registry.HF_CLIP, registry.CHINESE_CLIP):
            enc = _load_transformers(directory, name, spec, fmt, device=device, **common)
        else:
            raise ModelFormatError(f"{directory}: format {fmt!r} cannot run on runtime {runtime!r}")
    enc.max_image_pixels = max_image_pixels
    enc.fingerprint = _fingerprint(name, directory, enc.runtime)
    return enc


def _fingerprint(name: str, directory: Path | None, runtime: str) -> str:
    """Identifies the weights and runtime (for caches): file names, sizes and mtimes."""
    h = hashlib.sha256(f"{name}|{runtime}".encode())
    if directory is not None:
        for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
            st = path.stat()
            h.update(f"|{path.relative_to(directory)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _context_length(spec: ModelSpec | None, tokenizer: Any, fallback: int) -> int:
    if spec is not None and spec.context_length:
        return spec.context_length
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000:
        return min(limit, fallback)
    return fallback


def _load_transformers(
    directory: Path, name: str, spec: ModelSpec | None, fmt: str, *, device: str, **common: Any
) -> Encoder:
    from transformers import ChineseCLIPModel, CLIPModel

    from vestis.models.hf import quiet_from_pretrained
    from vestis.models.torch_backend import TorchEncoder

    cls = CLIPModel if fmt == registry.HF_CLIP else ChineseCLIPModel
    try:
        model = quiet_from_pretrained(cls, str(directory))
    except Exception as exc:  # corrupt weights, shape mismatches, bad config
        raise ModelFormatError(f"{directory}: cannot load {cls.__name__} ({type(exc).__name__}: {exc})") from None
    text_cfg = model.config.text_config
    fallback = 52 if fmt == registry.CHINESE_CLIP else int(text_cfg.max_position_embeddings)
    hf_tok = load_hf_tokenizer(directory)
    ctx = min(_context_length(spec, hf_tok, fallback), int(text_cfg.max_position_embeddings))
    tokenizer = TextTokenizer(hf_tok, ctx)
    image_config = _image_config(directory)
    return TorchEncoder(
        model,
        name=name,
        tokenizer=tokenizer,
        image_config=image_config,
        device=device,
        uses_token_type_ids=fmt == registry.CHINESE_CLIP,
        **common,
    )


def _image_config(directory: Path) -> ImageConfig:
    for candidate in (directory / "preprocessor_config.json", directory / "onnx" / "preprocessor_config.json"):
        if candidate.is_file():
            try:
                return ImageConfig.from_hf_file(candidate)
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
                raise ModelFormatError(f"{candidate}: unreadable preprocessor config ({exc})") from None
    if (directory / "open_clip_config.json").is_file():
        from vestis.models import open_clip_format

        cfg = open_clip_format.read_config(directory)
        image_size = cfg["model_cfg"].get("vision_cfg", {}).get("image_size", 224)
        return ImageConfig.from_open_clip(image_size, cfg.get("preprocess_cfg", {}))
    raise ModelFormatError(
        f"{directory}: no preprocessor_config.json (or open_clip_config.json) to say how images are prepared"
    )


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")


def _dir_tokenizer(directory: Path, context_length: int) -> TextTokenizer:
    """The directory's own tokenizer files (or its onnx/ folder's), else CLIP's bundled BPE."""
    for folder in (directory, directory / "onnx"):
        if any((folder / f).is_file() for f in _TOKENIZER_FILES):
            return TextTokenizer(load_hf_tokenizer(folder, context_length), context_length)
    return TextTokenizer(clip_tokenizer_from_bpe(context_length), context_length)


def _load_open_clip(
    directory: Path, name: str, spec: ModelSpec | None, *, force_native: bool, device: str, **common: Any
) -> Encoder:
    from vestis.models import open_clip_format
    from vestis.models.torch_backend import TorchEncoder

    cfg = open_clip_format.read_config(directory)
    text_cfg = cfg["model_cfg"].get("text_cfg", {})
    ctx = int(text_cfg.get("context_length", CLIP_CONTEXT_LENGTH))
    image_size = cfg["model_cfg"].get("vision_cfg", {}).get("image_size", 224)
    try:
        image_config = ImageConfig.from_open_clip(image_size, cfg.get("preprocess_cfg", {}))
    except ValueError as exc:
        raise ModelFormatError(f"{directory}: {exc}") from None
    reason = open_clip_format.unsupported_reason(cfg["model_cfg"])
    if force_native or reason:
        from vestis.models.open_clip_native import OpenClipEncoder

        return OpenClipEncoder(directory, name=name, image_config=image_config, device=device, why=reason, **common)
    model, _ = open_clip_format.load_as_clip_model(directory)
    tokenizer = TextTokenizer(clip_tokenizer_from_bpe(ctx), ctx, clean=open_clip_clean)
    enc = TorchEncoder(model, name=name, tokenizer=tokenizer, image_config=image_config, device=device, **common)
    enc.runtime = "torch fp32 (open_clip weights converted to CLIPModel)"
    return enc


def _load_onnx(directory: Path, name: str, spec: ModelSpec | None, *, precision: str, **common: Any) -> Encoder:
    from vestis.models.onnx_backend import OnnxEncoder, read_meta

    meta = read_meta(directory)
    ctx = int(
        meta.get("context_length") or (spec.context_length if spec and spec.context_length else CLIP_CONTEXT_LENGTH)
    )
    tokenizer = _dir_tokenizer(directory, ctx)
    if meta.get("image_config"):
        saved = dict(meta["image_config"])
        for key in ("resize_hw", "crop_hw", "mean", "std"):
            if saved.get(key) is not None:
                saved[key] = tuple(saved[key])
        image_config = ImageConfig(**saved)
    else:
        image_config = _image_config(directory)
    return OnnxEncoder(
        directory,
        name=name,
        tokenizer=tokenizer,
        image_config=image_config,
        precision=precision,
        **common,
    )
