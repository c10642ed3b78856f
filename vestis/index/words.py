"""The words keyword search sees: one preparation of text for both catalog stores.

FTS5's ``unicode61`` tokenizer (the embedded store, and :mod:`vestis.index.keywords`, which runs
it) and PostgreSQL's text-search parser (the shared store) split text at spaces and punctuation.
Chinese writes no space between words, so a title "夏季红色连衣裙" was one token and the
query "连衣裙" found nothing. Before either store indexes a title or body, and before a query is
matched, the text goes through :func:`keyword_text`:

* NFKC, so full-width letters, digits, punctuation and the ideographic space are the plain ones
  ("ＮＩＫＥ，连衣裙" is "NIKE,连衣裙"); invisible format characters (zero-width spaces and joiners,
  the byte-order mark, bidirectional controls) are removed, so they neither split nor glue words;
* each run of Han characters is folded from traditional to simplified characters (OpenCC's
  ``t2s``: a shopper typing 連衣裙 finds 连衣裙) and cut into words by jieba (its dictionary and
  the term table's fashion words), the words set apart by spaces (also from the Latin letters
  beside them: "Nike运动鞋" is "Nike 运动鞋"). Titles are cut in jieba's search mode (the words
  and the dictionary words inside them: 牛仔裤 also gives 牛仔), queries in its precise mode, so
  a query of several words ("红色连衣裙") matches as several words do in English (any of them,
  items with all first). ``benchmarks/keywords_zh.py`` measured this against character bigrams,
  FTS5's trigram tokenizer and the other jieba modes (README, "Chinese keyword search").

ASCII text is returned as it is, so English catalogs index and rank exactly as before; the
segmenter and the converter load only when Han characters are met (jieba's dictionary takes
about a second). The text a store indexes is kept beside the original (``kw_title``,
``kw_body``; NULL where equal), so the term table reads what FTS5 indexed and a result shows the
title as given.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata

from vestis.models.text import INVISIBLE

#: Han ideographs: the unified blocks and their extensions, compatibility ideographs, 〇.
_HAN = re.compile(r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")
_WORD = re.compile(r"\w+")
#: A keyword query's first this many characters are read, and its first this many distinct words used.
MAX_QUERY_CHARS, MAX_QUERY_WORDS = 4096, 64


@functools.cache
def _segmenter():
    """jieba with its dictionary, plus every name of the Chinese term table (``vestis/data/terms_zh.yaml``):
    a fashion word stays whole ("牛仔打底裤", "西装外套") where jieba's general dictionary would cut it."""
    import jieba

    from vestis.data.terms import load_terms

    jieba.setLogLevel(logging.WARNING)  # "Building prefix dict..." on stderr otherwise
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    terms = load_terms("zh")
    for word in sorted({n for values in terms.table.values() for names in values.values() for n in names}):
        if _HAN.fullmatch(word):
            tokenizer.add_word(word)
    return tokenizer


@functools.cache
def _simplifier():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """``text`` with its traditional Chinese characters as simplified ones (other text unchanged)."""
    if text.isascii():
        return text
    return _HAN.sub(lambda m: _simplifier().convert(m.group()), text)


def _cut(run: str, query: bool) -> str:
    seg = _segmenter()
    words = seg.cut(run, HMM=True) if query else seg.cut_for_search(run, HMM=True)
    return " " + " ".join(w for w in words if w.strip()) + " "


def keyword_text(text: str, *, query: bool = False) -> str:
    """``text`` as keyword search indexes it (``query``: as a query is matched); ASCII unchanged."""
    if text.isascii():
        return text
    text = INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return _HAN.sub(lambda m: _cut(to_simplified(m.group()), query), text)


def stored_keyword_text(text: str) -> str | None:
    """The keyword text of a title or body as a store keeps it beside the text: None when it is the text itself."""
    got = keyword_text(text)
    return None if got == text else got


def query_words(text: str, *, prepared: bool = True) -> list[str]:
    """The distinct words of a keyword query, lower case, in order, at most :data:`MAX_QUERY_WORDS` of its
    first :data:`MAX_QUERY_CHARS` characters (``prepared=False``: split as indexes built before
    :func:`keyword_text` existed were, for them)."""
    text = text[:MAX_QUERY_CHARS]
    if prepared:
        text = keyword_text(text, query=True)
    return list(dict.fromkeys(_WORD.findall(text.lower())))[:MAX_QUERY_WORDS]
