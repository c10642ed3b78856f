"""Labelled image sets for zero-shot evaluation: Fashion-MNIST, parquet catalogs, class folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vestis.data.catalog import FASHION_MNIST_CLASSES, load_fashion_mnist, read_catalog
from vestis.data.split import select_split
from vestis.errors import InputError
from vestis.models.preprocess import ImageInput

DATASETS = ("fashion-mnist", "ccp-val")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class LabelledImages:
    images: list[ImageInput]
    labels: list[str | None]
    description: str
    #: The dataset's own class list, in its order (None: the labels present).
    classes: list[str] | None = None
    #: The catalog field the labels are values of (a term table's field: articleType, ccp, ...), if any.
    field: str | None = None


def fashion_mnist(limit: int | None = None) -> LabelledImages:
    """The 10,000-image test split; labels are Zalando's class names."""
    images, labels = load_fashion_mnist("test")
    n = len(images) if limit is None else min(limit, len(images))
    return LabelledImages(
        list(images[:n]),
        [FASHION_MNIST_CLASSES[i] for i in labels[:n]],
        f"Fashion-MNIST test ({n} images)",
        classes=list(FASHION_MNIST_CLASSES),
    )


def ccp_val(limit: int | None = None) -> LabelledImages:
    """vestis' real-photo validation set: garments cropped from the held-out Clothing Co-Parsing photos."""
    from vestis.data import shared_data_dir
    from vestis.data.ccp import HELDOUT_FRACTION, heldout_garments

    root = shared_data_dir()
    path = None if root is None else Path(root) / "ccp" / "ccp.parquet"
    if path is None or not path.is_file():
        raise InputError("ccp-val needs the shared data folder's ccp/ccp.parquet (set VESTIS_DATA_DIR)")
    images, labels = heldout_garments(path, limit)
    return LabelledImages(
        list(images),
        list(labels),
        f"Clothing Co-Parsing held-out photos ({HELDOUT_FRACTION:.0%} by photo id): {len(images)} garment crops",
        field="ccp",
    )


def from_parquet(
    path: str | Path, image_column: str, label_column: str, limit: int | None = None, split: str = "all"
) -> LabelledImages:
    columns = [image_column, label_column] + (["id"] if split != "all" else [])
    table = select_split(read_catalog(path, columns), split)
    if limit is not None:
        table = table.slice(0, limit)
    return LabelledImages(
        table.column(image_column).to_pylist(),
        table.column(label_column).to_pylist(),
        f"{Path(path).name}: {label_column} ({'' if split == 'all' else split + ' split, '}{table.num_rows} rows)",
        field=label_column,
    )


def from_folder(root: str | Path, limit: int | None = None) -> LabelledImages:
    """``root/<label>/<image files>`` (the ImageFolder layout)."""
    root = Path(root)
    pairs = [
        (str(f), d.name)
        for d in sorted(p for p in root.iterdir() if p.is_dir())
        for f in sorted(d.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        raise InputError(f"{root}: no images in class sub-folders (expected {root}/<label>/<image>)")
    pairs = pairs[:limit] if limit is not None else pairs
    return LabelledImages([p for p, _ in pairs], [lbl for _, lbl in pairs], f"{root.name} ({len(pairs)} images)")


def labelled_images(
    *,
    data: str | Path | None = None,
    dataset: str | None = None,
    image_column: str = "image",
    label_column: str | None = None,
    limit: int | None = None,
    split: str = "all",
) -> LabelledImages:
    if (data is None) == (dataset is None):
        raise InputError("give exactly one of --data or --dataset")
    if dataset is not None:
        if dataset not in DATASETS:
            raise InputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
        return fashion_mnist(limit) if dataset == "fashion-mnist" else ccp_val(limit)
    path = Path(data).expanduser()
    if path.is_dir() and not any(path.glob("*.parquet")):
        return from_folder(path, limit)
    if not label_column:
        raise InputError("--label-column is required for a parquet catalog")
    return from_parquet(path, image_column, label_column, limit, split)


def in_language(
    data: LabelledImages, lang: str, labels: list[str] | None = None
) -> tuple[LabelledImages, list[str] | None, dict[str, str]]:
    """``data`` with its labels named in ``lang``, the candidate ``labels`` likewise, and the names given.

    The names come from the term table (:meth:`~vestis.data.terms.Terms.labels`: one distinct
    name per value, over the values present and the candidates), so the classes and the items
    are the same as in English: only the words change. English returns ``data`` as it is.
    """
    if lang == "en":
        return data, labels, {}
    from vestis.data.terms import load_terms

    terms = load_terms(lang)
    if data.field is None or data.field not in terms.fields():
        raise InputError(
            f"{data.description}: its labels are no field of the {lang} term table "
            f"({', '.join(terms.fields())}), so they have no {lang} names"
        )
    values = {str(v) for v in data.labels if v is not None and str(v).strip()}
    values = sorted(values | set(labels or []) | set(data.classes or []))
    names = terms.labels(data.field, values)
    translated = [names[str(v)] if v is not None and str(v).strip() else v for v in data.labels]
    classes = [names[c] for c in data.classes] if data.classes else None
    described = f"{data.description}, labels in {lang}"
    out = LabelledImages(data.images, translated, described, classes=classes, field=data.field)
    return out, [names[c] for c in labels] if labels else None, names
