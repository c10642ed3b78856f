"""Image loading and preprocessing, as each checkpoint's own processor does it.

Two conventions exist among the reference projects and they differ in detail:

* transformers' ``CLIPImageProcessor`` (FashionCLIP, Chinese-CLIP): resize with
  PIL, centre crop with ``top = (h - crop) // 2``;
* open_clip's torchvision transform (Marqo-FashionCLIP): resize with PIL via
  torchvision, centre crop with ``top = round((h - crop) / 2)``.

Both are expressed by one :class:`ImageConfig`; the loaders read it from the
checkpoint's ``preprocessor_config.json`` or ``open_clip_config.json``.
Decoding and resizing are per image (PIL's C code); rescaling and
normalisation run once over the whole batch.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vestis.errors import ImageError, InputError

ImageInput = Image.Image | np.ndarray | str | PathLike | bytes | bytearray | memoryview

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: OpenAI CLIP's ``preprocessor_config.json`` for 224-px ViTs, in the old spelling that
#: FashionCLIP's repository still ships.
CLIP_PREPROCESSOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": list(OPENAI_CLIP_MEAN),
    "image_std": list(OPENAI_CLIP_STD),
    "resample": 3,
    "size": 224,
}

#: Largest image (in pixels) vestis decodes unless told otherwise: 8192 x 8192.
#: PIL's own bomb guard is process-global; this limit is checked per call.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192

_PIL_RESAMPLE = {
    0: Image.Resampling.NEAREST,
    1: Image.Resampling.LANCZOS,
    2: Image.Resampling.BILINEAR,
    3: Image.Resampling.BICUBIC,
    4: Image.Resampling.BOX,
    5: Image.Resampling.HAMMING,
}
_RESAMPLE_BY_NAME = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


@dataclass(frozen=True)
class ImageConfig:
    """What a checkpoint's processor does to an image before the model sees it.

    ``resize_mode``: ``"shortest"`` scales the short side to ``resize``;
    ``"squash"`` resizes to exactly ``resize`` x ``resize`` (or ``resize_hw``);
    ``"longest"`` scales the long side to ``resize`` and pads to a square of
    ``pad_value`` (catalog photos on white keep their whole garment).
    ``crop_rounding``: ``"floor"`` (transformers) or ``"round"`` (torchvision).
    """

    resize: int | None = 224
    resize_hw: tuple[int, int] | None = None
    resize_mode: str = "shortest"
    resample: int = 3
    crop_hw: tuple[int, int] | None = (224, 224)
    crop_rounding: str = "floor"
    rescale_factor: float = 1 / 255
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    do_normalize: bool = True
    pad_value: int = 255
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def output_hw(self) -> tuple[int, int]:
        """Height and width of the tensor the model receives."""
        if self.crop_hw is not None:
            return self.crop_hw
        if self.resize_hw is not None:
            return self.resize_hw
        if self.resize is not None and self.resize_mode in ("squash", "longest"):
            return (self.resize, self.resize)
        raise ValueError("image config gives no fixed output size (no crop and no exact resize)")

    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any]) -> ImageConfig:
        """Read a transformers ``preprocessor_config.json`` (old and new spellings)."""
        size = cfg.get("size", 224)
        resize: int | None = None
        resize_hw: tuple[int, int] | None = None
        mode = "shortest"
        if not cfg.get("do_resize", True):
            size = None
        if isinstance(size, int):
            resize = size
        elif isinstance(size, dict):
            if "shortest_edge" in size:
                resize = int(size["shortest_edge"])
            elif "height" in size and "width" in size:
                resize_hw = (int(size["height"]), int(size["width"]))
                mode = "squash"
            else:
                raise ValueError(f"unsupported 'size' in preprocessor config: {size!r}")
        crop = cfg.get("crop_size", 224)
        crop_hw: tuple[int, int] | None
        if not cfg.get("do_center_crop", True):
            crop_hw = None
        elif isinstance(crop, int):
            crop_hw = (crop, crop)
        else:
            crop_hw = (int(crop["height"]), int(crop["width"]))
        return cls(
            resize=resize,
            resize_hw=resize_hw,
            resize_mode=mode,
            resample=int(cfg.get("resample", 3)),
            crop_hw=crop_hw,
            crop_rounding="floor",
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
            mean=tuple(cfg.get("image_mean", OPENAI_CLIP_MEAN)),
            std=tuple(cfg.get("image_std", OPENAI_CLIP_STD)),
            do_normalize=bool(cfg.get("do_normalize", True)),
        )

    @classmethod
    def from_hf_file(cls, path: Path) -> ImageConfig:
        return cls.from_hf_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_open_clip(cls, image_size: int | Sequence[int], preprocess_cfg: dict[str, Any]) -> ImageConfig:
        """open_clip's eval transform: Resize, CenterCrop, ToTensor, Normalize."""
        if isinstance(image_size, (list, tuple)):
            hw = (int(image_size[0]), int(image_size[-1]))
        else:
            hw = (int(image_size), int(image_size))
        mode = preprocess_cfg.get("resize_mode", "shortest")
        interp = preprocess_cfg.get("interpolation", "bicubic")
        if interp not in ("bicubic", "bilinear"):
            raise ValueError(f"unsupported open_clip interpolation {interp!r}")
        if mode == "shortest":
            if hw[0] != hw[1]:
                raise ValueError("open_clip 'shortest' resize needs a square image_size")
            kwargs: dict[str, Any] = dict(resize=hw[0], resize_mode="shortest", crop_hw=hw)
        elif mode == "squash":
            kwargs = dict(resize=None, resize_hw=hw, resize_mode="squash", crop_hw=None)
        else:
            raise ValueError(f"unsupported open_clip resize_mode {mode!r} (supported: shortest, squash)")
        return cls(
            resample=_RESAMPLE_BY_NAME[interp],
            crop_rounding="round",
            mean=tuple(preprocess_cfg.get("mean", OPENAI_CLIP_MEAN)),
            std=tuple(preprocess_cfg.get("std", OPENAI_CLIP_STD)),
            **kwargs,
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The same settings as a transformers ``preprocessor_config.json``."""
        if self.crop_rounding != "floor":
            raise ValueError("only floor-rounded crops can be written as a transformers config")
        out: dict[str, Any] = {
            "do_resize": self.resize is not None or self.resize_hw is not None,
            "resample": self.resample,
            "do_center_crop": self.crop_hw is not None,
            "do_rescale": self.rescale_factor != 1.0,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "do_convert_rgb": True,
            "image_processor_type": "CLIPImageProcessor",
        }
        if self.resize_hw is not None:
            out["size"] = {"height": self.resize_hw[0], "width": self.resize_hw[1]}
        elif self.resize is not None:
            out["size"] = {"shortest_edge": self.resize}
        if self.crop_hw is not None:
            out["crop_size"] = {"height": self.crop_hw[0], "width": self.crop_hw[1]}
        return out


# --------------------------------------------------------------------------- decoding


def _describe(index: int | None) -> str:
    return "image" if index is None else f"image {index}"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparency is composited onto white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" or arr.max(initial=0) > 1.0 else 1.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img.convert("RGB")


def load_image(
    source: ImageInput,
    *,
    index: int | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Decode ``source`` (PIL image, path or encoded bytes) into an RGB image.

    Applies the EXIF orientation (phone photos), converts every mode to RGB
    (CMYK, palette, 16-bit, grayscale, alpha onto white) and refuses empty,
    truncated, non-image and oversized input with an :class:`ImageError`.
    """
    what = _describe(index)
    if isinstance(source, np.ndarray):
        shape_ok = source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (3, 4))
        if source.dtype != np.uint8 or not shape_ok:
            raise ImageError(
                f"{what}: arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4), got {source.dtype} {source.shape}"
            )
        source = Image.fromarray(source)
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if not data:
                raise ImageError(f"{what}: empty bytes, not an image")
            fp: Any = io.BytesIO(data)
            label = f"{what} ({len(data)} bytes)"
        elif isinstance(source, (str, PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{what}: no such file: {path}")
            if path.stat().st_size == 0:
                raise ImageError(f"{what}: file is empty: {path}")
            fp = path
            label = f"{what} ({path})"
        else:
            raise InputError(
                f"{what}: expected a PIL image, an array, a path or encoded image bytes, got {type(source).__name__}"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{label}: image too large to decode safely ({exc})") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{label}: not a readable image ({exc})") from None
        what = label
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{what}: zero-size image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(
            f"{what}: image too large: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
            "(decompression-bomb guard; raise max_image_pixels if this is intended)"
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{what}: cannot decode image data ({exc})") from None


# --------------------------------------------------------------------------- geometry


def _resized_size(w: int, h: int, cfg: ImageConfig) -> tuple[int, int] | None:
    """(width, height) after the resize step, or None when there is none."""
    if cfg.resize_hw is not None:
        return (cfg.resize_hw[1], cfg.resize_hw[0])
    if cfg.resize is None:
        return None
    if cfg.resize_mode == "squash":
        return (cfg.resize, cfg.resize)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = cfg.resize, int(cfg.resize * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def _crop_offset(size: int, crop: int, rounding: str) -> int:
    if rounding == "round":
        return int(round((size - crop) / 2.0))
    return (size - crop) // 2


def _letterbox(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    size = int(cfg.resize)
    scale = size / max(img.width, img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    if (w, h) != img.size:
        img = img.resize((w, h), resample=_PIL_RESAMPLE[cfg.resample])
    canvas = np.full((size, size, 3), cfg.pad_value, dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top : top + h, left : left + w] = np.asarray(img, dtype=np.uint8)
    return canvas


def resize_and_crop(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    """One RGB image to a uint8 array of ``cfg.output_hw`` (H, W, 3)."""
    if cfg.resize_mode == "longest":
        return _letterbox(img, cfg)
    target = _resized_size(img.width, img.height, cfg)
    if target is not None and target != img.size:
        img = img.resize(target, resample=_PIL_RESAMPLE[cfg.resample])
    arr = np.asarray(img, dtype=np.uint8)
    if cfg.crop_hw is not None:
        ch, cw = cfg.crop_hw
        h, w = arr.shape[:2]
        if h < ch or w < cw:  # pad symmetrically with black, as both references do
            pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
            arr = np.pad(arr, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
            h, w = arr.shape[:2]
        top = _crop_offset(h, ch, cfg.crop_rounding)
        left = _crop_offset(w, cw, cfg.crop_rounding)
        arr = arr[top : top + ch, left : left + cw]
    return arr


def normalize_batch(batch: np.ndarray, cfg: ImageConfig) -> np.ndarray:
    """uint8 (N, H, W, 3) to float32 (N, 3, H, W), rescaled and normalised at once."""
    x = batch.astype(np.float32) * np.float32(cfg.rescale_factor)
    if cfg.do_normalize:
        mean = np.asarray(cfg.mean, dtype=np.float32)
        std = np.asarray(cfg.std, dtype=np.float32)
        x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess_images(
    images: Iterable[ImageInput],
    cfg: ImageConfig,
    *,
    start_index: int = 0,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode, resize, crop and normalise a batch into float32 (N, 3, H, W)."""
    arrays = [
        resize_and_crop(load_image(src, index=start_index + i, max_pixels=max_pixels), cfg)
        for i, src in enumerate(images)
    ]
    if not arrays:
        h, w = cfg.output_hw
        return np.zeros((0, 3, h, w), dtype=np.float32)
    return normalize_batch(np.stack(arrays), cfg)
