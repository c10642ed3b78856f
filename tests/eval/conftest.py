"""A transparent toy encoder: images embed as their mean colour, texts as the colour they name (English or Chinese)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vestis.models.base import Encoder, l2_normalize
from vestis.models.preprocess import load_image

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
#: The same colours as the Chinese term table names them (红色, 绿色, 蓝色), for the Chinese tasks.
COLOURS_ZH = {"红": COLOURS["red"], "绿": COLOURS["green"], "蓝": COLOURS["blue"]}


class ColourEncoder(Encoder):
    """A model whose right answers are known, to test the evaluation pipeline itself."""

    name = "colour"
    dim = 3
    logit_scale = 100.0
    batch_size = 4
    fingerprint = "colour-v1"

    def __init__(self):
        self.calls = 0

    def _forward_images(self, pixel_values):  # pragma: no cover - encode_images is overridden
        raise NotImplementedError

    def _forward_texts(self, input_ids, attention_mask):  # pragma: no cover
        raise NotImplementedError

    def encode_images(self, images, *, batch_size=None):
        self.calls += 1
        arrays = [np.asarray(load_image(x, index=i), dtype=np.float32).mean(axis=(0, 1)) for i, x in enumerate(images)]
        return l2_normalize(np.array(arrays).reshape(-1, 3) + 1e-3)

    def encode_texts(self, texts, *, batch_size=None):
        self.calls += 1
        named = {**COLOURS, **COLOURS_ZH}
        vecs = [next((np.array(c, np.float32) for name, c in named.items() if name in t.lower()), np.ones(3))
                for t in texts]  # fmt: skip
        return l2_normalize(np.array(vecs).reshape(-1, 3) + 1e-3)


def jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 30), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def colour_catalog(tmp_path):
    """12 products in three colours; one unreadable image; titles on some."""
    rows = []
    for i in range(12):
        name = list(COLOURS)[i % 3]
        rows.append({"id": 100 + i, "image": jpeg(COLOURS[name]), "baseColour": name.title(),
                     "productDisplayName": f"{name} shirt {i}" if i % 2 else ""})  # fmt: skip
    rows[11]["image"] = b"broken bytes"
    rows[11]["baseColour"] = "Blue"
    path = tmp_path / "catalog.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def colour_encoder():
    return ColourEncoder()
