"""The site's tokenizer files: the vocabulary and the settings ``static/wordpiece.js`` runs with.

Both are read from the model's own ``tokenizer.json`` (the file the Python side tokenises
with), so the page and ``encode_texts`` cannot drift apart: a tokenizer of another kind
than BERT's WordPiece (normaliser, pre-tokenizer, model, post-processor) is refused.
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
    lowercase = bool(norm.get("lowercase"))
    strip = norm.get("strip_accents")
    config = {
        "lowercase": lowercase,
        "stripAccents": lowercase if strip is None else bool(strip),
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
