"""Explain a match: occlusion and gradient maps, the deletion test and word contributions, for
vestis-mini, a random-weight CLIP checkpoint, the built-in tiny CLIP and an encoder that is no
torch model; the installed CLI in a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import vestis
from vestis.data import demo_catalog_path
from vestis.errors import InputError
from vestis.explain import (
    deletion_area,
    deletion_curve,
    explain,
    fill_colour,
    gradient_map,
    model_pixels,
    occlusion_map,
    word_contributions,
)
from vestis.index.build import build_index
from vestis.models.base import Encoder
from vestis.search import Catalog

from .models.test_hf_clip import write_hf_clip

VESTIS = Path(sys.executable).with_name("vestis")


class PooledEncoder(Encoder):
    """No torch: a fixed random projection of 4x4-pooled pixels (images) and of hashed words (texts)."""

    def __init__(self, base: Encoder) -> None:
        self.name, self.dim, self.logit_scale = "pooled-numpy", 16, 100.0
        self.image_config, self.tokenizer = base.image_config, base.tokenizer
        self.fingerprint, self.runtime = "pooled-numpy-1", "numpy"
        h, w = self.image_config.output_hw
        rng = np.random.default_rng(0)
        self.w_img = rng.normal(size=(3 * 4 * 4, self.dim)).astype(np.float32)
        self.w_txt = rng.normal(size=(4096, self.dim)).astype(np.float32)

    def _forward_images(self, pixel_values):
        n, c, h, w = pixel_values.shape
        pooled = pixel_values.reshape(n, c, 4, h // 4, 4, w // 4).mean(axis=(3, 5)).reshape(n, -1)
        return pooled @ self.w_img

    def _forward_texts(self, input_ids, attention_mask):
        return (np.eye(4096, dtype=np.float32)[input_ids % 4096] * attention_mask[..., None]).sum(1) @ self.w_txt


def small_index(tmp_path_factory, encoder, name: str, n: int = 12):
    table = pq.read_table(demo_catalog_path())
    rows = table.slice(0, n).to_pylist()
    folder = tmp_path_factory.mktemp(name)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), folder / "catalog.parquet")
    build_index(folder / "catalog.parquet", folder / "index", encoder=encoder, quiet=True)
    return folder / "index", rows


@pytest.fixture(scope="module")
def mini():
    return vestis.load_encoder("vestis-mini", precision="fp32")


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory):
    directory = tmp_path_factory.mktemp("random-clip")
    write_hf_clip(directory, seed=3)
    return vestis.load_encoder(directory)


@pytest.fixture(scope="module")
def one_patch(mini):
    """A photo at the model's size: the mean colour everywhere but a red block in one cell (grid 4)."""
    h, w = mini.image_config.output_hw
    pixels = np.empty((h, w, 3), np.uint8)
    pixels[:] = fill_colour(mini.image_config)
    pixels[h // 4 : h // 2, w // 4 : w // 2] = (220, 20, 20)
    return pixels


def test_occlusion_is_the_fall_in_score_when_a_cell_is_painted_out(mini, catalog_rows):
    pixels, _ = model_pixels(mini, catalog_rows[0]["image"])
    q = mini.encode_texts(["a shirt"])[0]
    cells, base = occlusion_map(mini, pixels, q, grid=4)
    assert cells.shape == (4, 4)
    h, w = pixels.shape[:2]
    for r, c in ((0, 0), (2, 1), (3, 3)):  # painted here independently of the library's helper
        copy = pixels.copy()
        copy[r * h // 4 : (r + 1) * h // 4, c * w // 4 : (c + 1) * w // 4] = fill_colour(mini.image_config)
        want = base - float(mini.encode_images([copy])[0] @ q)
        assert cells[r, c] == pytest.approx(want, abs=2e-5)
    assert base == pytest.approx(float(mini.encode_images([pixels])[0] @ q), abs=2e-5)


def test_maps_see_only_the_cell_that_holds_something(mini, one_patch):
    q = mini.encode_texts(["red"])[0]
    occ, _ = occlusion_map(mini, one_patch, q, grid=4)
    # painting the mean colour over cells that are already the mean colour changes nothing
    others = np.ones((4, 4), bool)
    others[1, 1] = False
    assert np.abs(occ[others]).max() < 1e-5 < abs(occ[1, 1])
    grad = gradient_map(mini, one_patch, q, grid=4)
    assert np.abs(grad[others]).max() < 0.1 * abs(grad[1, 1])


def test_the_letterbox_is_not_explained(mini):
    """A tall photo is letterboxed onto white: the map covers the photo, never the border the
    preprocessing added, and painting a cell out leaves that border as it was."""
    cfg = mini.image_config
    assert cfg.resize_mode == "longest"
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 255, (200, 50, 3), dtype=np.uint8))  # 1:4, a narrow column
    pixels, shown = model_pixels(mini, photo)
    h, w = pixels.shape[:2]
    cols = np.nonzero(shown.any(0))[0]
    assert shown.all(1).sum() == 0 and shown.any(1).all()  # every row holds some photo, none only photo
    assert w // 4 < cols[0] and cols[-1] < 3 * w // 4  # the photo is the middle quarter or so
    assert (pixels[~shown] == cfg.pad_value).all()
    q = mini.encode_texts(["a dress"])[0]
    occ, base = occlusion_map(mini, pixels, q, grid=8, photo=shown)
    grad = gradient_map(mini, pixels, q, grid=8, photo=shown)
    border = np.array([not shown[:, c * w // 8 : (c + 1) * w // 8].any() for c in range(8)])  # columns of cells
    assert border.sum() >= 4  # the outer columns of cells are border alone
    assert (occ[:, border] == 0).all() and (grad[:, border] == 0).all()
    assert np.abs(occ[:, ~border]).max() > 0
    # without the photo mask the border would light up: painting white with grey moves the score
    free, _ = occlusion_map(mini, pixels, q, grid=8)
    assert np.abs(free[:, border]).max() > 1e-4
    # the whole photo painted out: the border stays white
    from vestis.explain import painted

    out = painted(pixels, np.ones((8, 8), bool), fill_colour(cfg), shown)
    assert (out[~shown] == pixels[~shown]).all() and (out[shown] == fill_colour(cfg)).all()


def test_deletion_curve_starts_at_the_photo_and_ends_at_the_blank(mini, catalog_rows):
    pixels, _ = model_pixels(mini, catalog_rows[1]["image"])
    q = mini.encode_texts(["watch"])[0]
    cells, base = occlusion_map(mini, pixels, q, grid=4)
    curve = deletion_curve(mini, pixels, q, cells)
    blank = np.empty_like(pixels)
    blank[:] = fill_colour(mini.image_config)
    assert len(curve) == 11 and curve[0] == pytest.approx(base, abs=2e-5)
    assert curve[-1] == pytest.approx(float(mini.encode_images([blank])[0] @ q), abs=2e-5)
    # painting out the cells that raise the score first lowers it at least as fast as the reverse order
    assert deletion_area(curve) <= deletion_area(deletion_curve(mini, pixels, q, -cells)) + 1e-6


def test_word_contributions_are_leave_one_out(mini):
    target = mini.encode_images([np.full((80, 60, 3), 30, np.uint8)])[0]
    words, q = word_contributions(mini, "black formal shoes", target)
    full = float(mini.encode_texts(["black formal shoes"])[0] @ target)
    assert [w.word for w in words] == ["black", "formal", "shoes"]
    for w, rest in zip(words, ("formal shoes", "black shoes", "black formal")):
        assert w.contribution == pytest.approx(full - float(mini.encode_texts([rest])[0] @ target), abs=1e-5)
    (single,), _ = word_contributions(mini, "shoes", target)
    assert single.contribution == pytest.approx(float(mini.encode_texts(["shoes"])[0] @ target), abs=1e-5)


@pytest.mark.parametrize("model", ["vestis-mini", "random-clip", "vestis-tiny-random", "pooled-numpy"])
def test_explain_works_for_every_kind_of_model(model, mini, hf_clip, tmp_path_factory):
    encoder = {"vestis-mini": mini, "random-clip": hf_clip, "vestis-tiny-random": None,
               "pooled-numpy": PooledEncoder(mini)}[model]  # fmt: skip
    encoder = encoder or vestis.load_encoder("vestis-tiny-random")
    directory, rows = small_index(tmp_path_factory, encoder, model.replace("-", ""))
    with Catalog.open(directory, encoder=encoder) as cat:
        item = rows[2]["id"]
        why = explain(cat, item, "blue casual shirt", grid=4)
        torch_model = model != "pooled-numpy"
        assert why.method == ("gradient" if torch_model else "occlusion")
        assert why.cells.shape == (4, 4) and why.occlusion.shape == (4, 4)
        assert (why.gradient is not None) == torch_model
        assert why.pixels.shape[:2] == tuple(encoder.image_config.output_hw)
        q = encoder.encode_texts(["blue casual shirt"])[0]
        rec = cat.store.get([str(item)], vectors=True)[str(item)]
        assert why.score == pytest.approx(float(rec.vector @ q), abs=1e-5)
        assert [w.word for w in why.words] == ["blue", "casual", "shirt"]
        occ = explain(cat, item, "blue casual shirt", grid=4, method="occlusion")
        assert occ.method == "occlusion" and occ.gradient is None
        np.testing.assert_allclose(occ.cells, why.occlusion, atol=1e-5)
        png = Image.open(io.BytesIO(why.overlay_png()))
        assert png.format == "PNG" and min(png.size) >= 256
        d = why.to_dict()
        assert json.loads(json.dumps(d)) == d and len(d["regions"]) == 3
        if not torch_model:
            with pytest.raises(InputError, match="use method occlusion"):
                explain(cat, item, "shirt", method="gradient")
        with pytest.raises(InputError, match="no item"):
            explain(cat, "nope", "shirt")
        with pytest.raises(InputError, match="grid must be"):
            explain(cat, item, "shirt", grid=1)
        with pytest.raises(InputError, match="method must be"):
            explain(cat, item, "shirt", method="saliency")


# --------------------------------------------------------------------------------- CLI


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(VESTIS), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_explain_writes_the_overlay_and_matches_the_library(rated_index, tmp_path, mini):
    directory, rows = rated_index
    item = rows[0]["id"]
    png = tmp_path / "why.png"
    proc = run("explain", directory, item, "dark jeans", "--out", png, "--grid", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Image.open(png).format == "PNG"
    with Catalog.open(directory, encoder=mini) as cat:
        lib = explain(cat, item, "dark jeans", grid=4)
    assert got["item_id"] == item and got["method"] == lib.method == "gradient"
    np.testing.assert_allclose(np.array(got["cells"]), lib.cells, atol=1e-4)
    assert [w["word"] for w in got["words"]] == ["dark", "jeans"]
    proc = run("explain", directory, item, "dark jeans", "--method", "occlusion", "--grid", "4")
    assert proc.returncode == 0 and "dark" in proc.stdout and "occlusion, 4x4 grid" in proc.stdout
    bad = run("explain", directory, "no-such-item", "jeans")
    assert bad.returncode == 2 and "no item 'no-such-item'" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("explain", directory, item, "jeans", "--method", "magic")
    assert bad.returncode == 2 and "method must be one of" in bad.stderr
