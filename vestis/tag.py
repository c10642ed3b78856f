"""Zero-shot tagging of whole catalogs against one or more taxonomies.

A taxonomy is a named list of labels with prompt templates. Built-in ones come from
the KAGL fields (``vestis/data/taxonomies/kagl.yaml``): ``kagl`` (all of them) or a field's
name (``articleType``), and the same in Chinese, ``kagl-zh`` or ``articleType-zh`` (labels from
the term table ``vestis/data/terms_zh.yaml``, Chinese prompt templates); others from a YAML/JSON file
(``{name: [labels]}`` or ``{name: {labels: [...], templates: [...]}}``), a text file
(one label per line; the taxonomy takes the file's name) or a comma-separated list.
Tagging an index reuses the image vectors it stores; tagging a catalog file embeds it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from vestis.classify import DEFAULT_TEMPLATES, Prediction, label_embeddings, language_templates, top_labels
from vestis.data.terms import LANGUAGES, load_terms
from vestis.errors import InputError
from vestis.models.base import Encoder
from vestis.models.preprocess import ImageInput

#: Limits on labels from network clients (``parse_labels(..., allow_files=False)``).
MAX_LABELS = 1000
MAX_LABEL_CHARS = 200
MAX_TEMPLATE_CHARS = 300


@dataclass(frozen=True)
class Taxonomy:
    name: str
    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES


def builtin_taxonomies(lang: str = "en") -> dict[str, Taxonomy]:
    """The KAGL fields' taxonomies; in another language (``zh``) named ``<field>-<lang>``, labels and
    templates in that language (one distinct name per label, :meth:`vestis.data.terms.Terms.labels`)."""
    text = resources.files("vestis.data").joinpath("taxonomies", "kagl.yaml").read_text()
    english = {name: _taxonomy(name, spec, "kagl.yaml") for name, spec in yaml.safe_load(text).items()}
    if lang == "en":
        return english
    terms, templates = load_terms(lang), language_templates(lang)
    out = {}
    for t in english.values():
        name = f"{t.name}-{lang}"
        out[name] = Taxonomy(name, tuple(terms.labels(t.name, list(t.labels)).values()), templates)
    return out


def builtin_groups() -> dict[str, dict[str, Taxonomy]]:
    """Every built-in taxonomy, under the name that asks for all of a language's (``kagl``, ``kagl-zh``)."""
    return {"kagl": builtin_taxonomies(), **{f"kagl-{lang}": builtin_taxonomies(lang) for lang in LANGUAGES}}


def all_builtin_taxonomies() -> dict[str, Taxonomy]:
    """Every built-in taxonomy by its own name, English first."""
    return {name: t for group in builtin_groups().values() for name, t in group.items()}


def _taxonomy(name: str, spec: object, source: str, *, limits: bool = False) -> Taxonomy:
    if isinstance(spec, dict):
        labels, templates = spec.get("labels"), spec.get("templates") or list(DEFAULT_TEMPLATES)
    else:
        labels, templates = spec, list(DEFAULT_TEMPLATES)
    if isinstance(labels, str):
        labels = labels.split(",")
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, (str, int, float)) for x in labels):
        raise InputError(f"{source}: taxonomy {name!r} needs a non-empty list of labels")
    labels = [str(x).strip() for x in labels if str(x).strip()]
    if not labels:
        raise InputError(f"{source}: taxonomy {name!r} needs a non-empty list of labels")
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise InputError(f"{source}: taxonomy {name!r} repeats labels {', '.join(dup)}")
    if not isinstance(templates, (list, tuple)) or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise InputError(f"{source}: taxonomy {name!r}: every template must contain '{{}}'")
    if limits and (len(labels) > MAX_LABELS or any(len(x) > MAX_LABEL_CHARS for x in labels)):
        raise InputError(f"{source}: give 1 to {MAX_LABELS} labels of at most {MAX_LABEL_CHARS} characters")
    if limits and any(len(t) > MAX_TEMPLATE_CHARS for t in templates):
        raise InputError(f"{source}: a template has more than {MAX_TEMPLATE_CHARS} characters")
    return Taxonomy(str(name), tuple(labels), tuple(templates))


