"""End-to-end checks of the shipped vestis-mini on real, held-out products."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import vestis
from vestis.classify import label_embeddings
from vestis.data import demo_catalog_path, kagl_parquets
from vestis.data.split import select_split
from vestis.models.registry import BUNDLED_DIR


@pytest.fixture(scope="module")
def mini():
    return vestis.load_encoder("vestis-mini")


@pytest.fixture(scope="module")
def held_out():
    """300 KAGL validation-split products (never trained on), or the demo set without the shared data."""
    files = kagl_parquets()
    table = select_split(pq.read_table(files[0]), "val") if files else pq.read_table(demo_catalog_path())
    return table.slice(0, 300).to_pylist()


def test_is_the_default_and_small(mini):
    assert vestis.default_model() == "vestis-mini" == mini.name
    weights = BUNDLED_DIR / "vestis-mini" / "model.safetensors"
    assert weights.stat().st_size < 30 * 2**20
    assert mini.dim == 256 and mini.context_length == 128


def test_the_chinese_sibling_shares_the_default_image_tower():
    """vestis-mini-zh is a text head trained into vestis-mini's image space (its card): the image
    tower is the default model's, bit for bit, so a retrained default must be followed by a re-run
    of configs/vestis-mini-zh-stage1.yaml."""
    from safetensors.torch import load_file

    mini, zh = (load_file(str(BUNDLED_DIR / name / "model.safetensors")) for name in ("vestis-mini", "vestis-mini-zh"))
    tower = [k for k in mini if k.startswith("image_tower.")]
    assert tower and {k for k in zh if k.startswith("image_tower.")} == set(tower)
    assert all(torch.equal(mini[k], zh[k]) for k in tower)
    assert not torch.equal(mini["text_head.linear.weight"], zh["text_head.linear.weight"])  # its own text head
    assert (BUNDLED_DIR / "vestis-mini-zh" / "model.safetensors").stat().st_size < 30 * 2**20


def test_zero_shot_master_category_on_held_out_products(mini, held_out):
    rows = [r for r in held_out if r["masterCategory"] in ("Apparel", "Accessories", "Footwear", "Personal Care")]
    labels = ["Apparel", "Accessories", "Footwear", "Personal Care"]
    image = mini.encode_images([r["image"] for r in rows])
    pred = np.argmax(image @ label_embeddings(mini, labels).T, axis=1)
    accuracy = np.mean([labels[p] == r["masterCategory"] for p, r in zip(pred, rows)])
    assert accuracy > 0.8, accuracy  # chance is about 0.4 (the majority class)


def test_text_search_finds_the_right_kind_of_product(mini, held_out):
    image = mini.encode_images([r["image"] for r in held_out])
    for query, field, value in [
        ("a pair of shoes", "masterCategory", "Footwear"),
        ("a wrist watch", "articleType", "Watches"),
        ("a t-shirt", "subCategory", "Topwear"),
    ]:
        if sum(r[field] == value for r in held_out) < 5:
            continue
        top = np.argsort(-(image @ mini.encode_texts([query])[0]))[:5]
        hits = sum(held_out[i][field] == value for i in top)
        assert hits >= 4, (query, [held_out[i][field] for i in top])


def test_fingerprint_follows_file_content_not_file_times(tmp_path, monkeypatch):
    import os
    import shutil

    monkeypatch.setenv("VESTIS_CACHE_DIR", str(tmp_path / "cache"))
    original = vestis.load_encoder("vestis-mini", precision="fp32")
    copy = tmp_path / "elsewhere" / "vestis-mini"
    shutil.copytree(BUNDLED_DIR / "vestis-mini", copy)  # new files, new modification times
    for f in copy.iterdir():
        os.utime(f, (1e9, 1e9))
    assert vestis.load_encoder(copy, precision="fp32").fingerprint == original.fingerprint
    config = copy / "vestis_config.json"
    config.write_text(config.read_text().replace('"embed_dim"', ' "embed_dim"', 1))  # same model, other bytes
    assert vestis.load_encoder(copy, precision="fp32").fingerprint != original.fingerprint
