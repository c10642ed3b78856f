"""Image loading and preprocessing, as each checkpoint's own processor does it.

Two conventions exist among the reference projects and they differ in detail:

* transformers' ``CLIPImageProcessor`` (FashionCLIP, Chinese-CLIP): resize with
  PIL, centre crop with ``top = (h - crop) // 2``;
* open_clip's torchvision transform (Marqo-FashionCLIP): resize with PIL via
  torchvision, centre crop with ``top = round((h - crop) / 2)``.

Both are expressed by one :class:`ImageConfig`; the loaders read it from the
checkpoint's ``preprocessor_config.json`` or ``open_clip_config.json``.
Decoding and resizing are per image (PIL's C code); rescaling and
normalisation are a table look-up per value.  Encoders use :func:`pixel_batches`,
which decodes in worker threads one batch ahead of the model and uses JPEG
draft mode for large photos (the only step whose pixels differ from the
checkpoint's processor; see ``docs/speed.md`` for the measured tolerance).
"""

from __future__ import annotations

import functools
import io
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
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
    img, what = _open_image(source, index, max_pixels)
    return _finish_decoding(img, what)


def _open_image(source: ImageInput, index: int | None, max_pixels: int) -> tuple[Image.Image, str]:
    """Open (not yet decode) ``source`` and check its size; (image, how to name it in errors)."""
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
            # PIL names what it read from; for bytes that is "<_io.BytesIO object at 0x...>", which tells nobody
            # anything, so the reason is given without it (the caller names the item or file).
            reason = str(exc).replace(f" {fp!r}", "") if isinstance(fp, io.BytesIO) else str(exc)
            raise ImageError(f"{label}: not a readable image ({reason})") from None
        what = label
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{what}: zero-size image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(
            f"{what}: image too large: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
            "(decompression-bomb guard; raise max_image_pixels if this is intended)"
        )
    return img, what


def _finish_decoding(img: Image.Image, what: str) -> Image.Image:
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


