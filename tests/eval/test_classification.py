"""Zero-shot classification pipeline, datasets and the confusion plot."""

from __future__ import annotations

import numpy as np
import pytest

from vestis.errors import InputError
from vestis.eval.classification import evaluate_zero_shot, plot_confusion
from vestis.eval.datasets import from_folder, labelled_images

from .conftest import COLOURS, jpeg


def test_colour_images_are_classified(colour_catalog, colour_encoder, tmp_path):
    data = labelled_images(data=colour_catalog, label_column="baseColour")
    labels = list(data.labels)
    labels[0] = ""  # unknown, never a class
    res = evaluate_zero_shot(colour_encoder, data.images, labels, labels=["Red", "Green", "Blue", "Purple"])
    assert res["accuracy"] == 1.0 and res["weighted_f1"] == 1.0
    assert res["n"] == 10 and res["skipped_unlabelled"] == 1 and res["unreadable_images"] == 1
    assert res["labels_without_images"] == ["Purple"]
    png = plot_confusion(res, tmp_path / "cm.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_labels_default_to_those_present_and_others_are_skipped(colour_catalog, colour_encoder):
    data = labelled_images(data=colour_catalog, label_column="baseColour")
    res = evaluate_zero_shot(colour_encoder, data.images, data.labels)
    assert res["labels"] == ["Blue", "Green", "Red"]
    res = evaluate_zero_shot(colour_encoder, data.images, data.labels, labels=["Red", "Green"])
    assert res["skipped_other_label"] == 4 and res["n"] == 8


def test_bad_inputs_are_named(colour_catalog, colour_encoder):
    with pytest.raises(InputError, match="no column 'colour'"):
        labelled_images(data=colour_catalog, label_column="colour")
    with pytest.raises(InputError, match="exactly one"):
        labelled_images()
    with pytest.raises(InputError, match="unknown dataset"):
        labelled_images(dataset="imagenet")
    data = labelled_images(data=colour_catalog, label_column="baseColour")
    with pytest.raises(InputError, match="no image has one of the candidate labels"):
        evaluate_zero_shot(colour_encoder, data.images, data.labels, labels=["Pink", "Teal"])
    with pytest.raises(InputError, match="template"):
        evaluate_zero_shot(colour_encoder, data.images, data.labels, templates=["no placeholder"])


def test_class_folders(tmp_path, colour_encoder):
    for name, rgb in COLOURS.items():
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.jpg").write_bytes(jpeg(rgb))
    data = from_folder(tmp_path)
    assert sorted(set(data.labels)) == ["blue", "green", "red"] and len(data.images) == 6
    assert evaluate_zero_shot(colour_encoder, data.images, data.labels)["accuracy"] == 1.0


def test_fashion_mnist_reader():
    from vestis.data.catalog import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed (.ci/run installs it)")
    data = labelled_images(dataset="fashion-mnist", limit=100)
    assert len(data.images) == 100 and data.images[0].shape == (28, 28) and data.images[0].dtype == np.uint8
    assert data.classes[0] == "T-shirt/top" and set(data.labels) <= set(data.classes)


def test_split_selects_the_stable_validation_ids(colour_catalog):
    from vestis.data.split import is_validation

    val = labelled_images(data=colour_catalog, label_column="baseColour", split="val")
    train = labelled_images(data=colour_catalog, label_column="baseColour", split="train")
    assert len(val.images) + len(train.images) == 12
    expected_val = sum(is_validation(100 + i) for i in range(12))
    assert len(val.images) == expected_val and "val split" in val.description
    with pytest.raises(InputError, match="unknown split"):
        labelled_images(data=colour_catalog, label_column="baseColour", split="test")