def builtin_taxonomy(names: str | Sequence[str]) -> list[Taxonomy]:
    """Built-in taxonomies by name (``kagl``: all of them); an unknown name is an error naming them."""
    groups = builtin_groups()
    builtin = {name: t for group in groups.values() for name, t in group.items()}
    out: list[Taxonomy] = []
    for name in [names] if isinstance(names, str) else names:
        name = name.strip()
        if name in groups:
            out += groups[name].values()
        elif name in builtin:
            out.append(builtin[name])
        else:
            english = ", ".join(["kagl", *groups["kagl"]])
            others = ", ".join(f"-{lang}" for lang in LANGUAGES)
            raise InputError(f"no built-in taxonomy {name!r}; they are: {english}, each also ending in {others} "
                             f"for its labels in {'/'.join(LANGUAGES)} (kagl-zh, articleType-zh)")  # fmt: skip
    return out


def parse_labels(
    specs: str | Sequence[str | Mapping] = (),
    *,
    taxonomies: Sequence[str] = (),
    templates: Sequence[str] | None = None,
    allow_files: bool = True,
) -> list[Taxonomy]:
    """Taxonomies from ``--labels`` values (see the module docstring); names must be unique.

    A spec is a file, built-in names (``kagl``, ``kagl-zh``, ``articleType,usage``), a comma-separated list of
    labels, or a mapping as a taxonomy file holds it (``{"colours": ["red", "blue"]}``).
    ``taxonomies``: built-in names only (an unknown one is an error, never a label). ``templates``
    replace every taxonomy's prompt templates. ``allow_files=False`` (specs from network clients)
    never reads a path from disk and caps each taxonomy at 1000 labels of 200 characters.
    """
    specs = [specs] if isinstance(specs, (str, Mapping)) else list(specs)
    if not specs and not taxonomies:
        raise InputError("give --labels: a file, built-in taxonomy names (kagl, kagl-zh, articleType, ...) or a list")
    groups = builtin_groups()
    builtin = {name: t for group in groups.values() for name, t in group.items()}
    limits = not allow_files
    out: list[Taxonomy] = builtin_taxonomy(taxonomies) if taxonomies else []
    for spec in specs:
        if isinstance(spec, Mapping):
            if not spec:
                raise InputError("labels: an empty mapping")
            out += [_taxonomy(str(name), value, "labels", limits=limits) for name, value in spec.items()]
            continue
        spec = spec.strip()
        path = Path(spec).expanduser()
        if spec in groups:
            out += groups[spec].values()
        elif allow_files and path.is_file():
            out += _from_file(path)
        elif spec and all(p.strip() in builtin for p in spec.split(",")):
            out += [builtin[p.strip()] for p in spec.split(",")]
        else:
            labels = [x.strip() for x in spec.split(",") if x.strip()]
            if not labels:
                raise InputError(f"--labels {spec!r}: no labels")
            name = "label" if len(specs) == 1 else f"labels{len(out) + 1}"
            out.append(_taxonomy(name, labels, "--labels", limits=limits))
    if templates is not None:
        out = [_taxonomy(t.name, {"labels": list(t.labels), "templates": list(templates)}, "templates", limits=limits)
               for t in out]  # fmt: skip
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InputError(f"taxonomy names must be unique, got {', '.join(names)}")
    return out


def _from_file(path: Path) -> list[Taxonomy]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise InputError(f"{path}: not valid {path.suffix[1:].upper()} ({str(exc).splitlines()[0]})") from None
        if isinstance(data, list):
            return [_taxonomy(path.stem, data, str(path))]
        if isinstance(data, dict) and data:
            return [_taxonomy(name, spec, str(path)) for name, spec in data.items()]
        raise InputError(f"{path}: expected a list of labels or a mapping of taxonomy names to labels")
    labels = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [_taxonomy(path.stem, labels, str(path))]


class LabelCache:
    """Label embeddings of recently used taxonomies (least recently used dropped past ``size``),
    for callers that tag again and again with one encoder (a server). Thread-safe."""

    def __init__(self, encoder: Encoder, size: int = 64) -> None:
        self.encoder = encoder
        self.size = size
        self._vectors: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, taxonomy: Taxonomy) -> np.ndarray:
        key = (taxonomy.labels, taxonomy.templates)
        with self._lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        vectors = label_embeddings(self.encoder, taxonomy.labels, taxonomy.templates)
        with self._lock:
            self._vectors[key] = vectors
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vectors


