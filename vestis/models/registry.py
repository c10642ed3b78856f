"""Named model specs: which format and files each published model expects.

This machine-independent table is what ``vestis models`` prints and what
:func:`vestis.load_encoder` consults for a name.  Files are looked up in, in
order: each folder of ``$VESTIS_MODELS_DIR`` (``os.pathsep``-separated) under
the model's name, ``~/.cache/vestis/models/<name>``, and the Hugging Face hub
cache of its ``hub_id``.  Nothing is downloaded unless asked (``download=True``
or ``VESTIS_DOWNLOAD=1``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

HF_CLIP = "hf-clip"
OPEN_CLIP = "open-clip"
CHINESE_CLIP = "chinese-clip"
ONNX = "onnx"
VESTIS = "vestis"
BUILTIN = "builtin"

FORMATS = (HF_CLIP, OPEN_CLIP, CHINESE_CLIP, ONNX, VESTIS, BUILTIN)
#: Where weights that ship inside the vestis package live (``<name>/``).
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"

_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_CLIP_TOKENIZER = ("tokenizer.json", "vocab.json")
#: Weight file names open_clip reads from a model directory, in its order of preference.
OPEN_CLIP_WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: its on-disk format, where it is published, the files it needs."""

    name: str
    format: str
    description: str
    hub_id: str | None = None
    #: Required files; each entry lists alternatives, any one of which will do.
    files: tuple[tuple[str, ...], ...] = ()
    context_length: int | None = None
    #: Published figures, quoted from their authors (never measured here).
    published: dict[str, str] = field(default_factory=dict)

    def missing_files(self, directory: Path) -> list[str]:
        return [" or ".join(alts) for alts in self.files if not any((directory / a).is_file() for a in alts)]


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="fashion-clip",
            format=HF_CLIP,
            description="FashionCLIP (Chia et al. 2022), ViT-B/32, transformers CLIPModel",
            hub_id="patrickjohncyh/fashion-clip",
            files=(("config.json",), _HF_WEIGHTS, _CLIP_TOKENIZER, ("preprocessor_config.json",)),
            context_length=77,
        ),
        ModelSpec(
            name="fashion-clip-onnx",
            format=ONNX,
            description="FashionCLIP as separate ONNX image/text graphs (transformers.js layout)",
            hub_id="patrickjohncyh/fashion-clip",
            files=(
                ("onnx/vision_model.onnx", "vision_model.onnx"),
                ("onnx/text_model.onnx", "text_model.onnx"),
                ("preprocessor_config.json", "onnx/preprocessor_config.json"),
            ),
            context_length=77,
        ),
        ModelSpec(
            name="marqo-fashionclip",
            format=OPEN_CLIP,
            description="Marqo-FashionCLIP, ViT-B-16, open_clip checkpoint (GCL fine-tune)",
            hub_id="Marqo/marqo-fashionCLIP",
            files=(("open_clip_config.json",), OPEN_CLIP_WEIGHT_FILES),
            context_length=77,
        ),
        ModelSpec(
            name="marqo-fashionclip-onnx",
            format=ONNX,
            description="Marqo-FashionCLIP as separate ONNX image/text graphs",
            hub_id="Marqo/marqo-fashionCLIP",
            files=(
                ("onnx/vision_model.onnx",),
                ("onnx/text_model.onnx",),
                ("preprocessor_config.json", "open_clip_config.json"),
            ),
            context_length=77,
        ),
        ModelSpec(
            name="chinese-clip-vit-b16",
            format=CHINESE_CLIP,
            description="Chinese-CLIP ViT-B/16 + Chinese RoBERTa (Yang et al. 2022), transformers format",
            hub_id="OFA-Sys/chinese-clip-vit-base-patch16",
            files=(("config.json",), _HF_WEIGHTS, ("vocab.txt",), ("preprocessor_config.json",)),
            context_length=52,
        ),
        ModelSpec(
            name="chinese-clip-vit-l14",
            format=CHINESE_CLIP,
            description="Chinese-CLIP ViT-L/14 + Chinese RoBERTa, transformers format",
            hub_id="OFA-Sys/chinese-clip-vit-large-patch14",
            files=(("config.json",), _HF_WEIGHTS, ("vocab.txt",), ("preprocessor_config.json",)),
            context_length=52,
        ),
        ModelSpec(
            name="vestis-mini",
            format=VESTIS,
            description="vestis' own model, trained in this repo on KAGL: small ConvNet + frozen MiniLM text tower",
            files=(("vestis_config.json",), ("model.safetensors",)),
            context_length=128,
        ),
        ModelSpec(
            name="vestis-mini-zh",
            format=VESTIS,
            description="vestis-mini for Chinese and English: vestis-mini's image tower (locked) + a text head "
            "trained over multilingual-e5-small (Chinese-CLIP's stage 1)",
            files=(("vestis_config.json",), ("model.safetensors",)),
            context_length=128,
        ),
        ModelSpec(
            name="vestis-tiny-random",
            format=BUILTIN,
            description="A tiny CLIP with seeded random weights, built in memory: plumbing and demos only",
            context_length=77,
        ),
    )
}


def default_model() -> str:
    """The model used when none is named: the bundled vestis-mini, else the tiny random one."""
    mini = REGISTRY["vestis-mini"]
    return mini.name if not mini.missing_files(BUNDLED_DIR / mini.name) else "vestis-tiny-random"


def cache_root() -> Path:
    """vestis' cache folder: ``$VESTIS_CACHE_DIR`` or ``~/.cache/vestis``."""
    return Path(os.environ.get("VESTIS_CACHE_DIR", Path.home() / ".cache" / "vestis")).expanduser()


def search_dirs() -> list[Path]:
    """Folders that may hold ``<name>/`` model directories, in lookup order."""
    dirs = [Path(p).expanduser() for p in os.environ.get("VESTIS_MODELS_DIR", "").split(os.pathsep) if p]
    dirs.append(cache_root() / "models")
    return dirs


def hub_cache_dir(hub_id: str) -> Path | None:
    """The snapshot of ``hub_id`` in the local Hugging Face cache, if one is there."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not cached, or huggingface_hub missing
        return None


def locate(spec: ModelSpec) -> tuple[Path | None, list[Path]]:
    """(directory holding every file of ``spec``, folders searched)."""
    candidates = [BUNDLED_DIR / spec.name] + [d / spec.name for d in search_dirs()]
    if spec.hub_id:
        cached = hub_cache_dir(spec.hub_id)
        if cached is not None:
            candidates.append(cached)
    for path in candidates:
        if path.is_dir() and not spec.missing_files(path):
            return path, candidates
    return None, candidates


def file_digest(path: Path) -> str:
    """The sha256 of a file, remembered under the cache by path, size and modification time."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_root() / "digests" / key
    try:
        return memo.read_text()
    except OSError:
        pass
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, memo)
    except OSError:  # a read-only cache only costs the re-read
        pass
    return digest
