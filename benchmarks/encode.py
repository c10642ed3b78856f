"""Encoding speed: the reference way vs vestis' runtimes, side by side, on the same weights.

Models (random weights in the real formats; speed does not depend on the values):

* ViT-B/32 CLIP in transformers format (FashionCLIP's architecture: QuickGELU, 224 px),
* ViT-B/16 CLIP in transformers format (Marqo-FashionCLIP's architecture: GELU, 224 px),
* vestis-mini (the bundled, trained model: ConvNet at 64 px + MiniLM text tower).

Configurations, each in its own process (so peak RSS and thread pools are its own):

1. reference: transformers ``CLIPModel`` + ``CLIPProcessor``, fp32, as the fashion-clip
   package runs it: images opened one by one with PIL, the processor per batch,
   texts padded to 77 tokens, ``torch.no_grad``.  For vestis-mini (no such
   package) the same naive way: per-image decode and numpy normalisation, plain
   fp32 modules, texts padded to the context length (128).
2. vestis torch fp32, 3. vestis torch bf16, 4. vestis ONNX fp32, 5. vestis ONNX int8
   (the fastest int8 variant, dynamic per-tensor / static QDQ; whether it passes
   parity is in the parity table, measured by ``vestis export onnx``'s check).

Measured: images/s end to end from JPEG bytes (KAGL photos) at batch 32 and 256,
model-only images/s (decoded tensors) and the achieved GFLOP/s as a share of the
machine's measured peak, texts/s (KAGL titles, batch 32), single-query text
latency p50/p99, peak RSS.  Ratios are to (1).  Everything runs in one invocation,
so ratios are measured side by side even when other work shares the machine.

    python benchmarks/encode.py                      # default run (~15 min on 2 cores)
    python benchmarks/encode.py --models vit-b32 --n32 256 --repeats 3 --n-queries 300

The peak: the best of several 2048x2048x2048 matrix products, each timed alone,
with the same thread count: torch.mm in fp32 and in bf16 (oneDNN), and
onnxruntime's MatMulInteger (u8 x s8 -> s32, the kernel dynamic int8 runs on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = ("reference", "torch fp32", "torch bf16", "onnx fp32", "onnx int8")
MODELS = {
    "vit-b32": "ViT-B/32 CLIP (FashionCLIP's architecture)",
    "vit-b16": "ViT-B/16 CLIP (Marqo-FashionCLIP's architecture)",
    "vestis-mini": "vestis-mini (bundled, trained)",
}


# ----------------------------------------------------------------------------- data


def kagl_rows(n: int, offset: int = 0) -> tuple[list[bytes], list[str]]:
    """``n`` KAGL JPEGs (or demo-catalog ones, repeated) and product titles."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vestis.data import demo_catalog_path, kagl_parquets

    files = kagl_parquets() or [demo_catalog_path()]
    table = pa.concat_tables([pq.read_table(f, columns=["image", "productDisplayName"]) for f in files[:2]])
    images = table.column("image").to_pylist()
    titles = [t for t in table.column("productDisplayName").to_pylist() if t]
    images = (images * (1 + (offset + n) // len(images)))[offset : offset + n]
    return images, titles


def all_kagl_images() -> list[bytes]:
    import pyarrow.parquet as pq

    from vestis.data import demo_catalog_path, kagl_parquets

    out: list[bytes] = []
    for f in kagl_parquets() or [demo_catalog_path()]:
        out += pq.read_table(f, columns=["image"]).column(0).to_pylist()
    return out


# ----------------------------------------------------------------------------- machine


def measure_peaks(threads: int, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of the best of ``repeats`` n^3 matrix products."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(threads)

    def best(fn) -> float:
        fn()
        t = min(_timed(fn) for _ in range(repeats))
        return 2 * n**3 / t / 1e9

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        out[name] = best(lambda a=a, b=b: torch.mm(a, b))
    rng = np.random.default_rng(0)
    weight = rng.integers(-128, 128, (n, n)).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zero"], ["C"])],
        "peak",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.INT32, [n, n])],
        [
            helper.make_tensor("B", TensorProto.INT8, [n, n], weight.tobytes(), raw=True),
            helper.make_tensor("a_zero", TensorProto.UINT8, [], [128]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    a8 = rng.integers(0, 256, (n, n)).astype(np.uint8)
    out["int8"] = best(lambda: session.run(None, {"A": a8}))
    return {k: round(v, 1) for k, v in out.items()}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- models


def build_models(work: Path, names: list[str], log) -> dict[str, dict[str, Any]]:
    """Write each model's weights (torch format) and its ONNX export (fp32 + int8 candidates)."""
    import torch

    import vestis
    from vestis.export import export_onnx
    from vestis.models.parity import parity_data

    specs: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "vestis-mini":
            source = None
        else:
            from transformers import CLIPConfig, CLIPModel

            from vestis.models.preprocess import CLIP_PREPROCESSOR_CONFIG
            from vestis.models.text import clip_tokenizer_from_bpe

            patch, act = (32, "quick_gelu") if name == "vit-b32" else (16, "gelu")
            source = work / name
            if not (source / "config.json").is_file():
                cfg = CLIPConfig(
                    projection_dim=512,
                    text_config=dict(hidden_act=act, eos_token_id=2, bos_token_id=0),
                    vision_config=dict(hidden_act=act, patch_size=patch),
                )
                torch.manual_seed(0)
                CLIPModel(cfg).eval().save_pretrained(str(source))
                clip_tokenizer_from_bpe().save_pretrained(str(source))
                (source / "preprocessor_config.json").write_text(json.dumps(CLIP_PREPROCESSOR_CONFIG))
        export = work / f"{name}-onnx"
        # exported afresh every run (a minute): the parity check at the end of a run deletes
        # the int8 candidates that fail it and records its verdict, so a kept export has lost
        # what this run must measure
        shutil.rmtree(export, ignore_errors=True)
        enc = vestis.load_encoder(source or "vestis-mini", runtime="torch", precision="fp32")
        t = time.perf_counter()
        calibration = parity_data(8, 1, 128).calibration
        export_onnx(enc, export, int8=True, calibration_images=calibration)
        log(f"{name}: exported to ONNX fp32 + int8 candidates in {time.perf_counter() - t:.0f} s")
        del enc
        specs[name] = {"source": str(source) if source else "vestis-mini", "export": str(export)}
    return specs


def flops(name: str, source: str) -> dict[str, float]:
    """Forward FLOPs per image (torch.utils.flop_counter on the fp32 model; 2 per multiply-add).

    ``image_gflop``: what vestis computes (the class token alone in a CLIP's last
    layer); ``reference_gflop``: what the reference way computes (transformers'
    ``get_image_features``, every token in every layer).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import vestis

    enc = vestis.load_encoder(source, runtime="torch", precision="fp32")
    h, w = enc.image_config.output_hw
    x = np.zeros((1, 3, h, w), dtype=np.float32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        enc._forward_images(x)
    out = {"image_gflop": counter.get_total_flops() / 1e9, "reference_gflop": counter.get_total_flops() / 1e9}
    if hasattr(getattr(enc, "model", None), "get_image_features"):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            enc.model.get_image_features(pixel_values=torch.from_numpy(x))
        out["reference_gflop"] = counter.get_total_flops() / 1e9
    return out


# ----------------------------------------------------------------------------- one configuration


class Reference:
    """The reference way of running a model (see the module docstring)."""

    def __init__(self, model: str, source: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.kind = model
        if model == "vestis-mini":
            from vestis.models.registry import BUNDLED_DIR
            from vestis.models.vestis_mini import MiniModel, SentenceEncoder, sentence_tokenizer

            self.mini = MiniModel.load(BUNDLED_DIR / "vestis-mini")
            self.sentence = SentenceEncoder(self.mini.cfg.text_model)
            self.tok = sentence_tokenizer(self.mini.cfg.context_length).tokenizer
            self.ctx = self.mini.cfg.context_length
            self.cfg = self.mini.cfg.image_config()
        else:
            from transformers import CLIPModel, CLIPProcessor

            self.model = CLIPModel.from_pretrained(source).eval()
            self.processor = CLIPProcessor.from_pretrained(source)

    def pixels(self, images: list[bytes]) -> Any:
        import io

        import torch
        from PIL import Image

        if self.kind == "vestis-mini":
            from vestis.models.preprocess import load_image, resize_and_crop

            arrays = []
            for data in images:  # one by one, normalised per image in numpy
                arr = resize_and_crop(load_image(data), self.cfg).astype(np.float32) / 255.0
                arr = (arr - np.asarray(self.cfg.mean, np.float32)) / np.asarray(self.cfg.std, np.float32)
                arrays.append(arr.transpose(2, 0, 1))
            return torch.from_numpy(np.stack(arrays))
        pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]  # as fashion-clip's transform_fn
        return self.processor(images=pil, return_tensors="pt")["pixel_values"]

    def forward_pixels(self, pixels: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            if self.kind == "vestis-mini":
                return self.mini.image_tower(pixels).numpy()
            out = self.model.get_image_features(pixel_values=pixels)
            return (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()

    def encode_images(self, images: list[bytes], batch_size: int) -> np.ndarray:
        rows = [self.forward_pixels(self.pixels(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(rows)

    def encode_texts(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import torch

        rows = []
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            with torch.no_grad():
                if self.kind == "vestis-mini":
                    enc = self.tok(
                        chunk, padding="max_length", max_length=self.ctx, truncation=True, return_tensors="pt"
                    )
                    sent = self.sentence(enc["input_ids"], enc["attention_mask"])
                    rows.append(self.mini.text_head(sent).numpy())
                else:
                    enc = self.processor(
                        text=chunk, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
                    )
                    out = self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
                    rows.append((out if isinstance(out, torch.Tensor) else out.pooler_output).numpy())
        return np.concatenate(rows)


class Vestis:
    def __init__(self, spec: dict[str, Any], config: str, threads: int) -> None:
        import vestis

        if config == "default":  # what load_encoder picks by itself
            self.enc = vestis.load_encoder(spec["source"], threads=threads)
        else:
            runtime, precision = config.split()
            path = spec["export"] if runtime == "onnx" else spec["source"]
            self.enc = vestis.load_encoder(path, runtime=runtime, precision=precision, threads=threads)
        self.runtime = self.enc.runtime

    def pixels(self, images: list[bytes]) -> np.ndarray:
        from vestis.models.preprocess import preprocess_images

        return preprocess_images(images, self.enc.image_config)

    def forward_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self.enc._runtime_context():
            return self.enc._forward_images(pixels)

    def encode_images(self, images: list[bytes], batch_size: int) -> np.ndarray:
        return self.enc.encode_images(images, batch_size=batch_size)

    def encode_texts(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.enc.encode_texts(texts, batch_size=batch_size)


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one (model, configuration) pair; runs in its own process."""
    threads, repeats = job["threads"], job.get("repeats", 1)
    if job["config"] == "reference":
        runner: Any = Reference(job["model"], job["spec"]["source"], threads)
        runtime = "transformers CLIPModel + CLIPProcessor fp32" if job["model"] != "vestis-mini" else "naive fp32"
    else:
        try:
            runner = Vestis(job["spec"], job["config"], threads)
        except Exception as exc:  # e.g. bf16 on a CPU without it
            return {"error": f"{type(exc).__name__}: {exc}"}
        runtime = runner.runtime
    result: dict[str, Any] = {"runtime": runtime}
    if job.get("catalog"):
        everything = all_kagl_images()
        runner.encode_images(everything[:64], 64)
        t = time.perf_counter()
        runner.encode_images(everything, 64)
        result["catalog_images"] = len(everything)
        result["catalog_s"] = time.perf_counter() - t
        result["peak_rss_mb"] = peak_rss_mb()
        return result
    images, titles = kagl_rows(max(job["n32"], job["n256"]), offset=job.get("offset", 0))

    def best_rate(fn, n: int) -> float:
        return n / min(_timed(fn) for _ in range(repeats))

    warm = images[: min(32, len(images))]
    runner.encode_images(warm, 32)
    for batch, n in ((32, job["n32"]), (256, job["n256"])):
        if n:
            result[f"e2e_b{batch}"] = best_rate(lambda b=batch, n=n: runner.encode_images(images[:n], b), n)
    pixels = runner.pixels(images[:32])
    runner.forward_pixels(pixels)
    result["model_only_b32"] = best_rate(lambda: runner.forward_pixels(pixels), len(pixels))
    texts = (titles * (1 + job["n_texts"] // max(1, len(titles))))[: job["n_texts"]]
    runner.encode_texts(texts[:64])
    result["texts_per_s"] = best_rate(lambda: runner.encode_texts(texts), len(texts))
    queries = titles[: job["n_queries"] + 10]
    for q in queries[:10]:
        runner.encode_texts([q])
    lat = [_timed(lambda q=q: runner.encode_texts([q])) * 1e3 for q in queries[10:]]
    result["query_p50_ms"] = float(np.percentile(lat, 50))
    result["query_p99_ms"] = float(np.percentile(lat, 99))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spawn(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", f.name], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vit-b32,vit-b16,vestis-mini")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n32", type=int, default=0, help="images for the batch-32 run (default per model)")
    ap.add_argument("--n256", type=int, default=256, help="images for the batch-256 run (0: skip)")
    ap.add_argument("--n256-b16", type=int, default=0, help="the same for ViT-B/16 (default 0: skipped, ~5 min)")
    ap.add_argument("--n-texts", type=int, default=256)
    ap.add_argument("--n-queries", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=0, help="timed repeats, best kept (default: 2)")
    ap.add_argument("--parity-images", type=int, default=256, help="per model (ViT-B/16: a quarter)")
    ap.add_argument("--no-catalog", action="store_true", help="skip embedding the whole KAGL catalog with vestis-mini")
    ap.add_argument("--workdir", default=None, help="keep the random weights here (default: a temporary folder)")
    ap.add_argument("--out", default="results/bench/encode.json")
    ap.add_argument("--render", metavar="JSON", help="print the markdown tables of an earlier run and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return
    if args.worker:
        print(json.dumps(run_worker(json.loads(Path(args.worker).read_text()))))
        return

    from rich.console import Console

    from vestis.models.runtime import cpu_description

    console = Console(width=200)
    log = lambda msg: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", highlight=False)  # noqa: E731
    started = time.perf_counter()
    names = [m for m in args.models.split(",") if m]
    configs = [c for c in args.configs.split(",") if c]
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="vestis-bench-")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    peaks = measure_peaks(args.threads)
    log(f"peaks with {args.threads} threads: {peaks} (load average before: {load[0]:.2f})")
    specs = build_models(work, names, log)
    results: dict[str, Any] = {}
    for name in names:
        spec = specs[name]
        spec.update(flops(name, spec["source"]))
        n32 = args.n32 or {"vit-b32": 256, "vit-b16": 64, "vestis-mini": 1024}[name]
        n256 = {"vit-b32": args.n256, "vit-b16": args.n256_b16, "vestis-mini": max(args.n256, 1024)}[name]
        repeats = args.repeats or 2
        rows = {}
        for config in configs:
            job = {"model": name, "spec": spec, "config": config, "threads": args.threads, "repeats": repeats,
                   "n32": n32, "n256": n256, "n_texts": args.n_texts, "n_queries": args.n_queries}  # fmt: skip
            t = time.perf_counter()
            rows[config] = spawn(job, timeout=1800)
            log(f"{name} / {config}: {time.perf_counter() - t:.0f} s {_brief(rows[config])}")
        results[name] = {"description": MODELS[name], **spec, "rows": rows}
        results[name]["parity"] = parity(name, spec, args, log)
    if "vestis-mini" in names and not args.no_catalog:
        results["catalog"] = catalog_runs(specs["vestis-mini"], args, log)
    add_ratios(results, peaks)
    meta = {
        "machine": cpu_description(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": args.threads,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "peak_gflops": peaks,
        "peak_method": "best of 5 timed 2048^3 products per precision: torch.mm fp32 and bf16 (oneDNN), "
        "onnxruntime MatMulInteger u8 x s8 (the dynamic-int8 kernel); 2 FLOP per multiply-add",
        "versions": _versions(),
        "args": {k: v for k, v in vars(args).items() if k != "worker"},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "models": results}, indent=2, default=float))
    out.with_suffix(".md").write_text(markdown(json.loads(out.read_text())))
    print_tables(console, meta, results)
    log(f"wrote {out} ({meta['wall_s']:.0f} s)")


def _brief(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"[red]{row['error']}[/]"
    return f"e2e b32 {row.get('e2e_b32', 0):.1f} img/s, texts {row.get('texts_per_s', 0):.0f}/s"


def parity(name: str, spec: dict[str, Any], args: argparse.Namespace, log) -> dict[str, Any]:
    """``vestis export onnx``'s parity check on this model (picks the int8 graphs that pass)."""
    import vestis
    from vestis.export import verify_export
    from vestis.models.parity import parity_data

    n = args.parity_images if name != "vit-b16" else max(16, args.parity_images // 4)
    data = parity_data(n, n, 0)
    enc = vestis.load_encoder(spec["source"], runtime="torch", precision="fp32", threads=args.threads)
    t = time.perf_counter()
    report = verify_export(enc, spec["export"], data, threads=args.threads)
    log(f"{name}: parity on {data.describe()} in {time.perf_counter() - t:.0f} s")
    return report


def catalog_runs(spec: dict[str, Any], args: argparse.Namespace, log) -> dict[str, Any]:
    """The whole KAGL catalog through vestis-mini as ``load_encoder("vestis-mini")`` picks it."""
    job = {"model": "vestis-mini", "spec": spec, "config": "default", "threads": args.threads, "catalog": True}
    t = time.perf_counter()
    row = spawn(job, timeout=3600)
    log(f"KAGL catalog, vestis-mini default: {time.perf_counter() - t:.0f} s {row.get('catalog_s', row.get('error'))}")
    return {"default": row}


def add_ratios(results: dict[str, Any], peaks: dict[str, float]) -> None:
    for name, model in results.items():
        if name == "catalog":
            continue
        ref = model["rows"].get("reference", {})
        for config, row in model["rows"].items():
            if "error" in row:
                continue
            precision = "fp32" if config == "reference" else config.split()[1]
            per_image = model["image_gflop"]
            if config == "reference":
                per_image = model.get("reference_gflop", per_image)
            gflops = row["model_only_b32"] * per_image
            row["achieved_gflops"] = gflops
            row["share_of_fp32_peak"] = gflops / peaks["fp32"]
            row["share_of_own_peak"] = gflops / peaks[precision]
            for key in ("e2e_b32", "e2e_b256", "model_only_b32", "texts_per_s"):
                if key in row and ref.get(key):
                    row[f"ratio_{key}"] = row[key] / ref[key]
            if ref.get("query_p50_ms"):
                row["ratio_query_p50"] = ref["query_p50_ms"] / row["query_p50_ms"]


def _versions() -> dict[str, str]:
    import onnxruntime
    import PIL
    import torch
    import transformers

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "pillow": PIL.__version__}  # fmt: skip


def markdown(run: dict[str, Any]) -> str:
    """The run's tables in markdown (what docs/speed.md shows)."""

    def f(x: Any, fmt: str = ".1f") -> str:
        return "–" if x is None else format(x, fmt)

    meta, lines = run["meta"], []
    load = meta["load_average_before"][0], meta["load_average_after"][0]
    lines.append(
        f"{meta['machine']}; {meta['threads']} threads; measured peak GFLOP/s {meta['peak_gflops']}; "
        f"load average {load[0]:.2f} before, {load[1]:.2f} after"
    )
    for name, model in run["models"].items():
        if name == "catalog":
            for config, row in model.items():
                if "catalog_s" in row:
                    n, secs = row["catalog_images"], row["catalog_s"]
                    lines.append(
                        f"\nWhole KAGL catalog with vestis-mini ({config}: {row['runtime']}): {n:,} images in "
                        f"{secs:.1f} s ({n / secs:.0f} images/s), peak RSS {row['peak_rss_mb']:.0f} MB"
                    )
            continue
        ref_gflop = model.get("reference_gflop", model["image_gflop"])
        per_image = f"{model['image_gflop']:.2f} GFLOP per image" + (
            f" (the reference way computes {ref_gflop:.2f})" if ref_gflop > model["image_gflop"] * 1.001 else ""
        )
        lines += [f"\n**{model['description']}**, {per_image}\n",
                  "| configuration | img/s b32 | img/s b256 | model-only img/s | GFLOP/s | % fp32 peak | % own peak "
                  "| texts/s | query p50 ms | p99 ms | peak RSS MB | × e2e b32 | × e2e b256 | × texts/s | × p50 |",
                  "|---" * 15 + "|"]  # fmt: skip
        for config, row in model["rows"].items():
            if "error" in row:
                lines.append(f"| {config} | error: {row['error']} |" + " |" * 13)
                continue
            cells = [f(row.get("e2e_b32")), f(row.get("e2e_b256")), f(row.get("model_only_b32")),
                     f(row.get("achieved_gflops"), ".0f"), f(100 * row["share_of_fp32_peak"], ".0f"),
                     f(100 * row["share_of_own_peak"], ".0f"), f(row.get("texts_per_s")),
                     f(row.get("query_p50_ms"), ".2f"), f(row.get("query_p99_ms"), ".2f"),
                     f(row.get("peak_rss_mb"), ".0f"), f(row.get("ratio_e2e_b32"), ".2f"),
                     f(row.get("ratio_e2e_b256"), ".2f"), f(row.get("ratio_texts_per_s"), ".2f"),
                     f(row.get("ratio_query_p50"), ".2f")]  # fmt: skip
            lines.append(f"| {config} | " + " | ".join(cells) + " |")
        par = model["parity"]
        margin = par["rows"]["torch fp32 (reference)"].get("top1_margin_median", 0)
        lines += [f"\nParity with torch fp32 ({par['data']}; fp32's median top-1 margin {margin:.4f}):\n",
                  "| variant | image cos min / mean | text cos min / mean "
                  "| top-1 agreement: image tower / text tower / both | passes | int8 graphs kept |",
                  "|---" * 6 + "|"]  # fmt: skip
        for variant, row in par["rows"].items():
            if "passed" not in row:
                continue
            if row.get("written") is False:
                lines.append(f"| {variant} | – | – | – | no | none (no candidate passed) |")
                continue
            kept = "; ".join(f"{k}: {v}" for k, v in row.get("methods", {}).items()) or "–"
            lines.append(
                f"| {variant} | {row['image_cos_min']:.4f} / {row['image_cos_mean']:.4f} | {row['text_cos_min']:.4f} / "
                f"{row['text_cos_mean']:.4f} | {100 * row['top1_agreement_image_tower']:.1f}% / "
                f"{100 * row['top1_agreement_text_tower']:.1f}% / {100 * row['top1_agreement']:.1f}% | "
                f"{'yes' if row['passed'] else 'no'} | {kept} |"
            )
        for tower, tried in par["rows"].get("onnx int8", {}).get("tried", {}).items():
            lines += [f"- int8 {tower} tower, {attempt}" for attempt in tried]
    return "\n".join(lines) + "\n"


def print_tables(console: Any, meta: dict[str, Any], results: dict[str, Any]) -> None:
    from rich.table import Table

    def f(x: Any, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    console.print(f"{meta['machine']}; {meta['threads']} threads; peak GFLOP/s: {meta['peak_gflops']}")
    for name, model in results.items():
        if name == "catalog":
            continue
        table = Table(title=f"{model['description']}: {model['image_gflop']:.2f} GFLOP per image")
        cols = ("config", "img/s b32", "img/s b256", "model img/s", "GFLOP/s", "% fp32 peak", "% own peak",
                "texts/s", "query p50", "p99 ms", "RSS MB", "x e2e b32", "x e2e b256", "x texts", "x p50")  # fmt: skip
        for c in cols:
            table.add_column(c, justify="left" if c == "config" else "right")
        for config, row in model["rows"].items():
            if "error" in row:
                table.add_row(config, f"[red]{row['error'][:60]}[/]", *[""] * (len(cols) - 2))
                continue
            table.add_row(
                config, f(row.get("e2e_b32")), f(row.get("e2e_b256")), f(row.get("model_only_b32")),
                f(row.get("achieved_gflops"), ".0f"), f(100 * row.get("share_of_fp32_peak", 0), ".0f"),
                f(100 * row.get("share_of_own_peak", 0), ".0f"), f(row.get("texts_per_s")),
                f(row.get("query_p50_ms"), ".2f"), f(row.get("query_p99_ms"), ".2f"), f(row.get("peak_rss_mb"), ".0f"),
                f(row.get("ratio_e2e_b32"), ".2f"), f(row.get("ratio_e2e_b256"), ".2f"),
                f(row.get("ratio_texts_per_s"), ".2f"), f(row.get("ratio_query_p50"), ".2f"),
            )  # fmt: skip
        console.print(table)
        par = Table(title=f"{model['description']}: parity with torch fp32 ({model['parity']['data']})")
        for c in ("variant", "img cos min", "txt cos min", "top-1 agree", "passes", "int8 graphs"):
            par.add_column(c)
        ref = model["parity"]["rows"]["torch fp32 (reference)"]
        for variant, row in model["parity"]["rows"].items():
            if "passed" not in row:
                continue
            graphs = row.get("methods") or ({} if row.get("written", True) else {"-": "none passed"})
            par.add_row(
                variant, f(row.get("image_cos_min"), ".4f"), f(row.get("text_cos_min"), ".4f"),
                f(100 * row["top1_agreement"], ".1f") + "%" if "top1_agreement" in row else "-",
                "yes" if row["passed"] else "no", "; ".join(f"{k}: {v}" for k, v in graphs.items()),
            )  # fmt: skip
        par.caption = f"fp32's median top-1 margin: {ref.get('top1_margin_median', 0):.4f}"
        console.print(par)
    if "catalog" in results:
        for config, row in results["catalog"].items():
            if "catalog_s" in row:
                rate = row["catalog_images"] / row["catalog_s"]
                console.print(
                    f"KAGL catalog ({row['catalog_images']} images), vestis-mini {config} ({row['runtime']}): "
                    f"{row['catalog_s']:.0f} s, {rate:.0f} images/s, peak RSS {row['peak_rss_mb']:.0f} MB"
                )
            else:
                console.print(f"KAGL catalog, vestis-mini {config}: {row.get('error')}")


if __name__ == "__main__":
    main()
