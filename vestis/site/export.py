"""``export_site``: a catalog as a static folder that searches itself in the browser, with no server.

Layout of a site folder (``vestis export site DIR --out site/``)::

    index.html, site.js, wordpiece.js, style.css   the page (static/), its tokenizer
    vestis-site.json      what the page needs to know: model, tokenizer settings, files, parity
    vocab.txt             the text tower's WordPiece vocabulary (one token per line, id = line)
    chars.json            what the tokenizer does to each code point (:func:`vestis.site.tokenizer.char_tables`)
    model/text_model.onnx the query (text) tower: int8 where it passes parity, else fp32
    vectors.f16           the catalog's document vectors, float16, row-major (n x dim)
    items.json            ids, per-field values (dictionary-encoded) and thumbnail types, in vector order
    thumbs/<k>/<i>.<ext>  item i's thumbnail (k = i // 1000), fetched only when a result shows it
    vendor/onnxruntime-web/  onnxruntime-web's WebAssembly build and its licence (pinned; :mod:`vestis.site.runtime`)

**Vectors are float16**: the index stores float16 (format 2), so the page holds exactly the
vectors ``vestis search`` scans and its ranking is the same (tested on 50 queries); int8 would
halve them (10 MB instead of 20 MB at 40k items) but re-rank near ties, and at 40k items the
fixed part (runtime and model) is the larger share anyway.

**The text tower** is vestis-mini's (frozen all-MiniLM-L6-v2 + the learned head), from the
verified ``vestis export text-tower`` graph with its MiniLM weights copied in.  Its int8
variant stores the weights in int8, blocks of 32 with a scale each, and computes in fp32
(:func:`vestis.export.quantize_weights_only`: 25 MB instead of 92 MB); it is shipped when it
passes the parity check ``vestis export`` uses (:func:`vestis.models.parity.compare` against
the torch fp32 model: every text cosine >= 0.99, zero-shot top-1 agreement >= 0.99), else
fp32.  (Dynamic int8, which also quantises the activations, fails that check on MiniLM:
text cosine min 0.85 per tensor, 0.976 per channel, 0.985 with the MLP down-projections in
fp32.)  The choice depends on the model and the parity sample only, so it is cached under
``<vestis cache>/site/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vestis.errors import InputError
from vestis.models.preprocess import image_mime

SITE_FORMAT = 1
MANIFEST = "vestis-site.json"
STATIC_FILES = ("index.html", "site.js", "wordpiece.js", "style.css")
VENDOR_DIR = "vendor/onnxruntime-web"
TEXT_GRAPH = "model/text_model.onnx"
THUMBS_PER_FOLDER = 1000
PRECISIONS = ("auto", "int8", "fp32")
_CHUNK = 1000


@dataclasses.dataclass
class SiteReport:
    """What :func:`export_site` wrote."""

    out: str
    items: int
    dim: int
    model: str
    vectors: str
    text_precision: str
    text_method: str
    text_parity: dict[str, Any] | None
    sizes_mb: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def export_site(
    location: str | Path,
    out: str | Path,
    *,
    text_precision: str = "auto",
    parity: Any = (500, 500),
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> SiteReport:
    """Write the catalog at ``location`` (an index directory or store URL) as a static site in ``out``.

    ``text_precision``: ``"auto"`` (int8 where it passes parity, else fp32), ``"int8"`` (an
    error when no int8 variant passes) or ``"fp32"``.  ``parity``: the
    :class:`~vestis.models.parity.ParityData` to measure int8 on, or (images, titles) to take
    from KAGL (default 500 and 500, as ``vestis export``; read only when no choice is cached).
    ``out`` must be absent, empty, or an earlier site (replaced).
    """
    from vestis.search import Catalog

    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    if text_precision not in PRECISIONS:
        raise InputError(f"text precision must be one of {', '.join(PRECISIONS)}, not {text_precision!r}")
    out = Path(out)
    _check_out(out)
    from vestis.site.runtime import runtime_files

    runtime = runtime_files()  # before any long work: say now if onnxruntime-web was never fetched
    with Catalog.open(location, threads=threads) as catalog:
        model_dir = _text_tower_dir(catalog)
        info = catalog.store.info
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            _copy_static(staging, runtime)
            vocab, tok_config = _write_tokenizer(staging, model_dir, catalog.encoder.context_length)
            graph = site_text_graph(model_dir, text_precision, parity=parity, threads=threads, log=say)
            (staging / TEXT_GRAPH).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(graph["path"], staging / TEXT_GRAPH)
            say(f"text tower: {graph['precision']} ({graph['method']})")
            n, lossless = _write_items(catalog.store, staging, info.dim, say)
            if n == 0:
                raise InputError(f"{location}: the index is empty; there is nothing to search")
            manifest = {
                "format": SITE_FORMAT,
                "model": info.model,
                "fingerprint": info.fingerprint,
                "dim": info.dim,
                "count": n,
                "vectors": {
                    "file": "vectors.f16",
                    "dtype": "float16",
                    "shape": [n, info.dim],
                    "lossless": lossless,
                },  # fmt: skip
                "items": "items.json",
                "thumbs": {"pattern": "thumbs/{folder}/{i}.{ext}", "per_folder": THUMBS_PER_FOLDER},
                "text_model": {
                    "file": TEXT_GRAPH,
                    "precision": graph["precision"],
                    "method": graph["method"],
                    "parity": graph.get("parity"),
                    "inputs": ["input_ids", "attention_mask"],
                    "output": "text_embeds",
                    "pad_id": vocab.index("[PAD]") if "[PAD]" in vocab else 0,
                },
                "tokenizer": {"vocab": "vocab.txt", **tok_config},
                "query": _query_rules(),
                "runtime": _runtime_entry(),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            sizes = site_sizes(staging)
            _replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    report = SiteReport(
        out=str(out),
        items=n,
        dim=info.dim,
        model=info.model,
        vectors="float16" + ("" if lossless else " (rounded from the index's float32)"),
        text_precision=graph["precision"],
        text_method=graph["method"],
        text_parity=graph.get("parity"),
        sizes_mb=sizes,
        seconds=round(time.perf_counter() - t0, 1),
    )
    say(f"wrote {out}: {n} items, {sizes['total']:.1f} MB ({sizes['first_load']:.1f} MB before the first result)")
    return report


# ---------------------------------------------------------------------------- checks


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"--out {out} is a folder that holds other files; give a new or empty folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: its parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--out {out}: cannot write into {parent}")


def _text_tower_dir(catalog: Any) -> Path:
    """The model folder of a catalog built with vestis-mini's MiniLM text tower, its export verified."""
    from vestis.models.loading import resolve
    from vestis.models.mini_text_onnx import text_onnx_verified

    enc = catalog.encoder
    cfg = getattr(enc, "cfg", None) or getattr(getattr(enc, "model", None), "cfg", None)
    if cfg is None or getattr(cfg, "text_tower", None) != "minilm":
        raise InputError(
            f"the page runs vestis-mini's text tower (MiniLM WordPiece); this index was built with {enc.name!r}"
        )
    _, directory, _ = resolve(catalog.store.info.model)
    if directory is None or not text_onnx_verified(directory):
        raise InputError(
            f"{catalog.store.info.model}: its ONNX text tower is missing or stale; "
            f"run `vestis export text-tower {catalog.store.info.model}` first"
        )
    return Path(directory)


