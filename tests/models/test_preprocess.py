"""Preprocessing: the two crop conventions, config parsing, batch normalisation."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vestis.models.preprocess import ImageConfig, normalize_batch, preprocess_images, resize_and_crop


def test_crop_rounding_conventions_differ_only_on_odd_margins():
    img = Image.fromarray(np.arange(7 * 4 * 3, dtype=np.uint8).reshape(7, 4, 3))
    floor = ImageConfig(resize=None, crop_hw=(4, 4), crop_rounding="floor")
    rnd = ImageConfig(resize=None, crop_hw=(4, 4), crop_rounding="round")
    arr = np.asarray(img)
    assert np.array_equal(resize_and_crop(img, floor), arr[1:5])  # (7-4)//2 = 1  (transformers)
    assert np.array_equal(resize_and_crop(img, rnd), arr[2:6])  # round(1.5) = 2 (torchvision)


def test_shortest_edge_resize_keeps_aspect():
    cfg = ImageConfig(resize=224, crop_hw=None)
    out = resize_and_crop(Image.new("RGB", (60, 80)), cfg)
    assert out.shape == (298, 224, 3)  # int(224 * 80 / 60)


def test_hf_config_spellings():
    old = ImageConfig.from_hf_dict({"size": 224, "crop_size": 224, "resample": 3})
    new = ImageConfig.from_hf_dict({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}})
    assert old == new and old.output_hw == (224, 224)
    square = ImageConfig.from_hf_dict({"size": {"height": 224, "width": 224}, "do_center_crop": False})
    assert square.resize_mode == "squash" and square.output_hw == (224, 224)
    assert ImageConfig.from_hf_dict(old.to_hf_dict()) == old


def test_open_clip_config():
    cfg = ImageConfig.from_open_clip(224, {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    assert cfg.crop_rounding == "round" and cfg.mean == (0.5, 0.5, 0.5) and cfg.output_hw == (224, 224)
    squash = ImageConfig.from_open_clip(224, {"resize_mode": "squash"})
    assert squash.crop_hw is None and squash.output_hw == (224, 224)


def test_normalisation_is_vectorised_and_correct():
    cfg = ImageConfig(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    batch = np.full((2, 3, 3, 3), 255, dtype=np.uint8)
    out = normalize_batch(batch, cfg)
    assert out.shape == (2, 3, 3, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], 1.0)
    np.testing.assert_allclose(out[:, 1], 3.0)
    np.testing.assert_allclose(out[:, 2], 1.0)


def test_empty_batch_has_the_right_shape():
    assert preprocess_images([], ImageConfig()).shape == (0, 3, 224, 224)


def test_longest_side_letterbox_on_white():
    cfg = ImageConfig(resize=64, resize_mode="longest", crop_hw=None)
    out = resize_and_crop(Image.new("RGB", (60, 80), (10, 20, 30)), cfg)
    assert out.shape == (64, 64, 3) and cfg.output_hw == (64, 64)
    assert (out[:, :2] == 255).all() and (out[:, -2:] == 255).all()  # 48 px wide, centred, white margins
    assert (out[:, 10:54] == (10, 20, 30)).all()


def test_content_box_is_where_the_photo_lands():
    """content_box names the pixels that show the photo; everything else is the padding added."""
    from vestis.models.preprocess import content_box

    colour = (10, 20, 30)
    cases = [
        (ImageConfig(resize=64, resize_mode="longest", crop_hw=None), (60, 80)),  # letterbox, white sides
        (ImageConfig(resize=64, resize_mode="longest", crop_hw=None), (90, 30)),  # letterbox, white top/bottom
        (ImageConfig(resize=None, crop_hw=(32, 32)), (20, 50)),  # crop wider than the photo: black sides
        (ImageConfig(resize=None, crop_hw=(32, 32)), (10, 12)),  # smaller both ways: black all round
        (ImageConfig(resize=32, crop_hw=(32, 32)), (60, 80)),  # shortest side then crop: no padding
    ]
    for cfg, size in cases:
        out = resize_and_crop(Image.new("RGB", size, colour), cfg)
        left, top, right, bottom = content_box(size, cfg)
        inside = np.zeros(out.shape[:2], bool)
        inside[top:bottom, left:right] = True
        assert (out[inside] == colour).all(), (cfg, size)
        assert not (out[~inside] == colour).all(axis=-1).any(), (cfg, size)


def test_large_png_is_reduced_right_after_decoding_and_keeps_its_pixels_close():
    import io

    from vestis.models.preprocess import decode_size, prepare_image

    cfg = ImageConfig(resize=224, crop_hw=(224, 224))
    y, x = np.mgrid[0:3000, 0:2400].astype(np.float32)
    pixels = np.stack([x / 2400 * 255, y / 3000 * 255, (x + y) % 97 * 2], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    data = buf.getvalue()
    assert decode_size(data, cfg) == (2400, 3000)  # PNG has no draft mode: decoded at full size
    fast = prepare_image(data, cfg, draft=True).astype(np.int16)
    exact = prepare_image(data, cfg, draft=False).astype(np.int16)
    assert fast.shape == exact.shape == (224, 224, 3)
    assert np.abs(fast - exact).mean() < 2.0 and np.abs(fast - exact).max() <= 40


def test_pixel_budget_bounds_pixels_in_flight_across_threads():
    import threading
    import time

    from vestis.serve.media import PixelBudget

    budget = PixelBudget(100, release_after=10**9)
    seen = []

    def work(n):
        with budget.hold(n):
            seen.append(budget.in_use)
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(n,)) for n in (60, 60, 30, 150, 10, 40) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert max(seen) <= 100 and budget.peak <= 100 and budget.in_use == 0
