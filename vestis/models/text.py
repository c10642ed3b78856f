"""Tokenizers: one small interface over CLIP's BPE and BERT's WordPiece.

A :class:`TextTokenizer` turns a list of strings into ``input_ids`` and
``attention_mask`` arrays padded to the longest item of the batch (never to the
full context length: with a causal or masked text tower the padding changes
nothing but the cost) and truncated to the model's context length.
"""

from __future__ import annotations

import gzip
import html
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vestis.errors import InputError, ModelFormatError

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_CONTEXT_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


@lru_cache(maxsize=2)
def clip_bpe_vocab(path: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's 49,408-token vocabulary and its merges, from the BPE file it was trained with.

    The file (``bpe_simple_vocab_16e6.txt.gz``, MIT licence, OpenAI) ships with
    vestis; the vocabulary is built the way CLIP builds it: 256 byte symbols,
    the same with ``</w>``, one token per merge, then the two specials.
    """
    if path is None:
        data = resources.files("vestis.models.assets").joinpath(CLIP_BPE_FILE).read_bytes()
    else:
        data = Path(path).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    vocab_list += ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def clip_tokenizer_from_bpe(context_length: int = CLIP_CONTEXT_LENGTH) -> Any:
    """A transformers ``CLIPTokenizer`` built offline from the bundled BPE file."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=context_length)


_WS = re.compile(r"\s+")


def open_clip_clean(text: str) -> str:
    """open_clip's default text cleaning ("lower"): ftfy, html-unescape, collapse spaces."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # pragma: no cover - ftfy is a declared dependency
        pass
    text = html.unescape(html.unescape(text)).strip()
    return _WS.sub(" ", text).strip().lower()


#: Characters per token, far above any tokenizer's (CLIP's BPE and BERT's WordPiece: about 4 on
#: English, 1 to 2 on Chinese); times the context length, the characters of a text read at most.
CHARS_PER_TOKEN = 32


def _cut(text: str, most: int) -> str:
    """``text`` cut to at most ``most`` characters, at the last space before them when there is one."""
    if len(text) <= most:
        return text
    head = text[:most]
    space = head.rfind(" ")
    return head[:space] if space > most // 2 else head


@dataclass
class TextTokenizer:
    """A transformers tokenizer plus the context length and cleaning a model expects.

    Safe to share between threads: the fast (Rust) tokenizers refuse concurrent
    calls ("Already borrowed"), so calls are serialised by a lock.
    """

    tokenizer: Any
    context_length: int
    clean: Callable[[str], str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def _cleaned(self, texts: Sequence[str]) -> list[str]:
        """The texts cleaned as the model expects, each cut to :attr:`max_chars` first."""
        texts = [_cut(t, self.max_chars) for t in texts]
        return [self.clean(t) for t in texts] if self.clean is not None else texts

    @property
    def max_chars(self) -> int:
        """Characters of a text read at most: far more than its first ``context_length`` tokens can
        span (a token is at most a few characters), so the tokens kept are the same; a megabyte of text
        is not tokenised whole only to be truncated."""
        return CHARS_PER_TOKEN * self.context_length

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            enc = self.tokenizer(
                self._cleaned(texts),
                padding="longest",
                truncation=True,
                max_length=self.context_length,
                return_tensors="np",
            )
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        mask = np.asarray(enc["attention_mask"], dtype=np.int64)
        return ids, mask

    def _token_lists(self, texts: Sequence[str]) -> list[list[int]]:
        with self._lock:
            return self.tokenizer(self._cleaned(texts), truncation=True, max_length=self.context_length)["input_ids"]

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts (after truncation)."""
        return [len(x) for x in self._token_lists(texts)]

    def batches(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(positions, ids, mask) per batch: tokenised once, sorted by length, each padded to its longest.

        The same ids and masks as calling the tokenizer on each batch, without a
        second tokenisation to learn the lengths.
        """
        seqs = self._token_lists(texts)
        pad = self.tokenizer.pad_token_id or 0
        order = np.argsort([len(x) for x in seqs], kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : len(seqs[i])] = seqs[i]
                mask[row, : len(seqs[i])] = 1
            yield idx, ids, mask


def load_hf_tokenizer(directory: Path, context_length: int | None = None) -> Any:
    """Load the tokenizer files in ``directory`` (tokenizer.json, vocab/merges or vocab.txt)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # transformers raises many types here
        raise ModelFormatError(f"cannot load the tokenizer in {directory}: {exc}") from None
    if context_length is not None:
        tok.model_max_length = context_length
    return tok


#: C0 control characters other than tab, newline and carriage return (NUL above all), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be tokenised (a lone surrogate, a NUL or other control character), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode (a lone surrogate {text[exc.start]!r} at character {exc.start})"
    m = _CONTROL.search(text)
    if m:
        return f"control character {m.group()!r} at character {m.start()}"
    return None


#: Invisible format characters: zero-width space/non-joiner/joiner, word joiner and invisible operators,
#: the byte-order mark, the soft hyphen, bidirectional marks, embeddings, overrides and isolates.
INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Every other kind of space (no-break, ideographic U+3000, en/em, line and paragraph separators).
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
#: Full-width letters and digits (U+FF10-FF19, FF21-FF3A, FF41-FF5A) -> ASCII.
_FULL_WIDTH = {
    c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)) for c in range(r[0], r[1] + 1)
}


def clean_text(text: str) -> str:
    """``text`` as every encoder reads it: invisible format characters removed (they split or glue words
    unseen: a zero-width space inside "dre\u200bss", a right-to-left override), every kind of space a plain
    one, full-width letters and digits ("ｄｒｅｓｓ") plain, the ends stripped. Full-width punctuation stays:
    "，" is how Chinese is written and Chinese-CLIP's vocabulary has it (NFKC of a whole query is done where
    punctuation is syntax: :func:`vestis.search.parse_terms`). ASCII text is returned as it is (stripped)."""
    if text.isascii():
        return text.strip()
    return _SPACES.sub(" ", INVISIBLE.sub("", text)).translate(_FULL_WIDTH).strip()


def catalog_text(value: object) -> str:
    """A catalog's text value (a title) made safe to embed and index: lone surrogates become U+FFFD, control
    characters (a NUL from a broken export) spaces, then :func:`clean_text`. Never raises: a build goes on."""
    return clean_text(_CONTROL.sub(" ", without_surrogates(str(value))))


def without_surrogates(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 store can hold: a JSON ``"\\ud800"`` escape gives one)
    replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def validate_texts(texts: Any) -> list[str]:
    """A list of non-empty strings, or an :class:`InputError` naming the bad item; the strings as
    :func:`clean_text` leaves them."""
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, got a single string (wrap it in a list)")
    try:
        items = list(texts)
    except TypeError:
        raise InputError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InputError(f"text {i}: expected a string, got {type(t).__name__}")
        if not t.strip():
            raise InputError(f"text {i}: empty text")
        problem = text_problem(t)
        if problem:
            raise InputError(f"text {i}: {problem}")
        items[i] = clean_text(t)
        if not items[i]:
            raise InputError(
                f"text {i}: empty once invisible characters (zero-width spaces, direction marks) are removed"
            )
    return items
