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


def demo_catalog_path() -> Path:
    return Path(str(resources.files("vestis.data").joinpath("demo", DEMO_CATALOG)))


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
