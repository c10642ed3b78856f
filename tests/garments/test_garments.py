"""The garment segmenter: groups, boxes from masks, loading, and cropping real photos."""

from __future__ import annotations

import io
from dataclasses import replace
from importlib import resources

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vestis.data import DEMO_STREET_MASK, demo_catalog_path, demo_street_photo_path
from vestis.data.ccp import CCP_LABELS
from vestis.errors import ImageError, InputError, ModelNotFoundError
from vestis.garments import (
    GROUP_NAMES,
    GROUPS,
    SegmenterConfig,
    default_segmenter,
    find_garments,
    garment_crop,
    load_segmenter,
    parse_photo,
)
from vestis.garments.find import FindConfig, garments_from_segmentation, group_boxes, plain_border
from vestis.garments.groups import IGNORE_INDEX, IGNORED_LABELS, ccp_label_to_group
from vestis.garments.model import GarmentSegmenter, Segmentation, prepare_image
from vestis.models.efficientnet import load_imagenet_weights


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------------------ groups


def test_every_ccp_label_has_one_group_or_is_ignored():
    table = ccp_label_to_group(CCP_LABELS)
    assert len(table) == len(CCP_LABELS)
    named = [lbl for g in GROUPS for lbl in g.ccp_labels]
    assert len(named) == len(set(named)), "a CCP label in two groups"
    assert set(named) | set(IGNORED_LABELS) == set(CCP_LABELS)
    assert table[CCP_LABELS.index("jeans")] == GROUP_NAMES.index("trousers")
    assert table[CCP_LABELS.index("belt")] == IGNORE_INDEX
    with pytest.raises(ValueError, match="kilt"):
        ccp_label_to_group(("null", "kilt"))


def test_garment_groups_name_catalog_types_and_background_and_person_do_not():
    garments = [g for g in GROUPS if g.is_garment]
    assert {g.name for g in GROUPS if not g.is_garment} == {"background", "person"}
    assert all(g.words for g in garments)
    assert "Jeans" in next(g for g in garments if g.name == "trousers").kagl_article_types


# ------------------------------------------------------------------------------ boxes from masks


def test_group_boxes_merges_a_pair_drops_specks_and_keeps_far_parts_apart():
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:21, 10:21] = True  # left shoe
    mask[10:21, 24:35] = True  # right shoe, 3 px away: one pair
    mask[70:91, 70:91] = True  # something far away
    mask[50:52, 50:52] = True  # a speck (4 px < 0.3% of the photo)
    mask[40:46, 80:86] = True  # 36 px: above min_area but < 15% of the largest part
    boxes = sorted(box for box, _ in group_boxes(mask))
    assert boxes == [(10, 10, 35, 21), (70, 70, 91, 91)]
    pixels = dict(group_boxes(mask))
    assert pixels[(10, 10, 35, 21)].sum() == 2 * 121
    assert group_boxes(np.zeros((10, 10), dtype=bool)) == []
    # without merging the pair stays two boxes
    apart = sorted(box for box, _ in group_boxes(mask, FindConfig(merge_reach=0.0)))
    assert apart == [(10, 10, 21, 21), (24, 10, 35, 21), (70, 70, 91, 91)]


def test_garments_from_segmentation_maps_boxes_back_to_the_photo_and_pads_them():
    groups = np.zeros((60, 40), dtype=np.int64)  # the photo as the segmenter saw it: half size
    groups[10:40, 5:35] = GROUP_NAMES.index("dress")
    groups[50:56, 8:18] = GROUP_NAMES.index("shoes")
    groups[0:8, 15:25] = GROUP_NAMES.index("person")
    probs = np.eye(len(GROUP_NAMES), dtype=np.float32)[groups].transpose(2, 0, 1) * 0.9
    seg = Segmentation(probs, np.zeros((60, 40, 3), np.uint8), 0.5, GROUP_NAMES)
    found = garments_from_segmentation(seg, (80, 120))
    assert [g.group for g in found] == ["dress", "shoes"]  # person is not a garment; largest first
    dress = found[0]
    # (5, 10, 35, 40) at half size -> (10, 20, 70, 80), padded by 10% of 60 px each way
    assert dress.box == (4, 14, 76, 86)
    assert dress.score == pytest.approx(0.9)
    assert dress.area == pytest.approx(30 * 30 / (60 * 40))


def test_plain_border_tells_a_product_on_white_from_a_busy_scene():
    white = np.full((80, 60, 3), 255, np.uint8)
    white[10:70, 10:50] = (200, 30, 30)
    assert plain_border(white, 24) == 1.0
    rng = np.random.default_rng(0)
    assert plain_border(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8), 24) < 0.3