def tag_vectors(
    encoder: Encoder,
    image_vectors: np.ndarray,
    taxonomies: Sequence[Taxonomy],
    k: int = 3,
    *,
    labels: LabelCache | None = None,
) -> dict[str, list[list[Prediction]]]:
    """Top-``k`` labels (softmax over each taxonomy) for each image vector; ``labels``: a cache of
    label embeddings to use (else they are embedded anew)."""
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    embed = labels or (lambda t: label_embeddings(encoder, t.labels, t.templates))
    return {
        t.name: top_labels(image_vectors, embed(t), t.labels, k=k, logit_scale=encoder.logit_scale) for t in taxonomies
    }


def tags_table(ids: list, tags: dict[str, list[list[Prediction]]], errors: dict[int, str]) -> pa.Table:
    """One row per id: ``<taxonomy>`` (top label), ``<taxonomy>_score``, ``<taxonomy>_top`` (top-k list),
    and ``error`` (why an item has no tags). ``tags`` rows follow the ids that have no error."""
    ok = [i for i in range(len(ids)) if i not in errors]
    top_type = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))
    arrays: dict[str, pa.Array] = {}
    for name, preds in tags.items():
        label, score, top = [None] * len(ids), [None] * len(ids), [None] * len(ids)
        for i, p in zip(ok, preds):
            label[i], score[i] = p[0].label, p[0].score
            top[i] = [{"label": x.label, "score": x.score} for x in p]
        arrays[name] = pa.array(label, pa.string())
        arrays[f"{name}_score"] = pa.array(score, pa.float32())
        arrays[f"{name}_top"] = pa.array(top, top_type)
    arrays["error"] = pa.array([errors.get(i) for i in range(len(ids))], pa.string())
    return pa.table({"id": pa.array(ids), **arrays})


def _taxonomies(labels: str | Sequence[str] | Sequence[Taxonomy]) -> list[Taxonomy]:
    """Taxonomy objects as given, or parsed from names/files/lists (see :func:`parse_labels`)."""
    if isinstance(labels, Taxonomy):
        return [labels]
    items = [labels] if isinstance(labels, str) else list(labels)
    if items and all(isinstance(t, Taxonomy) for t in items):
        return items
    if not all(isinstance(t, str) for t in items):
        raise InputError("labels must be taxonomy names, label lists ('a,b,c'), files, or Taxonomy objects")
    return parse_labels(items)


def _to_pandas(table: pa.Table):
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return table.to_pandas()


@dataclass
class TagReport:
    """What :func:`tag_catalog` did: the parquet file written, and the items it could not tag."""

    out: Path
    items: int
    tagged: int
    failed: list[dict]  # {"id", "reason"}
    taxonomies: dict[str, int]  # taxonomy name -> number of labels
    model: str

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "items": self.items, "tagged": self.tagged, "failed": self.failed,
            "taxonomies": self.taxonomies, "model": self.model,
        }  # fmt: skip

    def table(self) -> pa.Table:
        """The tags as written: one row per item (see :func:`tags_table`)."""
        return pq.read_table(self.out)

    def to_pandas(self):
        """The tags as a pandas DataFrame (needs pandas)."""
        return _to_pandas(self.table())


