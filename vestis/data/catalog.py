"""Reading catalogs and labelled image sets for evaluation and indexing."""

from __future__ import annotations

import gzip
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vestis.errors import InputError
from vestis.models.text import text_problem

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


# ------------------------------------------------------------------------ catalogs to index

#: What an id may be: text (at most this many characters) or an integer within int64.
MAX_ID_LENGTH = 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def normalize_id(value: object) -> int | str:
    """``value`` as an id: text, or an integer within int64; else an :class:`InputError` saying why.

    Text stays text (``"007"``, ``"²"`` and ``"١٢"`` are never read as numbers); a float is taken
    only when it is a whole number (pandas stores an integer column with gaps as floats). Booleans,
    lists, structs, bytes, NaN, infinities, empty text and text with control characters are not ids.
    """
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"id {value!r}: a boolean is not an id (use text or an integer)")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"id {value!r}: not a whole number (ids are text or integers)")
        value = int(value)
    if isinstance(value, (int, np.integer)):
        value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InputError(f"id {value}: outside the 64-bit integer range (send it as text)")
        return value
    if isinstance(value, str):
        if not value.strip():
            raise InputError("id: empty text")
        if len(value) > MAX_ID_LENGTH:
            raise InputError(f"id: {len(value):,} characters; at most {MAX_ID_LENGTH:,}")
        problem = text_problem(value)
        if problem:
            raise InputError(f"id {value.encode('utf-8', 'backslashreplace').decode()!r}: {problem}")
        return value
    raise InputError(f"id: a {type(value).__name__} is not an id (use text or an integer)")


def _try_id(value: object) -> int | str | None:
    try:
        return normalize_id(value)
    except InputError:
        return None


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Columns tried, in order, as a product's title when none is named.
TITLE_COLUMNS = ("productDisplayName", "title", "name", "product_name")


@dataclass
class CatalogItem:
    """One product read from a catalog: its id, image (bytes or a file path) and other columns."""

    id: object
    image: bytes | Path | None
    metadata: dict
    image_ref: str | None = None  # the image's path as the catalog gave it
    image_problem: str | None = None  # why there is no image to read (missing, remote URL, ...)


@dataclass
class CatalogReader:
    """Streams :class:`CatalogItem` batches from a parquet file or folder of parquets, a CSV or
    JSONL file of metadata with image paths (relative to the file), or a folder of images."""

    path: Path
    id_column: str = "id"
    image_column: str = "image"
    kind: str = ""
    total: int = 0
    columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was read and what was not, for the report

    @classmethod
    def open(cls, path: str | Path, id_column: str = "id", image_column: str = "image") -> CatalogReader:
        p = Path(path).expanduser()
        if not p.exists():
            raise InputError(f"{p}: no such file or directory")
        reader = cls(p, id_column, image_column)
        if p.is_dir() and not any(p.glob("*.parquet")):
            reader.kind = "images"
            reader._files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            reader.total = len(reader._files)
            reader.columns = ["path", "folder"]
            return reader
        suffix = p.suffix.lower()
        if p.is_dir() or suffix == ".parquet":
            reader.kind = "parquet"
            reader._files = parquet_files(p)
            schemas = []
            for f in reader._files:
                try:
                    schemas.append(pq.read_schema(f))
                    reader.total += pq.ParquetFile(f).metadata.num_rows
                except (pa.ArrowInvalid, OSError) as exc:
                    raise InputError(f"{f}: not a readable parquet file ({exc})") from None
            reader.columns = list(schemas[0].names)
            if p.is_dir():
                images = sum(1 for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
                if images:
                    reader.notes.append(
                        f"{p} holds {len(reader._files)} .parquet file(s) and {images} image file(s): the catalog is "
                        f"the parquet rows ({reader.total}); an image file is read only where a row's "
                        f"{image_column!r} names it. To index the image files themselves, give a folder without "
                        ".parquet files."
                    )
        elif suffix in (".csv", ".jsonl", ".ndjson", ".json"):
            reader.kind = "csv" if suffix == ".csv" else "jsonl"
            reader._table = _read_text_table(p, reader.kind)
            reader.total = reader._table.num_rows
            reader.columns = list(reader._table.column_names)
        else:
            raise InputError(f"{p}: unknown catalog format; use parquet, CSV, JSONL or a folder of images")
        for col, what in ((id_column, "--id-column"), (image_column, "--image-column")):
            if col not in reader.columns:
                raise InputError(f"{p}: no column {col!r} ({what}); it has {', '.join(reader.columns)}")
        return reader

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping], id_column: str = "id", image_column: str = "image") -> CatalogReader:
        """A catalog of products in memory: one mapping per product, as a parquet row would be
        (``image``: bytes, a file path or none). Each column holds one type of value (ints and
        floats mix); ids of mixed types are all taken as text. A product without a column has null there."""
        rows = [dict(r) for r in rows]
        if not rows:
            raise InputError("no items given")
        columns: dict[str, None] = {}
        kinds: dict[str, set[str]] = {}
        for row in rows:
            for key, value in row.items():
                columns.setdefault(str(key))
                if value is not None and key not in (image_column, id_column):
                    kinds.setdefault(key, set()).add(_kind(value))
        for key, seen in kinds.items():
            if len(seen) > 1:
                raise InputError(f"items: field {key!r} has values of different types ({', '.join(sorted(seen))})")
        # ids: text or int64 (others are refused and counted by the build); text and numbers mixed: all text
        ids = [_try_id(row.get(id_column)) for row in rows]
        if len({type(i) for i in ids if i is not None}) > 1:
            for row, i in zip(rows, ids):
                if i is not None:
                    row[id_column] = str(i)
        reader = cls(Path("."), id_column, image_column, kind="rows", total=len(rows), columns=list(columns))
        reader._rows = [{c: row.get(c) for c in columns} for row in rows]  # a missing column is null, as in a table
        return reader

    def batches(self, size: int = 256) -> Iterator[list[CatalogItem]]:
        if self.kind == "parquet":  # streamed: a row group at a time, never a whole file
            for f in self._files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=size):
                    yield [_row_item(r, f.parent, self.id_column, self.image_column) for r in batch.to_pylist()]
            return
        for shard in self.shards(size):
            yield shard.read()

    def shards(self, size: int = 256) -> list[CatalogShard]:
        """The catalog in parts that workers read by themselves, in catalog order: ``size`` rows
        or image files each, or one parquet row group (read where the part is, not here)."""
        if self.kind == "parquet":
            return [
                CatalogShard("parquet", f.parent, self.id_column, self.image_column, source=f, row_group=g)
                for f in self._files
                for g in range(pq.ParquetFile(f).metadata.num_row_groups)
            ]
        if self.kind == "images":
            return [
                CatalogShard("images", self.path, source=tuple(self._files[s : s + size]))
                for s in range(0, len(self._files), size)
            ]
        if self.kind == "rows":
            rows, base = self._rows, Path.cwd()
        else:
            rows, base = self._table.to_pylist(), self.path.parent
        return [
            CatalogShard("rows", base, self.id_column, self.image_column, source=tuple(rows[s : s + size]))
            for s in range(0, len(rows), size)
        ]


