"""The site's tokenizer files: the vocabulary, the settings and the character tables ``static/wordpiece.js`` runs with.

All are read from the model's own ``tokenizer.json`` (the file the Python side tokenises
with) or probed from the tokenizer it makes, so the page and ``encode_texts`` cannot drift
apart: a tokenizer of another kind than BERT's WordPiece (normaliser, pre-tokenizer, model,
post-processor) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vestis.errors import InputError


def read_tokenizer(tokenizer_json: Path, max_length: int) -> tuple[list[str], dict[str, Any]]:
    """(the vocabulary in id order, the settings for wordpiece.js) of a BERT WordPiece ``tokenizer.json``."""
    spec = json.loads(Path(tokenizer_json).read_text())
    model, norm = spec.get("model") or {}, spec.get("normalizer") or {}
    post = spec.get("post_processor") or {}
    if (
        model.get("type") != "WordPiece"
        or norm.get("type") != "BertNormalizer"
        or (spec.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"
        or post.get("type") != "TemplateProcessing"
        or not (norm.get("clean_text") and norm.get("handle_chinese_chars"))
    ):
        raise InputError(f"{tokenizer_json}: the page's tokenizer runs BERT's WordPiece only")
    single = [next(iter(x.values()))["id"] for x in post["single"]]
    if len(single) != 3 or single[1] != "A":
        raise InputError(f"{tokenizer_json}: expected the template [CLS] $A [SEP], got {single}")
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise InputError(f"{tokenizer_json}: the vocabulary's ids are not 0..n-1")
    config = {
        "unk_token": model["unk_token"],
        "continuing_subword_prefix": model["continuing_subword_prefix"],
        "max_input_chars_per_word": int(model["max_input_chars_per_word"]),
        "cls_token": single[0],
        "sep_token": single[2],
        "special_tokens": [t["content"] for t in spec.get("added_tokens", []) if t.get("special")],
        "max_length": int(max_length),
    }
    if any(t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word")
           for t in spec.get("added_tokens", [])):  # fmt: skip
        raise InputError(f"{tokenizer_json}: added tokens with matching options the page does not implement")
    tokens = [t for t, _ in vocab]
    if any("\n" in t for t in tokens):
        raise InputError(f"{tokenizer_json}: a token holds a newline (vocab.txt is one token per line)")
    return tokens, config


def char_tables(tokenizer_json: Path) -> dict[str, Any]:
    """What the tokenizer does to each code point, probed from the tokenizer itself, for the page.

    A browser's Unicode tables (its ``\\p{...}`` classes, ``toLowerCase``, ``normalize``) are
    newer or older than the ones the ``tokenizers`` library was built with, so the page asks
    none of them: it reads, per code point, what the Python side's normaliser makes of it
    (removed, a space, a CJK character padded with spaces, or another string: lower-cased,
    accents stripped) and how its pre-tokenizer treats it (a separator, or punctuation).
    Code points are in ranges ``[lo, hi, lo, hi, ...]``; ``map`` holds the other changes, but
    for Hangul syllables whose change is their algorithmic decomposition (:func:`hangul_nfd`).
    About 30 s once per tokenizer file (cached by the caller).
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    norm, pre = tok.normalizer, tok.pre_tokenizer
    sets: dict[str, list[int]] = {"remove": [], "space": [], "pad": [], "split": [], "punct": []}
    mapped: dict[str, str] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        r = norm.normalize_str(ch)
        if r == "":
            sets["remove"].append(cp)
        elif r == " ":
            sets["space"].append(cp)
        elif r == f" {ch} ":
            sets["pad"].append(cp)
        elif r != ch and r != hangul_nfd(ch):  # Hangul syllables: decomposed by formula in the page
            mapped[str(cp)] = r
        pieces = len(pre.pre_tokenize_str(f"a{ch}b"))
        if pieces == 2:
            sets["split"].append(cp)
        elif pieces == 3:
            sets["punct"].append(cp)
    return {**{k: _ranges(v) for k, v in sets.items()}, "map": mapped}


def _ranges(cps: list[int]) -> list[int]:
    out: list[int] = []
    for cp in cps:
        if out and out[-1] == cp - 1:
            out[-1] = cp
        else:
            out += [cp, cp]
    return out


def hangul_nfd(ch: str) -> str:
    """A precomposed Hangul syllable's canonical decomposition into jamo (Unicode's formula, ch. 3.12)."""
    s = ord(ch) - 0xAC00
    if not 0 <= s < 11172:
        return ch
    lead, vowel, tail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, s % 28
    return chr(lead) + chr(vowel) + (chr(0x11A7 + tail) if tail else "")