def tag_catalog(
    source: str | Path,
    labels: str | Sequence[str] | Sequence[Taxonomy],
    out: str | Path,
    *,
    encoder: Encoder | None = None,
    model: str | None = None,
    k: int = 3,
    id_column: str = "id",
    image_column: str = "image",
    quiet: bool = False,
) -> TagReport:
    """Tag every product of a catalog file/folder or an index directory; write a parquet file.

    ``labels``: :class:`Taxonomy` objects, or what ``--labels`` takes: built-in names
    (``"kagl"``, ``"articleType,baseColour"``), a YAML/JSON/text file, or ``"a,b,c"``.
    """
    from vestis.index.local import is_index_dir
    from vestis.index.store import load_index_encoder
    from vestis.index.stores import is_store_url, open_store
    from vestis.models import load_encoder

    taxonomies = _taxonomies(labels)
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise InputError(f"--out {out}: the tags are written as parquet; name the file *.parquet")
    errors: dict[int, str] = {}
    if is_store_url(source) or is_index_dir(source):
        with open_store(source) as store:
            encoder = encoder or (load_encoder(model) if model else load_index_encoder(store.info))
            if encoder.fingerprint != store.info.fingerprint:
                raise InputError(f"{source} holds {store.info.model!r} vectors; tag it with that model")
            all_ids = store.all_ids()
            with_image, vectors = store.image_vectors()
            records = store.get(all_ids)
        have = set(with_image)
        ordered = [i for i in all_ids if i in have] + [i for i in all_ids if i not in have]
        errors = {n: "no readable image" for n, i in enumerate(ordered) if i not in have}
        ids = [records[i].id_value for i in ordered]
    else:
        from vestis.data.catalog import CatalogReader
        from vestis.embed import embed_images

        encoder = encoder or load_encoder(model)
        reader = CatalogReader.open(source, id_column=id_column, image_column=image_column)
        items = [item for batch in reader.batches() for item in batch]
        images = [item.image if item.image is not None else b"" for item in items]
        embedded = embed_images(encoder, images, quiet=quiet, description="tagging")
        errors = {i: reason for i, reason in embedded.failed}
        ids = [item.id for item in items]
        vectors = embedded.vectors[embedded.ok]
    tags = tag_vectors(encoder, vectors, taxonomies, k=k)
    table = tags_table(ids, tags, errors)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return TagReport(
        out=out,
        items=len(ids),
        tagged=len(ids) - len(errors),
        failed=[{"id": ids[i], "reason": r} for i, r in sorted(errors.items())],
        taxonomies={t.name: len(t.labels) for t in taxonomies},
        model=encoder.name,
    )


@dataclass(frozen=True)
class ImageLabels:
    """One image's top labels in each taxonomy."""

    image: str
    labels: dict[str, list[Prediction]]

    def to_dict(self) -> dict:
        preds = {t: [{"label": p.label, "score": round(p.score, 6)} for p in ps] for t, ps in self.labels.items()}
        return {"image": self.image, "labels": preds}


@dataclass
class Classification:
    """What :func:`classify` returns: labels per readable image, and why the others failed."""

    model: str
    taxonomies: list[str]
    rows: list[ImageLabels]
    failed: list[dict]  # {"image", "error"}

    def to_dict(self) -> dict:
        return {"model": self.model, "results": [r.to_dict() for r in self.rows], "failed": self.failed}

    def to_pandas(self):
        """One row per image, taxonomy and rank (needs pandas)."""
        rows = [
            {"image": r.image, "taxonomy": t, "rank": n, "label": p.label, "score": p.score}
            for r in self.rows
            for t, preds in r.labels.items()
            for n, p in enumerate(preds, 1)
        ]
        return _to_pandas(pa.Table.from_pylist(rows))


def classify(
    images: Sequence[ImageInput],
    labels: str | Sequence[str] | Sequence[Taxonomy],
    *,
    encoder: Encoder | None = None,
    model: str | None = None,
    k: int = 3,
) -> Classification:
    """Zero-shot classify a few images: the top-``k`` labels of each taxonomy for each image.

    ``labels`` as for :func:`tag_catalog`.  Unreadable images are reported in
    ``failed``, not raised, so one bad file does not hide the others' labels.
    """
    from vestis.embed import embed_images
    from vestis.models import load_encoder

    taxonomies = _taxonomies(labels)
    images = list(images)
    encoder = encoder or load_encoder(model)
    embedded = embed_images(encoder, images, quiet=True)
    ok = [i for i in range(len(images)) if embedded.ok[i]]
    tags = tag_vectors(encoder, embedded.vectors[ok], taxonomies, k=k) if ok else {t.name: [] for t in taxonomies}
    rows = [ImageLabels(_name(images[i]), {t: tags[t][n] for t in tags}) for n, i in enumerate(ok)]
    failed = [{"image": _name(images[i]), "error": reason} for i, reason in embedded.failed]
    return Classification(encoder.name, [t.name for t in taxonomies], rows, failed)


def _name(image: ImageInput) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return f"<{type(image).__name__}>"