@dataclass(frozen=True)
class CatalogShard:
    """A part of a catalog (:meth:`CatalogReader.shards`) that reads itself, anywhere: a parquet
    row group, some files of an image folder, or some rows of a CSV, JSONL or in-memory catalog."""

    kind: str  # "parquet", "images" or "rows"
    base: Path  # the image folder; else the folder relative image paths start from
    id_column: str = "id"
    image_column: str = "image"
    source: Path | tuple = ()  # the parquet file, the image files, or the rows
    row_group: int = 0

    def read(self) -> list[CatalogItem]:
        if self.kind == "images":
            return [_image_file_item(f, self.base) for f in self.source]
        if self.kind == "parquet":
            rows = pq.ParquetFile(self.source).read_row_group(self.row_group).to_pylist()
        else:
            rows = [dict(r) for r in self.source]
        return [_row_item(r, self.base, self.id_column, self.image_column) for r in rows]


def _image_file_item(f: Path, root: Path) -> CatalogItem:
    rel = f.relative_to(root).as_posix()
    folder = f.parent.relative_to(root).as_posix()
    return CatalogItem(rel, f, {"path": rel, "folder": "" if folder == "." else folder}, image_ref=str(f))


def _row_item(row: dict, base: Path, id_column: str, image_column: str) -> CatalogItem:
    value = row.pop(image_column, None)
    item_id = row.get(id_column)
    meta = {k: _jsonable(v) for k, v in row.items()}
    if isinstance(value, dict):  # Hugging Face datasets' Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)) and value:
        return CatalogItem(item_id, bytes(value), meta)
    if isinstance(value, str) and value.strip():
        ref = value.strip()
        if ref.startswith(("http://", "https://")):
            return CatalogItem(item_id, None, meta, ref, "remote image URLs are not fetched; download them first")
        path = Path(ref.removeprefix("file://")).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            return CatalogItem(item_id, None, meta, ref, f"image file not found: {path}")
        return CatalogItem(item_id, path, meta, ref)
    return CatalogItem(item_id, None, meta, None, "no image")


def _read_text_table(path: Path, kind: str) -> pa.Table:
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson

    try:
        if kind == "csv":
            # every column as text: ids like 00123 and SKUs keep their form
            names = pcsv.read_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16)).column_names
            opts = pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
            return pcsv.read_csv(path, convert_options=opts)
        return pjson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read it as {kind.upper()} ({str(exc).splitlines()[0]})") from None


def _kind(value: object) -> str:
    """The type of a column value, as a table would type it (ints and floats are both numbers)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _jsonable(v: object) -> object:
    """A metadata value as JSON can hold it: NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(v, (bytes, bytearray)):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
