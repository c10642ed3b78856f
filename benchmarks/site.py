"""The static site (``vestis export site``): its weight, and how soon it answers in headless Chromium.

Exports an index as a site (the default: int8 text tower where it passes parity, float16
vectors; ``--precisions auto,fp32`` also with the fp32 tower, the visits interleaved),
serves it with a plain static file server (``http.server``, no compression) and opens it in
Debian's Chromium (Playwright) ``--runs`` times, each in a fresh browser context (an empty
cache, as a first visit):

* page weight: the whole folder, what the page fetches before its first result (everything
  but the thumbnails) and each part, raw and gzip-compressed (what a compressing host sends);
* time to ready: from navigation to the model, vectors and items loaded;
* first query: embedding + scanning every vector + top 10, the first query of a visit;
  first result: navigation to the first results shown (ready + first query);
* warm queries: the median of 10 more queries.

The budget (``BUDGET_MB``): a 40k-item catalog's site fetches at most that much before its
first result.  An index smaller than 40,441 items is measured as it is and the 40k figure is
extrapolated (fixed part + per-item bytes x 40,441), labelled as such.

    .venv/bin/python benchmarks/site.py INDEX [--precisions auto,fp32] [--runs 3] [--out results/bench/site.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.site.conftest import ARGS, CHROMIUM, StaticServer  # noqa: E402

KAGL_ITEMS = 40_441
#: The budget: what a visitor downloads before the first result, for the 40k catalog.
BUDGET_MB = 64.0
QUERIES = ["red summer dress", "black formal shoes", "blue jeans", "leather handbag", "white sports shoes",
           "kurta for a festival", "analog watch", "striped polo t-shirt", "sunglasses", "silver earrings",
           "casual shirt"]  # fmt: skip


def gzip_mb(folder: Path, first_load: bool) -> float:
    total = 0
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not (first_load and rel.startswith("thumbs/")):
            if rel.startswith("thumbs/"):
                total += path.stat().st_size  # JPEGs do not compress
            else:
                total += len(gzip.compress(path.read_bytes(), compresslevel=6))
    return round(total / 1e6, 3)


def measure(sites: dict[str, Path], runs: int) -> dict[str, list[dict]]:
    """``runs`` visits of each site, interleaved (site A, site B, A, B, ...) so that they share the machine's load."""
    from contextlib import ExitStack

    from playwright.sync_api import sync_playwright

    out: dict[str, list[dict]] = {name: [] for name in sites}
    with ExitStack() as stack, sync_playwright() as p:
        servers = {name: stack.enter_context(StaticServer(site)) for name, site in sites.items()}
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(runs):
            for name, server in servers.items():
                out[name].append(visit(browser, server))
        browser.close()
    return out


def visit(browser, server) -> dict:
    """One first visit (a fresh context: empty cache): time to ready, the first query, 10 more."""
    context = browser.new_context()
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(server.url + "/")
    page.evaluate("() => window.vestisSite.ready")
    ready_s = time.perf_counter() - t0
    first = page.evaluate("q => window.vestisSite.search(q, 10)", QUERIES[0])
    first_result_s = time.perf_counter() - t0
    warm = [page.evaluate("q => window.vestisSite.search(q, 10)", q)["ms"]["total"] for q in QUERIES[1:]]
    timings = page.evaluate("() => window.vestisSite.timings")
    context.close()
    return {
        "ready_s": round(ready_s, 3),
        "ready_in_page_s": round((timings["ready"] - timings["start"]) / 1000, 3),
        "first_query_ms": round(first["ms"]["total"], 1),
        "first_query_embed_ms": round(first["ms"]["embed"], 1),
        "first_query_scan_ms": round(first["ms"]["scan"], 1),
        "first_result_s": round(first_result_s, 3),
        "warm_query_ms_median": round(statistics.median(warm), 1),
    }


def describe(site: Path, report, runs: list[dict]) -> dict:
    """Sizes (and the 40k extrapolation when the catalog is smaller), parity and timings of one site."""
    from vestis.site import site_sizes

    sizes = site_sizes(site)
    n = report.items
    per_item = (sizes["vectors"] + sizes.get("items", 0)) / n
    per_item_thumbs = sizes.get("thumbnails", 0) / n
    fixed = sizes["first_load"] - per_item * n
    at_40k = {
        "first_load": round(fixed + per_item * KAGL_ITEMS, 1),
        "total": round(fixed + (per_item + per_item_thumbs) * KAGL_ITEMS, 1),
    }
    return {
        "text_tower": f"{report.text_precision} ({report.text_method})",
        "text_parity": report.text_parity,
        "vectors": report.vectors,
        "export_s": report.seconds,
        "sizes_mb": sizes,
        "gzip_mb": {"first_load": gzip_mb(site, True), "total": gzip_mb(site, False)},
        "at_40k_mb": at_40k,
        "at_40k_is": "measured" if n >= KAGL_ITEMS else f"extrapolated from {n} items (fixed + per item x 40,441)",
        "budget": {"first_load_mb_at_40k": BUDGET_MB, "kept": at_40k["first_load"] <= BUDGET_MB},
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", help="an index directory built with vestis-mini")
    parser.add_argument("--precisions", default="auto", help="text towers to compare side by side, e.g. auto,fp32")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "site.json"))
    args = parser.parse_args()

    from vestis.site import export_site

    load = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        sites, reports = {}, {}
        for precision in args.precisions.split(","):
            sites[precision] = Path(tmp) / precision
            reports[precision] = export_site(
                args.index, sites[precision], text_precision=precision,
                log=lambda line: print(line, file=sys.stderr, flush=True),
            )  # fmt: skip
        runs = measure(sites, args.runs)
        result = {
            "what": "vestis export site: page weight and first-query latency in headless Chromium "
            "(Debian's, Playwright), served by http.server (no compression), each run a fresh context; "
            "the sites' runs interleaved",
            "index": str(args.index),
            "items": next(iter(reports.values())).items,
            "model": next(iter(reports.values())).model,
            "sites": {p: describe(sites[p], reports[p], runs[p]) for p in sites},
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "load_average_at_start": load,
                "shared": True,
            },  # fmt: skip
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    n = result["items"]
    print("| items | text tower | first load MB (gzip) | whole site MB | 40k first load / whole MB | budget | "
          "ready s | first query ms | first result s | warm query ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for site in result["sites"].values():
        m, sizes, at_40k = site["median"], site["sizes_mb"], site["at_40k_mb"]
        print(
            f"| {n:,} | {site['text_tower'].split(' ')[0]} | {sizes['first_load']:.1f} "
            f"({site['gzip_mb']['first_load']:.1f}) | {sizes['total']:.1f} | {at_40k['first_load']} / "
            f"{at_40k['total']}{'' if n >= KAGL_ITEMS else ' (extrapolated)'} | ≤ {BUDGET_MB:.0f}: "
            f"{'kept' if site['budget']['kept'] else 'NOT kept'} | {m['ready_s']} | {m['first_query_ms']} | "
            f"{m['first_result_s']} | {m['warm_query_ms_median']} |"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
