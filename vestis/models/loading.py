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


#: Bundled models whose bf16 parity with fp32 is checked in CI on their real weights
#: (tests/models/test_speed.py: KAGL images and titles, cosine >= 0.99, zero-shot
#: top-1 agreement >= 99%), so bf16 may be their default where the CPU has bf16.
#: v6 passed (image cosine min 0.9997). v7's EfficientNet-Lite0 failed with its BatchNorms
#: cast to bf16 (image cosine min 0.9885 on 300 KAGL products) and passes since they are folded
#: into the convolutions in fp32 before the cast (min 0.9965, mean 0.9996, top-1 agreement 100%);
#: vestis-mini-zh runs the same image tower, and its text side stays fp32 either way.
BF16_VERIFIED: frozenset[str] = frozenset({"vestis-mini", "vestis-mini-zh"})


def default_precision(directory: Path | None, name: str, runtime: str) -> str:
    """The precision a model runs in when none is asked for: the fastest one whose parity holds.

    The rule, in order:

    * ONNX graphs: int8 when the directory's ``vestis_onnx.json`` records that
      the int8 graphs passed parity with the torch fp32 model (``vestis export
      onnx --int8`` measures it: cosine >= 0.99 for every image and text, zero-shot
      top-1 agreement >= 99%), or when int8 graphs are all there is; else fp32.
      Published int8 graphs with no such record run only when asked for.
    * torch: bf16 for the bundled models in :data:`BF16_VERIFIED` on a CPU with
      native bf16 (AVX512-BF16 or AMX); fp32 for every other checkpoint, whose
      bf16 parity nobody has measured (``precision="bf16"`` asks for it;
      ``vestis export onnx`` reports it).
    * open_clip itself: fp32.
    """
    if runtime == "onnx" and directory is not None:
        from vestis.models.onnx_backend import available_precisions

        available = available_precisions(directory)
        if "int8" in available and (_int8_parity_passed(directory) or "fp32" not in available):
            return "int8"
        return "fp32"
    if runtime == "torch" and name in BF16_VERIFIED and directory == registry.BUNDLED_DIR / name:
        from vestis.models.runtime import bf16_supported

        if bf16_supported():
            return "bf16"
    return "fp32"


def _int8_parity_passed(directory: Path) -> bool:
    """Whether ``directory``'s vestis export record says its int8 graphs passed parity."""
    from vestis.models.onnx_backend import read_meta

    return read_meta(directory).get("parity", {}).get("onnx int8", {}).get("passed") is True


def verified_int8(directory: Path) -> bool:
    """Whether ``directory`` holds int8 graphs whose parity vestis measured and passed."""
    from vestis.models.onnx_backend import available_precisions

    return _int8_parity_passed(directory) and "int8" in available_precisions(directory)


def _text_onnx(directory: Path) -> bool:
    """Whether a vestis-mini folder holds a text-tower ONNX export that passed parity and matches its files."""
    from vestis.models.mini_text_onnx import text_onnx_verified

    return text_onnx_verified(directory)