def test_prepare_image_scales_the_long_side_and_pads_to_multiples_of_32():
    canvas, (h, w) = prepare_image(Image.new("RGB", (60, 80), "white"), 256)
    assert (h, w) == (256, 192) and canvas.shape == (256, 192, 3)
    canvas, (h, w) = prepare_image(Image.new("RGB", (1000, 300), "white"), 256)
    assert (h, w) == (77, 256) and canvas.shape == (96, 256, 3)
    assert (canvas[77:] == 128).all()


# ------------------------------------------------------------------------------ the model


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    config = SegmenterConfig(encoder_weights="file", long_side=64, width=8)
    model = GarmentSegmenter(config)
    for p in model.decoder.parameters():
        p.data.normal_(0, 0.1)
    photo = Image.new("RGB", (40, 64), (90, 140, 200))
    before = model.segment(photo).probs
    model.save(tmp_path / "seg")
    loaded = load_segmenter(tmp_path / "seg")
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.segment(photo).probs, before)
    assert before.shape == (len(GROUP_NAMES), 64, 40)
    with pytest.raises(ModelNotFoundError, match="no garment segmenter"):
        load_segmenter(tmp_path / "nothing")


def test_the_bundled_segmenter_loads_with_a_frozen_imagenet_trunk():
    model = load_segmenter()
    assert model.config.groups == GROUP_NAMES
    assert not model.training and not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    reference = GarmentSegmenter(model.config, load_encoder_weights=False)
    load_imagenet_weights(reference.encoder)
    for (name, ours), theirs in zip(model.encoder.state_dict().items(), reference.encoder.state_dict().values()):
        assert torch.equal(ours, theirs), name
    assert sum(p.numel() for p in model.decoder.parameters()) < 1_000_000


# ------------------------------------------------------------------------------ real photos


def test_a_street_photo_is_cropped_to_its_dress_where_the_mask_says():
    photo = Image.open(demo_street_photo_path())
    mask = np.asarray(Image.open(resources.files("vestis.data").joinpath("demo", DEMO_STREET_MASK)))
    ys, xs = np.nonzero(mask == CCP_LABELS.index("dress"))
    truth = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    crop = garment_crop(photo, "main")
    assert crop.garment is not None and crop.garment.group == "dress"
    assert iou(crop.garment.box, truth) >= 0.5
    x0, y0, x1, y1 = crop.garment.box
    assert crop.image.size == (x1 - x0, y1 - y0) and crop.image.size < photo.size
    groups = {g.group for g in find_garments(demo_street_photo_path())}  # a path works as well
    assert {"dress", "bag"} <= groups


def test_catalog_photos_on_white_go_through_unchanged():
    """Products with no one in the photo always; photos of models on white nearly always (the
    benchmark counts 489 of 500 KAGL-val photos; the rest are underwear and swimwear on models)."""
    rows = pq.read_table(demo_catalog_path(), columns=["image", "masterCategory"]).slice(0, 40).to_pylist()
    unchanged = {True: 0, False: 0}
    for row in rows:
        worn = row["masterCategory"] == "Apparel"
        crop = garment_crop(row["image"], "main")
        if crop.garment is None:
            unchanged[worn] += 1
            photo = Image.open(io.BytesIO(row["image"])).convert("RGB")
            assert np.array_equal(np.asarray(crop.image), np.asarray(photo))
        else:
            assert worn, "a product photo with no person in it was cropped"
    worn = sum(r["masterCategory"] == "Apparel" for r in rows)
    assert 0 < worn < len(rows) and unchanged[False] == len(rows) - worn
    assert unchanged[True] >= 0.9 * worn
    assert not parse_photo(rows[1]["image"]).street


def test_a_photo_without_the_asked_garment_comes_back_whole():
    photo = Image.open(demo_street_photo_path()).convert("RGB")
    crop = garment_crop(photo, "shorts")
    assert crop.garment is None and crop.image.size == photo.size


def test_bad_input_is_named():
    with pytest.raises(ImageError):
        find_garments(b"not an image")
    with pytest.raises(InputError, match="unknown garment 'socks'"):
        garment_crop(Image.new("RGB", (10, 10)), "socks")


def test_find_config_thresholds_change_what_is_found():
    photo = demo_street_photo_path()
    seg = default_segmenter()
    assert find_garments(photo, segmenter=seg, config=replace(FindConfig(), min_person=1.0)) == []
    everything = find_garments(photo, segmenter=seg, config=replace(FindConfig(), min_area=0.0, min_part=0.0))
    assert len(everything) >= len(find_garments(photo, segmenter=seg))
