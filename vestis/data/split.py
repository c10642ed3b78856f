"""The train/validation split of a catalog: a stable hash of each item id.

The same ids land in the validation split on every machine and in every run,
so a model trained with ``val_fraction`` never sees the items it is evaluated on.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from vestis.errors import InputError

#: The validation fraction vestis-mini was trained with.
DEFAULT_VAL_FRACTION = 0.1
SPLITS = ("all", "train", "val")


def is_validation(item_id: object, fraction: float = DEFAULT_VAL_FRACTION) -> bool:
    """The first 8 bytes of blake2b(str(id)) as a fraction of 2**64, below ``fraction``."""
    digest = hashlib.blake2b(str(item_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def select_split(
    table: pa.Table, split: str, id_column: str = "id", fraction: float = DEFAULT_VAL_FRACTION
) -> pa.Table:
    """Rows of ``table`` in ``split`` (all, train or val)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if split == "all":
        return table
    if id_column not in table.column_names:
        raise InputError(f"splitting needs an id column; no column {id_column!r}")
    want_val = split == "val"
    keep = [i for i, x in enumerate(table.column(id_column).to_pylist()) if is_validation(x, fraction) == want_val]
    return table.take(keep)
