"""Bad input gets correct handling or a clear VestisError naming the problem."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import vestis
from vestis.errors import ImageError, InputError, ModelFormatError, ModelNotFoundError
from vestis.models.preprocess import load_image


@pytest.fixture(scope="module")
def enc():
    return vestis.load_encoder("vestis-tiny-random")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size (a decompression bomb's header) without its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- models


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'.*fashion-clip"):
        vestis.load_encoder("no-such-model")


def test_missing_registered_model_says_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("VESTIS_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError) as info:
        vestis.load_encoder("marqo-fashionclip")
    msg = str(info.value)
    assert "Marqo/marqo-fashionCLIP" in msg and "open_clip_config.json" in msg
    assert str(tmp_path / "marqo-fashionclip") in msg


def test_registered_model_is_found_in_models_dir(tmp_path, monkeypatch):
    from tests.models.test_hf_clip import write_hf_clip

    (tmp_path / "fashion-clip").mkdir()
    write_hf_clip(tmp_path / "fashion-clip")
    monkeypatch.setenv("VESTIS_MODELS_DIR", str(tmp_path))
    enc = vestis.load_encoder("fashion-clip")
    assert enc.name == "fashion-clip" and enc.dim == 32


def test_hub_id_not_cached_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("VESTIS_DOWNLOAD", raising=False)
    with pytest.raises(ModelNotFoundError, match="download=True"):
        vestis.load_encoder("someone/some-clip")


def test_not_a_model_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelFormatError, match="not a model directory"):
        vestis.load_encoder(tmp_path)


def test_corrupt_weight_file(tmp_path):
    from tests.models.test_hf_clip import write_hf_clip

    write_hf_clip(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelFormatError, match="cannot load CLIPModel"):
        vestis.load_encoder(tmp_path)


def test_corrupt_open_clip_weights_and_config(tmp_path):
    (tmp_path / "open_clip_config.json").write_text("{not json")
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        vestis.load_encoder(tmp_path)
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {}}')
    with pytest.raises(ModelFormatError, match="cannot read weights"):
        vestis.load_encoder(tmp_path)


def test_bad_options_are_named():
    with pytest.raises(InputError, match="runtime"):
        vestis.load_encoder("vestis-tiny-random", runtime="tensorflow")
    with pytest.raises(InputError, match="threads"):
        vestis.load_encoder("vestis-tiny-random", threads=0)


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty bytes"),
        (b"this is not an image at all", "not a readable image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not a readable image"),
    ],
)
def test_non_image_bytes(enc, data, words):
    with pytest.raises(ImageError, match=words):
        enc.encode_images([data])


def test_truncated_jpeg_names_the_image(enc, sample_images):
    good = sample_images[0]
    with pytest.raises(ImageError, match=r"image 1 .*cannot decode|image 1 .*not a readable"):
        enc.encode_images([good, good[: len(good) // 2]])


def test_zero_size_image(enc):
    with pytest.raises(ImageError, match="zero-size"):
        enc.encode_images([Image.new("RGB", (0, 0))])


def test_decompression_bomb_is_refused_before_decoding(enc):
    with pytest.raises(ImageError, match="image 0 .*image too large"):
        enc.encode_images([_png_header_only(20000, 20000)])
    # Below PIL's own guard (179 Mpx) but above vestis' default limit (67 Mpx).
    with pytest.raises(ImageError, match="10000x9000 .* exceeds the limit"):
        enc.encode_images([_png_header_only(10000, 9000)])


def test_pixel_limit_is_settable():
    small = vestis.load_encoder("vestis-tiny-random", max_image_pixels=100)
    with pytest.raises(ImageError, match="exceeds the limit of 100"):
        small.encode_images([Image.new("RGB", (20, 20))])


def test_missing_and_empty_files(enc, tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        enc.encode_images([str(tmp_path / "nope.jpg")])
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="file is empty"):
        enc.encode_images([tmp_path / "empty.jpg"])


def test_wrong_types(enc):
    with pytest.raises(InputError, match="image 0: expected a PIL image"):
        enc.encode_images([42])
    with pytest.raises(InputError, match="list"):
        enc.encode_images("photo.jpg")


def test_image_modes_are_converted(enc):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 60, 3), dtype=np.uint8))
    cmyk = rgb.convert("CMYK")
    rgba = rgb.convert("RGBA")
    gray = rgb.convert("L")
    gray16 = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    assert gray16.mode.startswith("I")
    palette = rgb.convert("P")
    images = [_jpeg(cmyk), _png(rgba), _png(gray), _png(gray16), _png(palette), _png(rgb.convert("1"))]
    out = enc.encode_images(images)
    assert out.shape == (6, enc.dim) and np.isfinite(out).all()
    # 16-bit grayscale keeps its contrast (no clipping to white) and matches the 8-bit version.
    assert np.abs(np.asarray(load_image(_png(gray16))) - np.asarray(load_image(_png(gray)))).max() <= 1
    # RGBA with opaque alpha equals RGB.
    assert np.abs(enc.encode_images([_png(rgba)]) - enc.encode_images([_png(rgb)])).max() < 1e-6


def test_transparency_is_composited_on_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert np.asarray(load_image(img)).min() == 255


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _jpeg(img, exif=exif.tobytes())
    assert load_image(data).size == (20, 40)


# ---------------------------------------------------------------- texts


def test_empty_text_list_gives_empty_array(enc):
    out = enc.encode_texts([])
    assert out.shape == (0, enc.dim) and out.dtype == np.float32
    assert enc.encode_images([]).shape == (0, enc.dim)


@pytest.mark.parametrize(
    "texts, words", [([""], "text 0: empty"), (["ok", "  "], "text 1: empty"), (["a", 3], "text 1: expected a string")]
)
def test_bad_texts(enc, texts, words):
    with pytest.raises(InputError, match=words):
        enc.encode_texts(texts)


def test_single_string_is_refused_not_split_into_characters(enc):
    with pytest.raises(InputError, match="single string"):
        enc.encode_texts("red dress")


def test_very_long_text_is_truncated(enc):
    long_text = "blue " * 5000
    ids, _ = enc.tokenizer([long_text])
    assert ids.shape[1] == 77 and ids[0, -1] == 49407  # ends with end-of-text
    out = enc.encode_texts([long_text, "blue " * 80])
    assert np.abs(out[0] - out[1]).max() < 1e-6  # both truncated to the same 77 tokens


def test_bad_batch_size(enc):
    with pytest.raises(InputError, match="batch_size"):
        enc.encode_texts(["a"], batch_size=0)


def test_builtin_model_refuses_other_runtimes():
    with pytest.raises(InputError, match="built in memory"):
        vestis.load_encoder("vestis-tiny-random", runtime="onnx")
