"""The page's JavaScript WordPiece tokenizer (``vestis/site/static/wordpiece.js``), run with node,
gives the same token ids as the Python tokenizer vestis-mini's ``encode_texts`` uses: on every
KAGL title, on hard strings, and on every Unicode code point (each between two letters)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from vestis.models.mini_config import text_model_dir
from vestis.site.tokenizer import char_tables, read_tokenizer

HERE = Path(__file__).resolve().parent
WORDPIECE_JS = HERE.parents[1] / "vestis" / "site" / "static" / "wordpiece.js"
CONTEXT = 128

HARD = [
    "",
    " ",
    "   \t\n  ",
    "\u3000\u00a0\u2028",
    "Café crème brûlée — naïve façade",
    "ÅNGSTRÖM Øre ŒUVRE straße İstanbul ΣΟΦΙΑ ΟΔΟΣ",
    "red dress 👗👠 with emoji👍🏽 and 🇮🇳 flags",
    "kurta👗",
    "中文的连衣裙 和 日本語のワンピース 한국어 드레스",
    "㐀𠀀𪜀 mixed中文text",
    "!!!???...---,,,;;;:::",
    "t-shirt/jeans (men's) [sale] {50%} $19.99 #1 @home a+b=c ~x^y| `q`",
    "«quoted» “smart” ‘quotes’ ¿qué? ¡sí! §5 ©2024 ®™ €10 £5 ¥3",
    "a" * 99,
    "b" * 100,
    "c" * 101,
    "supercalifragilisticexpialidocious" * 3,
    "pneumonoultramicroscopicsilicovolcanoconiosis dress",
    "zero\u200bwidth\u200cjoin\u200dtext\ufeffbom",
    "control\x00chars\x01\x07\x1b[0mand\x7fdel\ufffdreplacement",
    "a [MASK] dress [CLS] and [SEP] [PAD] [UNK] [cls] [MASK",
    "[MASK][MASK]x[SEP]",
    "Ｆｕｌｌｗｉｄｔｈ ＴＳＨＩＲＴ",
    "combining: e\u0301 a\u0308 n\u0303 i\u0307 \u0301alone \U0001d165\u0301x",
    "한국어 드레스 각 힣 ㄱ",
    "ﬁne ﬂower ǅ Ǆ ǆ ß ẞ",
    "Arabic فستان أحمر and Hebrew שמלה",
    "Hindi कुर्ता Thai ชุดเดรส",
    "word " * 200,
    "x" + "🙂" * 150,
]


@pytest.fixture(scope="session")
def tokenizer_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The files the page reads, made by the functions the export calls."""
    vocab, config = read_tokenizer(text_model_dir() / "tokenizer.json", CONTEXT)
    folder = tmp_path_factory.mktemp("wordpiece")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "chars.json").write_text(json.dumps(char_tables(text_model_dir() / "tokenizer.json")))
    return folder / "vocab.txt", folder / "config.json", folder / "chars.json"


@pytest.fixture(scope="session")
def python_ids():
    from vestis.models.mini_text_onnx import SentenceTokenizer
    from vestis.models.text import TextTokenizer

    tok = TextTokenizer(SentenceTokenizer(text_model_dir() / "tokenizer.json", CONTEXT), CONTEXT)
    return tok._token_lists


def js_ids(files: tuple[Path, Path, Path], texts: list[str], tmp_path: Path) -> list[list[int]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(texts), encoding="utf-8")
    run = subprocess.run(
        [node, str(HERE / "run_wordpiece.js"), *map(str, files), str(path)],
        capture_output=True,
        env={"WORDPIECE_JS": str(WORDPIECE_JS), "PATH": "/usr/bin:/bin"},
        timeout=600,
    )
    assert run.returncode == 0, run.stderr.decode()
    return json.loads(run.stdout)


def assert_same(texts, ours, reference):
    assert len(ours) == len(reference) == len(texts)
    wrong = [(t, a, b) for t, a, b in zip(texts, ours, reference) if a != b]
    assert not wrong, f"{len(wrong)} of {len(texts)} differ, e.g. {wrong[:3]}"


def test_every_kagl_title(tokenizer_files, python_ids, all_titles, tmp_path):
    assert len(all_titles) >= 100  # 40k with ../shared/data, the demo set's 133 without
    assert_same(all_titles, js_ids(tokenizer_files, all_titles, tmp_path), python_ids(all_titles))


def test_hard_strings(tokenizer_files, python_ids, tmp_path):
    ours = js_ids(tokenizer_files, HARD, tmp_path)
    assert_same(HARD, ours, python_ids(HARD))
    assert ours[0] == ours[1] == [101, 102]  # empty and whitespace-only: [CLS] [SEP]
    assert max(len(x) for x in ours) == CONTEXT  # the long strings were truncated
    assert 100 in ours[HARD.index("c" * 101)]  # a word over 100 characters is [UNK]


#: Every code point of the Basic Multilingual Plane (surrogates aside), the emoji and symbol blocks,
#: the tags and variation selectors, and every 61st code point elsewhere (the CJK extensions and
#: unassigned planes included).
CODE_POINTS = sorted(
    {cp for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF}
    | set(range(0x1F000, 0x1FB00))
    | set(range(0xE0000, 0xE01F0))
    | set(range(0x10000, 0x110000, 61))
)


def test_every_code_point(tokenizer_files, python_ids, tmp_path):
    """Each code point between two letters: cleaning, whitespace, punctuation, CJK, accents and
    lower-casing all decide, character by character, what it becomes."""
    texts = [f"a{chr(cp)}b" for cp in CODE_POINTS]
    assert_same(texts, js_ids(tokenizer_files, texts, tmp_path), python_ids(texts))