def load_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    runtime: str | None = None,
    precision: str | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    threads: int | None = None,
    decode_threads: int | None = None,
    download: bool | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Encoder:
    """Load an encoder from a registry name, a local directory or a hub id.

    ``runtime`` picks the backend (``torch``, ``onnx`` or ``open_clip``); by default
    the one the files are published for, except that a torch checkpoint with a
    vestis int8 export in its ``onnx/`` folder whose recorded parity passed runs
    that (the fastest verified way; on the CPU, when no precision is asked for),
    and that vestis-mini runs its text tower on onnxruntime where its folder holds
    a text-tower export whose recorded parity passed and whose files still match
    (``vestis export text-tower``; no torch import until an image is encoded).
    ``precision`` (``fp32``, ``bf16`` on torch, ``int8`` on onnx): by default the
    fastest one whose parity with fp32 holds for this model (:func:`default_precision`).  ``threads`` bounds
    intra-op threads for this encoder, ``decode_threads`` the image-decoding
    workers that run beside it (see :mod:`vestis.models.runtime`);
    ``max_image_pixels`` is the decompression-bomb limit.
    """
    from vestis.models.runtime import check_precision

    if runtime is not None and runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if precision is not None:
        check_precision(precision)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads}")
    if decode_threads is not None and decode_threads < 0:
        raise InputError(f"decode_threads must be >= 0, got {decode_threads}")
    name, directory, spec = resolve(name_or_path or registry.default_model(), download)
    common: dict[str, Any] = dict(batch_size=batch_size, threads=threads)
    if directory is None:
        from vestis.models.builtin import tiny_random_encoder

        if runtime not in (None, "torch") or precision == "int8":
            raise InputError(
                f"{name} is built in memory and runs on torch only; export it first "
                "(vestis export onnx) to run it on onnxruntime"
            )

        enc = tiny_random_encoder(precision=precision or "fp32", **common)
    else:
        fmt = spec.format if spec is not None else detect_format(directory)
        torch_formats = (registry.HF_CLIP, registry.CHINESE_CLIP, registry.VESTIS)
        if runtime is None and precision is None and device == "cpu" and fmt in torch_formats:
            runtime = "onnx" if verified_int8(directory) else None
        if runtime in ("torch", "open_clip") and precision == "int8":
            raise InputError(f"int8 runs on onnxruntime, not {runtime} (vestis export onnx MODEL --out DIR --int8)")
        if runtime == "onnx" or (runtime is None and (fmt == registry.ONNX or precision == "int8")):
            precision = precision or default_precision(directory, name, "onnx")
            enc = _load_onnx(directory, name, spec, precision=precision, **common)
        elif fmt == registry.VESTIS and runtime is None and device == "cpu" and _text_onnx(directory):
            from vestis.models.mini_text_onnx import MiniTextOnnxEncoder

            precision = precision or default_precision(directory, name, "torch")
            enc = MiniTextOnnxEncoder(directory, name=name, precision=precision, **common)
        elif fmt == registry.VESTIS and runtime in (None, "torch"):
            from vestis.models.vestis_mini import load_vestis_mini

            precision = precision or default_precision(directory, name, "torch")
            enc = load_vestis_mini(directory, name, precision=precision, **common)
        elif runtime == "open_clip" or fmt == registry.OPEN_CLIP:
            enc = _load_open_clip(
                directory, name, spec, force_native=runtime == "open_clip", device=device,
                precision=precision or "fp32", **common,
            )  # fmt: skip
        elif fmt in (registry.HF_CLIP, registry.CHINESE_CLIP):
            precision = precision or default_precision(directory, name, "torch")
            enc = _load_transformers(directory, name, spec, fmt, device=device, precision=precision, **common)
        else:
            raise ModelFormatError(f"{directory}: format {fmt!r} cannot run on runtime {runtime!r}")
    enc.max_image_pixels = max_image_pixels
    enc.decode_threads = decode_threads
    # vestis-mini's text-tower export is read only by the encoder that runs it, so it is no part of
    # the torch encoder's identity (indexes built before the export was added still open on torch).
    from vestis.models.mini_text_onnx import TEXT_ONNX_DIR, MiniTextOnnxEncoder

    skip = () if isinstance(enc, MiniTextOnnxEncoder) else (TEXT_ONNX_DIR,)
    enc.fingerprint = _fingerprint(name, directory, enc.runtime, skip=skip)
    return enc


def _fingerprint(name: str, directory: Path | None, runtime: str, *, skip: tuple[str, ...] = ()) -> str:
    """Identifies the weights and runtime (for indexes and caches) by file content.

    Content, not modification times: an index built here is accepted by the same
    model files copied to another machine or clone.  Each file's digest is cached
    by (path, size, mtime), so only new or changed files are read.  ``skip``: top-level
    folders the runtime does not read.
    """
    h = hashlib.sha256(f"{name}|{runtime}".encode())
    if directory is not None:
        files = (p for p in Path(directory).rglob("*") if p.is_file())
        for path in sorted(p for p in files if p.relative_to(directory).parts[0] not in skip):
            h.update(f"|{path.relative_to(directory).as_posix()}:{registry.file_digest(path)}".encode())
    return h.hexdigest()[:24]


def _context_length(spec: ModelSpec | None, tokenizer: Any, fallback: int) -> int:
    if spec is not None and spec.context_length:
        return spec.context_length
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000:
        return min(limit, fallback)
    return fallback


def _load_transformers(
    directory: Path, name: str, spec: ModelSpec | None, fmt: str, *, device: str, precision: str, **common: Any
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
        precision=precision,
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
    directory: Path,
    name: str,
    spec: ModelSpec | None,
    *,
    force_native: bool,
    device: str,
    precision: str,
    **common: Any,
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

        if precision != "fp32":
            raise InputError(f"{name}: open_clip itself runs fp32 only, not {precision}")
        return OpenClipEncoder(directory, name=name, image_config=image_config, device=device, why=reason, **common)
    model, _ = open_clip_format.load_as_clip_model(directory)
    tokenizer = TextTokenizer(clip_tokenizer_from_bpe(ctx), ctx, clean=open_clip_clean)
    enc = TorchEncoder(
        model, name=name, tokenizer=tokenizer, image_config=image_config, device=device, precision=precision, **common
    )
    enc.runtime = f"torch {precision} (open_clip weights converted to CLIPModel)"
    enc.open_clip_config = cfg
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
