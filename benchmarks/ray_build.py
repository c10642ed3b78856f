"""The local build vs ``--engine ray`` with 1 and 2 workers, side by side in one run.

The same catalog (KAGL validation products with their photos and titles) is indexed into a
fresh folder three ways by :func:`vestis.index.build.build_index`: in this process, then with
``engine="ray"`` on a local Ray with 1 and with 2 embedding workers (each run starts and stops
its own Ray, as ``vestis index build --engine ray`` does).
Reported per run: wall time from the call to its return (Ray's start, the actors' model loads
and Ray's stop included), the build's own seconds and items/s (from its report: after Ray is up),
and the items each worker embedded. The stored vectors of each Ray run are compared with the
local build's (largest absolute difference).

    python benchmarks/ray_build.py [--items 300] [--model vestis-mini]

Writes ``results/bench/ray_build.json`` and prints a Markdown table. On a shared machine the
load average is recorded before and after: compare the rows with each other, not with other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def catalog(n: int, folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vestis.data import demo_catalog_path, kagl_parquets
    from vestis.data.split import select_split

    files = kagl_parquets()
    table = select_split(pq.read_table(files[0]), "val") if files else pq.read_table(demo_catalog_path())
    path = folder / "catalog.parquet"
    pq.write_table(pa.Table.from_pylist(table.slice(0, n).to_pylist()), path, row_group_size=64)
    return path


def vectors(location: Path) -> dict[str, np.ndarray]:
    from vestis.index.stores import open_store

    with open_store(location) as store:
        got = store.get(list(store.content_hashes()), vectors=True)
        return {k: r.vector for k, r in got.items()}


def save(args, rows: list[dict], load_before: float, load_after: float | None = None) -> None:
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_before_after": [load_before, load_after],
        "items": args.items,
        "model": args.model,
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--model", default="vestis-mini")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "ray_build.json")
    args = ap.parse_args()

    from vestis.index.build import build_index
    from vestis.index.distributed import RayOptions

    work = Path(tempfile.mkdtemp(prefix="vestis-ray-bench-"))
    try:
        path = catalog(args.items, work)
        load_before = os.getloadavg()[0]
        rows = []
        t = time.perf_counter()
        report = build_index(path, work / "local", model=args.model, quiet=True)
        rows.append({"engine": "local", "workers": 1, "wall_s": time.perf_counter() - t, "report": report.to_dict()})
        save(args, rows, load_before)
        want = vectors(work / "local")
        for n in args.workers:
            t = time.perf_counter()
            report = build_index(
                path, work / f"ray{n}", model=args.model, engine="ray", ray=RayOptions(workers=n), quiet=True
            )
            got = vectors(work / f"ray{n}")
            assert sorted(got) == sorted(want), "the Ray build stored other items"
            diff = max(float(np.abs(got[k] - want[k]).max()) for k in want)
            rows.append({"engine": "ray", "workers": n, "wall_s": time.perf_counter() - t, "max_abs_diff": diff,
                         "report": report.to_dict()})  # fmt: skip
            save(args, rows, load_before)  # after each run: a slow machine may not see the last one
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save(args, rows, load_before, load_after)
    print(f"{args.items} items, {args.model}; load average {load_before:.1f} before, {load_after:.1f} after\n")
    print("| engine | workers | wall s (Ray start/stop in) | build s | items/s (build) | items/s (wall) | per worker |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rep = r["report"]
        shares = ", ".join(str(v) for v in rep["workers"].values()) or "–"
        print(f"| {r['engine']} | {r['workers']} | {r['wall_s']:.1f} | {rep['seconds']:.1f} | "
              f"{rep['items_per_second']:.1f} | {args.items / r['wall_s']:.1f} | {shares} |")  # fmt: skip


if __name__ == "__main__":
    main()