# ---------------------------------------------------------------------------- files


def _copy_static(staging: Path, runtime: Path) -> None:
    from vestis.site.runtime import FILES, LICENSE_FILE

    static = resources.files("vestis.site").joinpath("static")
    for name in STATIC_FILES:
        (staging / name).write_bytes(static.joinpath(name).read_bytes())
    vendor = staging / VENDOR_DIR
    vendor.mkdir(parents=True)
    for name in (*FILES, LICENSE_FILE):
        shutil.copyfile(runtime / name, vendor / name)


def _write_tokenizer(staging: Path, model_dir: Path, context_length: int) -> tuple[list[str], dict[str, Any]]:
    from vestis.models.mini_config import text_model_dir
    from vestis.models.mini_text_onnx import _config
    from vestis.site.tokenizer import read_tokenizer

    spec = text_model_dir(_config(model_dir).text_model) / "tokenizer.json"
    vocab, config = read_tokenizer(spec, context_length)
    (staging / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    shutil.copyfile(_char_tables(spec), staging / "chars.json")
    return vocab, {**config, "chars": "chars.json"}


def _char_tables(spec: Path) -> Path:
    """chars.json for the tokenizer file ``spec`` (:func:`vestis.site.tokenizer.char_tables`), cached."""
    import tokenizers

    from vestis.models.registry import file_digest
    from vestis.site.tokenizer import char_tables

    key = hashlib.sha256(f"{file_digest(spec)} {tokenizers.__version__}".encode()).hexdigest()[:20]
    path = _site_cache() / f"chars-{key}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(path.name + f".{os.getpid()}.tmp")
        staged.write_text(json.dumps(char_tables(spec), separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
        staged.replace(path)
    return path


def _query_rules() -> dict[str, Any]:
    """How the page reads a query: the same weighted-terms rules as :func:`vestis.search.parse_terms`."""
    from vestis.search import NEGATIVE_WEIGHT

    return {"negative_weight": NEGATIVE_WEIGHT, "separator": ","}


def _runtime_entry() -> dict[str, Any]:
    from vestis.site.runtime import FILES, INTEGRITY, PACKAGE, VERSION

    return {"package": PACKAGE, "version": VERSION, "integrity": INTEGRITY, "dir": VENDOR_DIR, "files": list(FILES)}


#: File extensions of the thumbnail formats a build writes (:func:`vestis.models.preprocess.image_mime`).
_THUMB_EXTS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def _thumb_ext(data: bytes | None) -> str:
    return _THUMB_EXTS.get(image_mime(data), "") if data else ""


def _write_items(store: Any, staging: Path, dim: int, say: Callable[[str], None]) -> tuple[int, bool]:
    """vectors.f16, items.json and thumbs/ in the store's order; (count, whether the vectors were float16 already)."""
    from vestis.search import json_safe

    ids = store.all_ids()
    n = len(ids)
    vectors = np.zeros((n, dim), dtype=np.float16)
    lossless = True
    id_values: list[Any] = []
    fields: dict[str, list[Any]] = {}
    exts: list[str] = []
    thumbs = staging / "thumbs"
    last = time.monotonic()
    for start in range(0, n, _CHUNK):
        part = ids[start : start + _CHUNK]
        records = store.get(part, vectors=True, thumbnails=True)
        for offset, item_id in enumerate(part):
            i = start + offset
            rec = records[item_id]
            half = rec.vector.astype(np.float16)
            lossless = lossless and bool(np.array_equal(half.astype(np.float32), rec.vector))
            vectors[i] = half
            id_values.append(json_safe(rec.id_value if rec.id_value is not None else rec.id))
            for key, value in rec.metadata.items():
                column = fields.setdefault(key, [None] * i)
                column.append(json_safe(value))
            for column in fields.values():
                if len(column) < i + 1:
                    column.append(None)
            ext = _thumb_ext(rec.thumbnail)
            exts.append(ext)
            if ext:
                folder = thumbs / str(i // THUMBS_PER_FOLDER)
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{i}.{ext}").write_bytes(rec.thumbnail)
        if time.monotonic() - last > 5:
            say(f"items: {min(start + _CHUNK, n)}/{n}")
            last = time.monotonic()
    vectors.astype("<f2").tofile(staging / "vectors.f16")
    items = {"ids": id_values, "fields": {k: _dictionary(v) for k, v in fields.items()}, "thumbs": _dictionary(exts)}
    (staging / "items.json").write_text(json.dumps(items, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return n, lossless


def _dictionary(column: list[Any]) -> dict[str, list[Any]]:
    """A column as its distinct values and one index per row (-1: missing)."""
    values: list[Any] = []
    index: dict[str, int] = {}
    codes = []
    for v in column:
        if v is None or v == "":
            codes.append(-1)
            continue
        key = json.dumps(v, sort_keys=True)
        if key not in index:
            index[key] = len(values)
            values.append(v)
        codes.append(index[key])
    return {"values": values, "codes": codes}


def _replace(staging: Path, out: Path) -> None:
    """Put the finished site in place of ``out`` (an earlier site is removed only now)."""
    if out.exists():
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
    out.chmod(0o755)


def site_sizes(folder: str | Path) -> dict[str, float]:
    """Megabytes (10^6 bytes) of a site: the whole folder, what the page fetches before its first
    result (everything but thumbnails), and each part."""
    folder = Path(folder)
    parts: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            part = (
                "thumbnails" if rel.startswith("thumbs/")
                else "runtime" if rel.startswith("vendor/")
                else "text_model" if rel.startswith("model/")
                else "vectors" if rel == "vectors.f16"
                else "items" if rel == "items.json"
                else "page"
            )  # fmt: skip
            parts[part] = parts.get(part, 0) + path.stat().st_size
    mb = {k: round(v / 1e6, 3) for k, v in sorted(parts.items())}
    mb["total"] = round(sum(parts.values()) / 1e6, 3)
    mb["first_load"] = round((sum(parts.values()) - parts.get("thumbnails", 0)) / 1e6, 3)
    return mb


# ---------------------------------------------------------------------------- the text graph


def site_text_graph(
    model_dir: Path,
    precision: str = "auto",
    *,
    parity: Any = (500, 500),
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The self-contained text graph to ship: ``{"path", "precision", "method", "parity"}``, cached."""
    from vestis.models.mini_text_onnx import read_record

    say = log or (lambda _msg: None)
    record = read_record(model_dir)
    sample = list(parity) if isinstance(parity, tuple) else [len(parity.images), len(parity.titles), parity.source]
    key = hashlib.sha256(
        json.dumps([record.get("weights_sha256"), record.get("external", {}).get("sha256"), sample, _ort()])
        .encode()
    ).hexdigest()[:20]  # fmt: skip
    folder = _site_cache() / key
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "text_model.onnx"
    if not fp32.is_file():
        _inline_text_graph(model_dir, fp32)
    if precision == "fp32":
        return {"path": fp32, "precision": "fp32", "method": "asked for", "parity": None}
    choice_file = folder / "choice.json"
    if choice_file.is_file():
        choice = json.loads(choice_file.read_text())
        if (folder / choice["file"]).is_file():
            say("text tower: the cached int8 choice")
            return _chosen(folder, choice, precision)
    if isinstance(parity, tuple):
        from vestis.models.parity import parity_data

        parity = parity_data(*parity, 0)
    choice = _choose_int8(model_dir, fp32, parity, threads, say)
    choice_file.write_text(json.dumps(choice, indent=1))
    return _chosen(folder, choice, precision)


def _chosen(folder: Path, choice: dict[str, Any], precision: str) -> dict[str, Any]:
    if choice["precision"] != "int8" and precision == "int8":
        raise InputError("no int8 text tower passes parity (" + "; ".join(choice["tried"]) + "); use auto or fp32")
    return {"path": folder / choice["file"], **{k: v for k, v in choice.items() if k != "file"}}


def _site_cache() -> Path:
    from vestis.models.registry import cache_root

    return cache_root() / "site"


def _ort() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _inline_text_graph(model_dir: Path, target: Path) -> None:
    """The verified text-tower graph with its MiniLM weights copied in from the package (one file).

    Then folded by onnxruntime's basic (provider-independent) optimisations, so that each
    weight's transpose becomes the weight: the matrix products then take initializers, which
    int8 quantisation covers (the export keeps the package's tensors as they are stored).
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    from vestis.models.mini_text_onnx import GRAPH_FILE, TEXT_ONNX_DIR, _minilm_file, read_record

    graph_file = model_dir / TEXT_ONNX_DIR / read_record(model_dir).get("graph", GRAPH_FILE)
    model = onnx.load(str(graph_file), load_external_data=False)
    with open(_minilm_file(model_dir), "rb") as f:
        for init in model.graph.initializer:
            if init.data_location != TensorProto.EXTERNAL:
                continue
            where = {e.key: e.value for e in init.external_data}
            f.seek(int(where["offset"]))
            init.raw_data = f.read(int(where["length"]))
            init.data_location = TensorProto.DEFAULT
            del init.external_data[:]
    raw = target.with_name(target.name + ".raw")
    staged = target.with_name(target.name + ".tmp")
    onnx.save(model, str(raw))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(staged)
    ort.InferenceSession(str(raw), sess_options=opts, providers=["CPUExecutionProvider"])
    raw.unlink()
    staged.replace(target)


def _choose_int8(model_dir: Path, fp32: Path, data: Any, threads: int | None, say: Callable[[str], None]) -> dict:
    """Quantise, then keep the first int8 candidate that passes ``vestis export``'s parity check."""
    from vestis.export import quantize_weights_only
    from vestis.models.loading import load_encoder
    from vestis.models.parity import Embeddings, compare

    t0 = time.perf_counter()
    candidates = [quantize_weights_only(fp32, fp32.with_name("text_model_int8.onnx"))]
    say(f"quantised the text tower in {time.perf_counter() - t0:.0f} s")
    torch_encoder = load_encoder(str(model_dir), runtime="torch", precision="fp32", threads=threads)
    reference = Embeddings.of(torch_encoder, data)
    tokenizer = torch_encoder.tokenizer
    tried: list[str] = []
    choice: dict[str, Any] | None = None
    for cand in candidates:
        path = fp32.with_name(cand["file"])
        titles, labels = (_graph_texts(path, tokenizer, texts, threads) for texts in (data.titles, data.prompts))
        row = compare(reference, Embeddings(reference.images, titles, labels))
        ok = bool(row["text_tower_passed"])
        parity = {k: row[k] for k in ("text_cos_min", "text_cos_mean", "top1_agreement_text_tower", "n_texts")}
        parity.update(passed=ok, data=data.describe(), reference="torch fp32")
        tried.append(
            f"{cand['method']}: {'pass' if ok else 'fail'} (text cos min {row['text_cos_min']:.4f}, "
            f"top-1 {row['top1_agreement_text_tower']:.3f})"
        )
        say(f"int8 text tower, {tried[-1]}")
        if ok and choice is None:
            size = path.stat().st_size
            choice = {"file": cand["file"], "precision": "int8", "method": cand["method"], "parity": parity,
                      "bytes": size}  # fmt: skip
            break
    for cand in candidates:
        if choice is None or cand["file"] != choice["file"]:
            fp32.with_name(cand["file"]).unlink(missing_ok=True)
    if choice is None:
        choice = {"file": fp32.name, "precision": "fp32", "method": "no int8 variant passed parity",
                  "parity": None}  # fmt: skip
    choice["tried"] = tried
    return choice


def _graph_texts(path: Path, tokenizer: Any, texts: list[str], threads: int | None) -> np.ndarray:
    """Unit text embeddings of ``texts`` by the ONNX graph at ``path`` (batches as ``encode_texts`` makes them)."""
    import onnxruntime as ort

    from vestis.models.base import l2_normalize
    from vestis.models.runtime import cpu_count

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_count()
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    out = None
    for idx, ids, mask in tokenizer.batches(list(texts), 64):
        emb = session.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0]
        if out is None:
            out = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
        out[idx] = emb
    return l2_normalize(out)
