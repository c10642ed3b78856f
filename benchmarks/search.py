"""Catalog index benchmark: build throughput, query latency and ANN recall.

Three parts, each optional:

* ``build``: index the whole KAGL catalog (../shared/data/kagl, 40k products) with the
  bundled model through ``vestis.index.build.build_index`` — throughput end to end
  (JPEG decode, embedding, SQLite writes, snapshot).
* ``catalog``: on that index, p50/p99 latency of ``LocalStore.search`` (exact and with an
  HNSW graph built over the same vectors) for real text queries, and recall@10 of HNSW
  against exact search; with and without a metadata filter.
* ``synthetic``: 1M (``--n``) 512-d unit vectors drawn from a mixture of Gaussian clusters
  (real embeddings are clustered; uniform random vectors are the worst case for any ANN
  index and not what a catalog looks like), HNSW over them through the same
  ``VectorSet`` the store uses, recall@10 against exact (faiss brute force) and latency
  per query at several ``efSearch``, for float32 / float16 / int8 vectors.

Prints tables and writes results/bench/search.json. Single queries, one at a time,
as the CLI and the server issue them; faiss uses every core (2 here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
console = Console()


def percentiles(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def timed_queries(fn, queries) -> tuple[list, list[float]]:
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append((time.perf_counter() - t) * 1000)
    return out, times


def recall_at(found: list[list], truth: list[list], k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / max(1, min(k, len(t))) for f, t in zip(found, truth)]))


# ------------------------------------------------------------------------------ build


def bench_build(workdir: Path, model: str | None) -> tuple[dict, Path]:
    from vestis.data import kagl_parquets
    from vestis.index.build import build_index
    from vestis.models import load_encoder

    files = kagl_parquets()
    if not files:
        raise SystemExit("the KAGL catalog (../shared/data/kagl) is not here")
    catalog = workdir / "kagl"
    catalog.mkdir()
    for f in files:
        os.symlink(f, catalog / f.name)
    encoder = load_encoder(model)
    out = workdir / "index"
    t = time.perf_counter()
    report = build_index(catalog, out, encoder=encoder, quiet=True)
    seconds = time.perf_counter() - t
    result = {
        "model": encoder.name,
        "items": report.total_items,
        "seconds": round(seconds, 1),
        "items_per_s": round(report.seen / seconds, 1),
        "unreadable_images": len(report.unreadable_images),
        "index_mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1),
    }
    t = time.perf_counter()
    again = build_index(catalog, out, encoder=encoder, quiet=True)
    result["rebuild_unchanged_seconds"] = round(time.perf_counter() - t, 1)
    assert again.unchanged == report.total_items
    return result, out


# ---------------------------------------------------------------------------- catalog


def bench_catalog(index: Path, n_queries: int) -> dict:
    import pyarrow.parquet as pq

    from vestis.data import kagl_parquets
    from vestis.index.filters import parse_filter
    from vestis.index.local import LocalStore
    from vestis.index.vectors import AnnConfig, build_vector_set
    from vestis.models import load_encoder

    store = LocalStore.open(index)
    encoder = load_encoder(store.info.model)
    titles = [
        t for f in kagl_parquets() for t in pq.read_table(f, columns=["productDisplayName"]).column(0).to_pylist()
    ]
    titles = [t for t in titles if t][:n_queries]
    queries = encoder.encode_texts(titles)
    exact_vs = store._snapshot()
    results: dict = {"n": int(exact_vs.n_live), "queries": len(titles)}
    t = time.perf_counter()
    hnsw_vs = build_vector_set(exact_vs.rows, np.asarray(exact_vs.vectors), AnnConfig(threshold=1))
    results["hnsw_build_s"] = round(time.perf_counter() - t, 2)
    truth, exact_ms = timed_queries(lambda q: list(exact_vs.search(q, 10, exact=True)[0]), queries)
    results["exact"] = percentiles(exact_ms)
    for ef in (32, 64, 96):
        hnsw_vs.config = AnnConfig(threshold=1, ef_search=ef)
        found, ms = timed_queries(lambda q: list(hnsw_vs.search(q, 10)[0]), queries)
        results[f"hnsw_ef{ef}"] = {**percentiles(ms), "recall@10": round(recall_at(found, truth), 4)}
    # through the store: SQLite row->id lookup, and a filter evaluated in SQL then passed into the search
    _, ms = timed_queries(lambda q: store.search(q, 10), queries)
    results["store_search"] = percentiles(ms)
    flt = parse_filter("masterCategory = 'Footwear' AND season IN ('Summer', 'Fall')")
    _, ms = timed_queries(lambda q: store.search(q, 10, where=flt), queries)
    results["store_search_filtered"] = percentiles(ms)
    _, ms = timed_queries(lambda t: store.keyword_search(t, 10), titles)
    results["keyword_bm25"] = percentiles(ms)
    store.close()
    return results


# -------------------------------------------------------------------------- synthetic


def clustered_vectors(n: int, dim: int, n_clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        labels = rng.integers(0, n_clusters, m)
        noise = rng.normal(scale=spread / np.sqrt(dim), size=(m, dim)).astype(np.float32)
        block = centres[labels] + noise
        out[s : s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_catalog(n: int, dim: int, workdir: Path | None) -> tuple:
    """``n`` clustered unit vectors with an HNSW graph (the store's default settings) and synthetic
    metadata columns (a 100-value brand, a 10-value colour, a price), the vector snapshot kept in
    ``workdir`` between runs (the 1M graph takes minutes to build on 2 cores)."""
    from vestis.index.columns import Column, Columns
    from vestis.index.vectors import AnnConfig, build_vector_set, load_vector_set, save_vector_set

    rng = np.random.default_rng(1)
    columns = Columns(
        {
            "brand": Column.from_values([f"brand{b:03d}" for b in rng.integers(0, 100, n)]),
            "colour": Column.from_values([f"colour{c}" for c in rng.integers(0, 10, n)]),
            "price": Column.from_values(np.round(rng.uniform(1, 200, n), 2).tolist()),
        },
        n,
    )
    folder = workdir / f"synthetic-{n}-{dim}" if workdir is not None else None
    loaded = load_vector_set(folder) if folder is not None else None
    if loaded is not None and loaded[0].hnsw is not None:
        return loaded[0], columns, loaded[1]["build_s"]
    vectors = clustered_vectors(n, dim, n_clusters=max(100, n // 500), spread=1.0, seed=0)
    t = time.perf_counter()
    vs = build_vector_set(np.arange(n, dtype=np.int64), vectors, AnnConfig(threshold=1))
    build_s = round(time.perf_counter() - t, 1)
    if folder is not None:
        save_vector_set(vs, folder, {"build_s": build_s})
    return vs, columns, build_s


def bench_synthetic(n: int, dim: int, n_queries: int, quantizers: list[str], efs: list[int]) -> dict:
    import faiss

    from vestis.index.vectors import AnnConfig, build_vector_set

    both = clustered_vectors(n + n_queries, dim, n_clusters=max(100, n // 500), spread=1.0, seed=0)
    data, queries = both[:n], both[n:]  # queries: unseen draws from the same clusters
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    t = time.perf_counter()
    _, truth = flat.search(queries, 10)
    exact_ms_batch = (time.perf_counter() - t) * 1000 / n_queries
    _, exact_ms = timed_queries(lambda q: flat.search(q[None], 10), queries[: min(50, n_queries)])
    results: dict = {"n": n, "dim": dim, "queries": n_queries, "exact_brute_force": percentiles(exact_ms),
                     "exact_batched_ms_per_query": round(exact_ms_batch, 3), "hnsw": {}}  # fmt: skip
    rows = np.arange(n, dtype=np.int64)
    for quantizer in quantizers:
        cfg = AnnConfig(threshold=1, quantizer=quantizer)
        t = time.perf_counter()
        vs = build_vector_set(rows, data, cfg)
        build_s = time.perf_counter() - t
        entry = {"build_s": round(build_s, 1), "build_vectors_per_s": round(n / build_s), "by_ef": {}}
        for ef in efs:
            vs.config = AnnConfig(threshold=1, ef_search=ef, quantizer=quantizer)
            found, ms = timed_queries(lambda q, vs=vs: list(vs.search(q, 10)[0]), queries)
            entry["by_ef"][ef] = {**percentiles(ms), "recall@10": round(recall_at(found, truth.tolist()), 4)}
        entry["index_mb"] = round(faiss.serialize_index(vs.hnsw).nbytes / 2**20, 1)
        results["hnsw"][quantizer] = entry
        console.print(f"  {quantizer}: built in {build_s:.0f} s", highlight=False)
        del vs
    return results


# ------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="build,catalog,synthetic")
    ap.add_argument("--model", default=None, help="model for the build (default: the bundled one)")
    ap.add_argument("--index", type=Path, help="reuse this KAGL index instead of building one")
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--quantizers", default="float32,float16,int8")
    ap.add_argument("--ef", default="32,64,96,128")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "search.json")
    args = ap.parse_args()
    parts = args.parts.split(",")
    result: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    workdir = Path(tempfile.mkdtemp(prefix="vestis-bench-"))
    try:
        index = args.index
        if "build" in parts:
            console.print("build: indexing the KAGL catalog …")
            result["build"], index = bench_build(workdir, args.model)
            b = result["build"]
            console.print(f"  {b['items']} items in {b['seconds']} s ({b['items_per_s']} items/s)", highlight=False)
        if "catalog" in parts:
            if index is None:
                raise SystemExit("--parts catalog needs the build part or --index")
            result["catalog"] = c = bench_catalog(index, args.queries)
            table = Table(title=f"KAGL index, {c['n']} items, {c['queries']} title queries (k=10)")
            for col in ("search", "p50 ms", "p99 ms", "recall@10 vs exact"):
                table.add_column(col)
            for name, v in c.items():
                if isinstance(v, dict):
                    table.add_row(name, str(v["p50_ms"]), str(v["p99_ms"]), str(v.get("recall@10", "")))
            console.print(table)
        if "synthetic" in parts:
            console.print(f"synthetic: {args.n:,} clustered {args.dim}-d vectors …")
            efs = [int(x) for x in args.ef.split(",")]
            result["synthetic"] = s = bench_synthetic(args.n, args.dim, args.queries, args.quantizers.split(","), efs)
            table = Table(title=f"{s['n']:,} x {s['dim']}-d vectors, {s['queries']} single queries (k=10)")
            for col in ("index", "efSearch", "p50 ms", "p99 ms", "recall@10", "build s", "size MB"):
                table.add_column(col)
            e = s["exact_brute_force"]
            table.add_row("exact (faiss flat)", "-", str(e["p50_ms"]), str(e["p99_ms"]), "1.0", "-", "-")
            for q, entry in s["hnsw"].items():
                for ef, v in entry["by_ef"].items():
                    table.add_row(f"HNSW32 {q}", str(ef), str(v["p50_ms"]), str(v["p99_ms"]), str(v["recall@10"]),
                                  str(entry["build_s"]), str(entry["index_mb"]))  # fmt: skip
            console.print(table)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
