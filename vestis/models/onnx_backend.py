"""ONNX backend: separate image and text graphs run by onnxruntime.

The layout is the one FashionCLIP's and Marqo-FashionCLIP's ONNX exports use
(Optimum / transformers.js): ``onnx/vision_model.onnx`` (``pixel_values`` ->
``image_embeds``) and ``onnx/text_model.onnx`` (``input_ids`` [,
``attention_mask``] -> ``text_embeds``), beside the tokenizer files and
``preprocessor_config.json``.  Quantised variants sit next to them as
``*_quantized.onnx`` or ``*_int8.onnx``.  Graphs exported with a fixed batch of
one (Chinese-CLIP's own export) are run one item at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vestis.errors import ModelFormatError
from vestis.models.base import Encoder
from vestis.models.preprocess import ImageConfig
from vestis.models.registry import cache_root
from vestis.models.runtime import cpu_count
from vestis.models.text import TextTokenizer

VARIANT_SUFFIXES = {"fp32": ("",), "int8": ("_quantized", "_int8", "_uint8")}
#: Metadata vestis writes beside its own exports (logit scale, context length, dim).
META_FILE = "vestis_onnx.json"


def find_graphs(directory: Path, precision: str = "fp32") -> tuple[Path, Path]:
    """Paths of (vision, text) graphs in ``directory`` or its ``onnx/`` folder.

    A vestis export names its graphs per precision in ``vestis_onnx.json``
    (an int8 export may keep a tower in fp32 where int8 did not pass parity).
    A single combined ``model.onnx`` (how FashionCLIP's own repository ships
    its ONNX file) is split into the two towers once and cached.
    """
    if precision not in VARIANT_SUFFIXES:
        raise ModelFormatError(f"the ONNX backend runs {' or '.join(VARIANT_SUFFIXES)}, not {precision!r}")
    folders = (Path(directory) / "onnx", Path(directory))
    for folder in folders:
        meta_path = folder / META_FILE
        if meta_path.is_file():
            graphs = json.loads(meta_path.read_text()).get("graphs", {}).get(precision)
            if graphs:
                vision, text = folder / graphs["vision"], folder / graphs["text"]
                if vision.is_file() and text.is_file():
                    return vision, text
    for folder in folders:
        for suffix in VARIANT_SUFFIXES[precision]:
            vision, text = folder / f"vision_model{suffix}.onnx", folder / f"text_model{suffix}.onnx"
            if vision.is_file() and text.is_file():
                return vision, text
    if precision == "fp32":
        for folder in folders:
            if (folder / "model.onnx").is_file():
                return split_combined(folder / "model.onnx")
    raise ModelFormatError(
        f"{directory}: no ONNX graph pair for precision {precision}; expected "
        "onnx/vision_model.onnx and onnx/text_model.onnx (or *_quantized.onnx for int8), "
        "or a combined onnx/model.onnx (vestis export onnx MODEL --out DIR [--int8] writes them)"
    )


def split_combined(path: Path) -> tuple[Path, Path]:
    """Extract the image and text towers of a combined CLIP graph into the vestis cache."""
    import hashlib
    import os
    import tempfile

    import onnx
    from onnx.utils import Extractor

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "onnx-split" / key
    vision, text = target / "vision_model.onnx", target / "text_model.onnx"
    if vision.is_file() and text.is_file():
        return vision, text
    try:
        model = onnx.load(str(path))
        inputs = {i.name for i in model.graph.input}
        outputs = {o.name for o in model.graph.output}
        if not {"pixel_values", "input_ids"} <= inputs or not {"image_embeds", "text_embeds"} <= outputs:
            raise ModelFormatError(
                f"{path}: a combined graph needs inputs pixel_values, input_ids and outputs "
                f"image_embeds, text_embeds (has {sorted(inputs)} -> {sorted(outputs)})"
            )
        extractor = Extractor(model)
        text_inputs = [n for n in ("input_ids", "attention_mask") if n in inputs]
        parts = {
            vision: extractor.extract_model(["pixel_values"], ["image_embeds"]),
            text: extractor.extract_model(text_inputs, ["text_embeds"]),
        }
    except ModelFormatError:
        raise
    except Exception as exc:
        raise ModelFormatError(f"{path}: cannot split the combined ONNX graph ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent))
    for dest, part in parts.items():
        onnx.save(part, str(tmp / dest.name))
    try:
        os.replace(tmp, target)  # atomic: another process may have won the race
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return vision, text


def available_precisions(directory: Path) -> list[str]:
    """The precisions ``directory`` has a graph pair for."""
    out = []
    for precision in VARIANT_SUFFIXES:
        try:
            find_graphs(directory, precision)
        except ModelFormatError:
            continue
        out.append(precision)
    return out


def _session(path: Path, threads: int | None, spinning: bool = True) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads.

    ``spinning``: whether idle pool threads busy-wait for the next operator.
    That saves about a millisecond per text query, but while images are being
    decoded beside inference the spinning threads would take the decoders'
    cores, so image graphs run with it off.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_count()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFormatError(f"{path}: cannot load ONNX graph ({exc})") from None


def _output_name(session: Any, preferred: str) -> str:
    names = [o.name for o in session.get_outputs()]
    if preferred in names:
        return preferred
    for o in session.get_outputs():
        if len(o.shape) == 2:
            return o.name
    raise ModelFormatError(f"ONNX graph has no {preferred!r} output (outputs: {names})")


def _fixed_batch_one(session: Any) -> bool:
    dim = session.get_inputs()[0].shape[0]
    return isinstance(dim, int) and dim == 1


class OnnxEncoder(Encoder):
    """Runs a pair of ONNX graphs with onnxruntime on the CPU."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        tokenizer: TextTokenizer,
        image_config: ImageConfig,
        precision: str = "fp32",
        batch_size: int = 32,
        threads: int | None = None,
        logit_scale: float | None = None,
    ) -> None:
        vision_path, text_path = find_graphs(directory, precision)
        self.vision = _session(vision_path, threads, spinning=False)
        self.text = _session(text_path, threads, spinning=True)
        self.graphs = (vision_path, text_path)
        self.precision = precision
        self.threads = threads
        self.name = name
        self.tokenizer = tokenizer
        self.image_config = image_config
        self.batch_size = batch_size
        self.max_run_batch = 32
        self._vision_out = _output_name(self.vision, "image_embeds")
        self._text_out = _output_name(self.text, "text_embeds")
        self._text_inputs = {i.name for i in self.text.get_inputs()}
        if "input_ids" not in self._text_inputs:
            raise ModelFormatError(f"{text_path}: text graph has no 'input_ids' input")
        self._vision_input = self.vision.get_inputs()[0].name
        self._one_at_a_time = _fixed_batch_one(self.vision) or _fixed_batch_one(self.text)
        meta = read_meta(directory)
        dims = [d for d in (self.vision.get_outputs()[0].shape[-1], meta.get("dim")) if isinstance(d, int)]
        if not dims:
            probe = self._forward_texts(*tokenizer(["a"]))
            dims = [probe.shape[1]]
        self.dim = int(dims[0])
        self.logit_scale = float(logit_scale if logit_scale is not None else meta.get("logit_scale", 100.0))
        self.runtime = f"onnxruntime {precision} ({vision_path.name}, {text_path.name})"

    def _run(self, session: Any, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One graph call per ``max_run_batch`` items (one per item for a fixed-batch-1 graph).

        onnxruntime runs a ViT-B/32 image graph at batch 256 about 20% slower than
        the same images 32 at a time (its element-wise passes over the activations
        fall out of cache; ``docs/speed.md``), so a large batch handed to vestis is
        cut into runs of at most ``max_run_batch``.
        """
        n = next(iter(feeds.values())).shape[0]
        step = 1 if self._one_at_a_time else self.max_run_batch
        if n <= step:
            return session.run([output], feeds)[0]
        rows = [session.run([output], {k: v[i : i + step] for k, v in feeds.items()})[0] for i in range(0, n, step)]
        return np.concatenate(rows, axis=0)

    def _forward_images(self, pixel_values: np.ndarray) -> np.ndarray:
        return self._run(self.vision, self._vision_out, {self._vision_input: pixel_values})

    def _forward_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids}
        if "attention_mask" in self._text_inputs:
            feeds["attention_mask"] = attention_mask
        if "token_type_ids" in self._text_inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return self._run(self.text, self._text_out, feeds)


def read_meta(directory: Path) -> dict[str, Any]:
    for folder in (Path(directory) / "onnx", Path(directory)):
        path = folder / META_FILE
        if path.is_file():
            return json.loads(path.read_text())
    return {}
