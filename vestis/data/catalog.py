"""Reading catalogs and labelled image sets for evaluation and indexing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vestis.errors import InputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST's class names, in label order (Zalando's README).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def parquet_files(path: str | Path) -> list[Path]:
    """A parquet file, or every ``*.parquet`` in a directory (sorted)."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.glob("*.parquet"))
        if not files:
            raise InputError(f"{p}: no .parquet files in this directory")
        return files
    if not p.is_file():
        raise InputError(f"{p}: no such file or directory")
    return [p]


def read_catalog(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One table from a parquet file or a directory of them; unknown columns are named."""
    tables = []
    for f in parquet_files(path):
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{f}: not a readable parquet file ({exc})") from None
        if columns:
            missing = [c for c in columns if c not in schema.names]
            if missing:
                raise InputError(f"{f}: no column {', '.join(map(repr, missing))}; it has {', '.join(schema.names)}")
        tables.append(pq.read_table(f, columns=columns))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise InputError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "test", root: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels int64) from the original IDX files.

    Debian's ``dataset-fashion-mnist`` installs them under /usr/share/datasets/fashion-mnist.
    Fashion-MNIST is for zero-shot evaluation only: never train or select models on it.
    """
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise InputError(f"unknown Fashion-MNIST split {split!r}; use test or train")
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.is_file():
        raise InputError(f"Fashion-MNIST not found at {root}; install it with `apt-get install dataset-fashion-mnist`")
    images = _read_idx(images_path)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels
