"""Data locations and small readers shared by the CLI, tests and demos."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: 300 KAGL products bundled for demos and offline tests: all from the validation split
#: (vestis-mini never trained on them), 112 article types, spread round-robin over types.
#: Source: "Fashion Product Images (Small)", Param Aggarwal, Kaggle, MIT licence;
#: labels as in Marqo's KAGL ground truth.  Same columns as the full KAGL parquet.
DEMO_CATALOG = "kagl-demo.parquet"
#: A street photo for demos and tests, with its label mask: Clothing Co-Parsing photo 129
#: (held out: vestis never trains on it), a woman in a blue dress with a bag and a hat.
#: Source: Yang, Luo, Lin, "Clothing Co-Parsing by Joint Image Segmentation and Labeling",
#: CVPR 2014 (github.com/bearpaw/clothing-co-parsing, Apache-2.0); down-scaled to 256 px.
DEMO_STREET_PHOTO = "ccp-street-129.jpg"
DEMO_STREET_MASK = "ccp-street-129-mask.png"


def demo_catalog_path() -> Path:
    return Path(str(resources.files("vestis.data").joinpath("demo", DEMO_CATALOG)))


def demo_street_photo_path() -> Path:
    return Path(str(resources.files("vestis.data").joinpath("demo", DEMO_STREET_PHOTO)))


def shared_data_dir() -> Path | None:
    """``$VESTIS_DATA_DIR``, else ``../shared/data`` beside the source tree, if present."""
    env = os.environ.get("VESTIS_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def kagl_parquets() -> list[Path]:
    """The full KAGL catalog files, or an empty list when the shared data is absent."""
    root = shared_data_dir()
    return sorted((root / "kagl").glob("kagl-*.parquet")) if root else []