def _letterbox_box(sw: int, sh: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of a (sw, sh) photo scaled into a ``size`` square, centred."""
    scale = size / max(sw, sh)
    w, h = max(1, round(sw * scale)), max(1, round(sh * scale))
    return (size - w) // 2, (size - h) // 2, w, h


def _letterbox(img: Image.Image, cfg: ImageConfig, source_size: tuple[int, int] | None = None) -> np.ndarray:
    size = int(cfg.resize)
    left, top, w, h = _letterbox_box(*(source_size or img.size), size)
    if (w, h) != img.size:
        img = img.resize((w, h), resample=_PIL_RESAMPLE[cfg.resample])
    canvas = np.full((size, size, 3), cfg.pad_value, dtype=np.uint8)
    canvas[top : top + h, left : left + w] = np.asarray(img, dtype=np.uint8)
    return canvas


def content_box(size: tuple[int, int], cfg: ImageConfig) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the part of :func:`resize_and_crop`'s output that shows a
    ``size`` (width, height) photo; the rest is padding the preprocessing added (a letterbox's
    border, or the black border of a crop larger than the resized photo)."""
    sw, sh = size
    if cfg.resize_mode == "longest":
        left, top, w, h = _letterbox_box(sw, sh, int(cfg.resize))
        return left, top, left + w, top + h
    w, h = _resized_size(sw, sh, cfg) or (sw, sh)
    if cfg.crop_hw is None:
        return 0, 0, w, h
    ch, cw = cfg.crop_hw
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    left, top = (pad_w // 2, pad_h // 2)
    return left, top, left + min(w, cw), top + min(h, ch)


def resize_and_crop(img: Image.Image, cfg: ImageConfig, source_size: tuple[int, int] | None = None) -> np.ndarray:
    """One RGB image to a uint8 array of ``cfg.output_hw`` (H, W, 3).

    ``source_size`` is the (width, height) the geometry is computed from when
    ``img`` was decoded at reduced size (JPEG draft mode): the output then has
    the size and framing that the full-size image would give.
    """
    if cfg.resize_mode == "longest":
        return _letterbox(img, cfg, source_size)
    sw, sh = source_size or img.size
    target = _resized_size(sw, sh, cfg)
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


# --------------------------------------------------------------------------- fast path
#
# What runs when an encoder embeds images.  It gives the same pixels as the
# functions above (bit for bit) except where JPEG draft mode applies, and is
# fast because:
#
# * a JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8
#   scale by libjpeg itself (draft mode), never below DRAFT_MARGIN times the
#   size the resize step produces, so the bicubic/bilinear resize that follows
#   still filters properly;
# * rescaling and normalisation are one table look-up per value (a 256-entry
#   table per channel, computed with the same float32 operations as
#   ``normalize_batch`` did, so the values are identical), written straight
#   into the batch tensor in channel-first order;
# * images are decoded by worker threads (PIL and numpy release the GIL)
#   while the model runs the previous batch; see :func:`pixel_batches`.

#: A draft-decoded JPEG keeps at least this many times the resized size on each side.
DRAFT_MARGIN = 2
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _target_size(w: int, h: int, cfg: ImageConfig) -> tuple[int, int] | None:
    """(width, height) the resize step makes of a (w, h) image, None if there is none."""
    if cfg.resize_mode == "longest":
        scale = int(cfg.resize) / max(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))
    return _resized_size(w, h, cfg)


def _draft(img: Image.Image, cfg: ImageConfig) -> tuple[int, int] | None:
    """Let libjpeg decode a large JPEG at reduced scale; the full (displayed) size if it did."""
    if img.format != "JPEG" or not hasattr(img, "draft"):
        return None
    w, h = img.size
    try:
        rotated = img.getexif().get(0x0112, 1) in _ROTATED
    except Exception:  # a damaged EXIF block: load_image's exif_transpose reports it
        return None
    shown = (h, w) if rotated else (w, h)
    target = _target_size(*shown, cfg)
    if target is None:
        return None
    tw, th = (target[1], target[0]) if rotated else target
    if w < 2 * DRAFT_MARGIN * tw or h < 2 * DRAFT_MARGIN * th:
        return None  # not even a 1/2-scale decode would keep the margin
    img.draft(img.mode, (DRAFT_MARGIN * tw, DRAFT_MARGIN * th))
    return shown if img.size != (w, h) else None


def prepare_image(
    source: ImageInput,
    cfg: ImageConfig,
    *,
    index: int | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    draft: bool = True,
) -> np.ndarray:
    """Decode, resize and crop one image to uint8 (H, W, 3), with JPEG draft mode where it applies
    (and, for other formats much larger than the model's input, a box reduction right after decoding)."""
    img, what = _open_image(source, index, max_pixels)
    # Only files vestis opened itself: a caller's PIL image is never changed.
    opened = draft and not isinstance(source, Image.Image)
    full_size = _draft(img, cfg) if opened else None
    if not opened or full_size is not None:
        return resize_and_crop(_finish_decoding(img, what), cfg, full_size)
    try:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # no copy of a large image when there is nothing to turn
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{what}: cannot decode image data ({exc})") from None
    img, full_size = _reduce(img, cfg)
    return resize_and_crop(_finish_decoding(img, what), cfg, full_size)


def decode_size(data: bytes, cfg: ImageConfig, *, draft: bool = True) -> tuple[int, int] | None:
    """(width, height) that :func:`prepare_image` decodes encoded ``data`` at (JPEG draft mode
    applied), read from the header without decoding; None when the header cannot be read."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if draft:
                _draft(im, cfg)
            return im.size
    except Exception:  # noqa: BLE001 - an unreadable header: prepare_image names the problem
        return None


#: Modes :meth:`PIL.Image.Image.reduce` averages correctly (not palette or 1-bit images).
_REDUCIBLE = ("L", "LA", "RGB", "RGBA")


def _reduce(img: Image.Image, cfg: ImageConfig) -> tuple[Image.Image, tuple[int, int] | None]:
    """A decoded image much larger than the model's input, box-reduced by an integer factor that keeps
    DRAFT_MARGIN times the resized size (what draft mode does for JPEG, for PNG, WebP...): the RGB
    conversion and the resize then work on the small image. (image, full size) or (image, None)."""
    w, h = img.size
    target = _target_size(w, h, cfg)
    if target is None or img.mode not in _REDUCIBLE:
        return img, None
    factor = min(w // (DRAFT_MARGIN * target[0]), h // (DRAFT_MARGIN * target[1]))
    if factor < 2:
        return img, None
    return img.reduce(factor), (w, h)


@functools.lru_cache(maxsize=16)
def _normalize_table(rescale: float, mean: tuple[float, ...], std: tuple[float, ...], normalize: bool) -> np.ndarray:
    """(3, 256) float32: every uint8 value of every channel, rescaled and normalised."""
    values = np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1)
    x = values * np.float32(rescale)
    if normalize:
        x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    table = np.ascontiguousarray(x.T, dtype=np.float32)
    table.setflags(write=False)
    return table


def normalize_table(cfg: ImageConfig) -> np.ndarray:
    return _normalize_table(float(cfg.rescale_factor), tuple(cfg.mean), tuple(cfg.std), bool(cfg.do_normalize))


def normalize_into(image: np.ndarray, out: np.ndarray, table: np.ndarray) -> None:
    """uint8 (H, W, 3) -> float32 (3, H, W) ``out``, through the per-channel table."""
    for c in range(3):
        np.take(table[c], image[:, :, c], out=out[c], mode="clip")


def normalize_batch(batch: np.ndarray, cfg: ImageConfig) -> np.ndarray:
    """uint8 (N, H, W, 3) to float32 (N, 3, H, W), rescaled and normalised."""
    n, h, w = batch.shape[:3]
    out = np.empty((n, 3, h, w), dtype=np.float32)
    table = normalize_table(cfg)
    for i in range(n):
        normalize_into(batch[i], out[i], table)
    return out


def _prepare_part(
    items: Sequence[ImageInput],
    part: range,
    out: np.ndarray,
    cfg: ImageConfig,
    start_index: int,
    max_pixels: int,
    draft: bool,
) -> tuple[int, BaseException] | None:
    """Fill ``out[j]`` for ``j`` in ``part``; the first failure as (j, error) instead of raising."""
    table = normalize_table(cfg)
    for j in part:
        try:
            arr = prepare_image(items[j], cfg, index=start_index + j, max_pixels=max_pixels, draft=draft)
        except Exception as exc:
            return j, exc
        normalize_into(arr, out[j], table)
    return None


def _split(n: int, parts: int) -> list[range]:
    bounds = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _fixed_hw(cfg: ImageConfig) -> tuple[int, int] | None:
    try:
        return cfg.output_hw
    except ValueError:
        return None


def preprocess_images(
    images: Sequence[ImageInput],
    cfg: ImageConfig,
    *,
    start_index: int = 0,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    draft: bool = False,
    pool: Executor | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Decode, resize, crop and normalise a batch into float32 (N, 3, H, W).

    With ``draft=False`` (the default here) the pixels are exactly those of the
    checkpoint's own processor; ``pool`` spreads the images over ``workers``
    threads of an executor.
    """
    images = list(images) if not isinstance(images, Sequence) else images
    hw = _fixed_hw(cfg)
    if hw is None:  # no fixed output size: only a batch of equal sizes can be stacked
        arrays = [
            prepare_image(src, cfg, index=start_index + i, max_pixels=max_pixels, draft=draft)
            for i, src in enumerate(images)
        ]
        return normalize_batch(np.stack(arrays), cfg)
    out = np.empty((len(images), 3, *hw), dtype=np.float32)
    parts = _split(len(images), workers if pool is not None else 1)
    args = (out, cfg, start_index, max_pixels, draft)
    if pool is None or len(parts) <= 1:
        results = [_prepare_part(images, p, *args) for p in parts]
    else:
        results = list(pool.map(lambda p: _prepare_part(images, p, *args), parts))
    _raise_first(results)
    return out


def _raise_first(results: Iterable[tuple[int, BaseException] | None]) -> None:
    failures = [r for r in results if r is not None]
    if failures:
        raise min(failures, key=lambda f: f[0])[1]


def pixel_batches(
    images: Sequence[ImageInput],
    cfg: ImageConfig,
    batch_size: int,
    *,
    workers: int = 1,
    prefetch: bool = True,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    draft: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, float32 (n, 3, H, W))`` batch by batch.

    With ``workers >= 1`` the images of a batch are decoded by that many
    threads.  With ``prefetch``, batch k+1 is decoded while the caller works
    on batch k (one batch ahead, never more); without, decoding waits until
    the caller asks for the next batch, so that decoding and the caller's work
    never compete for cores.  ``workers=0`` decodes inline.  An unreadable
    image raises the same :class:`ImageError` as :func:`load_image`, naming its
    position in ``images``, when its batch is reached.
    """
    n = len(images)
    if workers <= 0 or _fixed_hw(cfg) is None:
        for start in range(0, n, batch_size):
            chunk = images[start : start + batch_size]
            yield start, preprocess_images(chunk, cfg, start_index=start, max_pixels=max_pixels, draft=draft)
        return
    hw = _fixed_hw(cfg)
    assert hw is not None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vestis-decode") as pool:

        def submit(start: int) -> tuple[np.ndarray, list[Future]]:
            chunk = images[start : start + batch_size]
            out = np.empty((len(chunk), 3, *hw), dtype=np.float32)
            futures = [
                pool.submit(_prepare_part, chunk, part, out, cfg, start, max_pixels, draft)
                for part in _split(len(chunk), workers)
            ]
            return out, futures

        pending = submit(0) if n else None
        try:
            for start in range(0, n, batch_size):
                if pending is None:
                    pending = submit(start)
                out, futures = pending
                results = [f.result() for f in futures]
                more = start + batch_size < n
                pending = submit(start + batch_size) if prefetch and more else None
                _raise_first(results)
                yield start, out
        finally:
            if pending is not None:
                for f in pending[1]:
                    f.cancel()


def image_mime(data: bytes) -> str:
    """The media type of encoded image bytes, from their first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"
