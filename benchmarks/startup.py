"""How long ``vestis search INDEX "query"`` takes from the shell, and where the time goes.

Builds (once) an index of KAGL validation products with the bundled model, then:

1. times the whole command, ``vestis search INDEX "red summer dress" --json``, from
   start to exit (``--runs`` runs after one warm-up; median, min, max; peak RSS of each run);
2. splits one start-up into stages, in a fresh process each time: ``import vestis.cli``,
   opening the index, loading the encoder, the first and second query; once with the
   default encoder (vestis-mini's ONNX text tower) and once with the torch one
   (``runtime="torch"``, on an index built with it), which is what every search paid before.

Prints a table and writes ``results/bench/startup.json``::

    .venv/bin/python benchmarks/startup.py [--items 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VESTIS = Path(sys.executable).with_name("vestis")
QUERY = "red summer dress"

STAGES = r"""
import json, sys, time
t0 = time.perf_counter()
marks = {}
def mark(name):
    marks[name] = time.perf_counter() - t0
import vestis.cli
mark("import vestis.cli")
from vestis.index.local import LocalStore
from vestis.index.store import load_index_encoder
from vestis.search import Catalog
store = LocalStore.open(sys.argv[1])
mark("open the index")
kwargs = {"runtime": sys.argv[2]} if sys.argv[2] != "default" else {}
encoder = load_index_encoder(store.info, **kwargs)
mark("load the encoder")
catalog = Catalog(store, encoder)
catalog.search(sys.argv[3], k=10)
mark("first query")
catalog.search("blue jeans", k=10)
mark("second query")
print(json.dumps({"marks": marks, "runtime": encoder.runtime, "torch": "torch" in sys.modules}))
"""


def run_with_rusage(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, the child's own peak RSS in MiB, stdout) of one run of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


BUILD = r"""
import sys
from pathlib import Path

import pyarrow.parquet as pq

from vestis.data import demo_catalog_path, kagl_parquets
from vestis.data.split import select_split
from vestis.index.build import build_index
from vestis.models import load_encoder

index, items, runtime = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = kagl_parquets()
table = select_split(pq.read_table(files[0]), "val") if files else pq.read_table(demo_catalog_path())
catalog = index.parent / f"catalog-{items}.parquet"
index.parent.mkdir(parents=True, exist_ok=True)
pq.write_table(table.slice(0, items), catalog)
encoder = load_encoder(**({"runtime": runtime} if runtime != "default" else {}))
build_index(catalog, index, encoder=encoder, quiet=True)
"""


def build(index: Path, items: int, runtime: str) -> None:
    """An index of the first ``items`` KAGL validation products, embedded with the default or the torch encoder.

    Built in a child process, so that this one stays small: a child's peak RSS
    (``wait4``) counts the memory it was forked with.
    """
    if not index.is_dir():
        subprocess.run([sys.executable, "-c", BUILD, str(index), str(items), runtime], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="products in the index")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (after one warm-up)")
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "bench-startup")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "startup.json")
    args = parser.parse_args()
    indexes = {runtime: args.workdir / f"index-{args.items}-{runtime}" for runtime in ("default", "torch")}
    for runtime, path in indexes.items():
        build(path, args.items, runtime)
    index = indexes["default"]

    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "vestis --version": [str(VESTIS), "--version"],
        f'vestis search INDEX "{QUERY}" --json': [str(VESTIS), "search", str(index), QUERY, "--json"],
    }
    whole: dict[str, dict] = {}
    for name, cmd in commands.items():
        run_with_rusage(cmd)  # warm-up: file cache, digest cache
        runs = [run_with_rusage(cmd) for _ in range(args.runs)]
        whole[name] = {"wall_s": summary([r[0] for r in runs]), "peak_rss_mib": summary([r[1] for r in runs])}

    stages: dict[str, dict] = {}
    for runtime in ("default", "torch"):
        rows = []
        for _ in range(max(1, args.runs // 2)):
            _, _, out = run_with_rusage([sys.executable, "-c", STAGES, str(indexes[runtime]), runtime, QUERY])
            rows.append(json.loads(out.strip().splitlines()[-1]))
        names = list(rows[0]["marks"])
        cumulative = {n: statistics.median(r["marks"][n] for r in rows) for n in names}
        steps, previous = {}, 0.0
        for n in names:
            steps[n] = cumulative[n] - previous
            previous = cumulative[n]
        stages[runtime] = {"runtime": rows[0]["runtime"], "imports_torch": rows[0]["torch"], "stages_s": steps}

    machine = run_with_rusage(
        [sys.executable, "-c", "from vestis.models.runtime import cpu_description as d; print(d())"]
    )[2].strip()
    load = os.getloadavg()[0]
    result = {
        "machine": machine,
        "load_average_1min_at_end": round(load, 2),
        "index_items": args.items,
        "runs": args.runs,
        "whole_command": whole,
        "stages": stages,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"start-up on {machine}; {args.items} products; median of {args.runs} runs; load average {load:.1f}\n")
    print(f"| {'command':<45} | wall s (min-max)     | peak RSS MiB |")
    print(f"|{'-' * 47}|{'-' * 22}|{'-' * 14}|")
    for name, row in whole.items():
        w, rss = row["wall_s"], row["peak_rss_mib"]["median"]
        print(f"| {name:<45} | {w['median']:5.2f} ({w['min']:.2f}-{w['max']:.2f})   | {rss:12.0f} |")
    print()
    names = list(next(iter(stages.values()))["stages_s"])
    print(f"| {'stage (fresh process)':<22} | " + " | ".join(f"{r:>28}" for r in stages) + " |")
    print(f"|{'-' * 24}|" + "|".join("-" * 30 for _ in stages) + "|")
    for n in names:
        print(f"| {n:<22} | " + " | ".join(f"{s['stages_s'][n]:27.2f}s" for s in stages.values()) + " |")
    total = {r: sum(s["stages_s"].values()) for r, s in stages.items()}
    print(f"| {'total':<22} | " + " | ".join(f"{total[r]:27.2f}s" for r in stages) + " |")
    for r, s in stages.items():
        print(f"{r}: {s['runtime']}; imports torch: {s['imports_torch']}")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
