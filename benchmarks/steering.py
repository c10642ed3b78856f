"""Search quality checks behind the README's steering figures, on KAGL's validation split.

Indexes the KAGL validation split (4,103 products never trained on) with a model
through ``build_index`` and runs fixed queries with and without steering or negative
terms, counting how many of the top ``k`` results have a property read from KAGL's
labels (the judgement rules are below, written before measuring):

* "tshirt" steered **darker**: share of dark ``baseColour`` (DARK) — and that results
  stay t-shirts (``articleType`` Tshirts);
* "shoes" steered **casual->formal**: share of ``usage`` Formal — staying footwear
  (``masterCategory`` Footwear);
* "shoes, -black": share of Black, which the negative term should lower;
* "jeans": share of ``articleType`` Jeans (a sanity check, no steering).

    python benchmarks/steering.py                      # vestis-mini, k = 20
    python benchmarks/steering.py --model runs/vestis-mini-v2 --k 20

Prints a table and writes results/bench/steering.json (one entry per model).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DARK = {"Black", "Navy Blue", "Charcoal", "Brown", "Maroon", "Coffee Brown", "Burgundy", "Olive", "Teal",
        "Mushroom Brown", "Rust", "Bronze", "Copper", "Steel", "Grey"}  # fmt: skip

#: (name, search kwargs, property judged, its label column, the values that count)
CASES = [
    ("tshirt", {"text": "tshirt"}, "dark", "baseColour", DARK),
    ("tshirt, darker", {"text": "tshirt", "steer": ["darker"]}, "dark", "baseColour", DARK),
    ("tshirt", {"text": "tshirt"}, "t-shirt", "articleType", {"Tshirts"}),
    ("tshirt, darker", {"text": "tshirt", "steer": ["darker"]}, "t-shirt", "articleType", {"Tshirts"}),
    ("shoes", {"text": "shoes"}, "formal", "usage", {"Formal"}),
    ("shoes, casual->formal", {"text": "shoes", "steer": ["casual->formal"]}, "formal", "usage", {"Formal"}),
    ("shoes", {"text": "shoes"}, "footwear", "masterCategory", {"Footwear"}),
    ("shoes, casual->formal", {"text": "shoes", "steer": ["casual->formal"]}, "footwear", "masterCategory",
     {"Footwear"}),
    ("shoes", {"text": "shoes"}, "black", "baseColour", {"Black"}),
    ("shoes, -black", {"text": "shoes, -black"}, "black", "baseColour", {"Black"}),
    ("jeans", {"text": "jeans"}, "jeans", "articleType", {"Jeans"}),
]  # fmt: skip


def val_catalog(data: Path, out: Path) -> Path:
    import pyarrow.parquet as pq

    from vestis.data.catalog import read_catalog
    from vestis.data.split import select_split

    table = select_split(read_catalog(data), "val")
    path = out / "kagl-val.parquet"
    pq.write_table(table, path)
    return path


def main() -> None:
    import vestis
    from vestis.data import shared_data_dir
    from vestis.index.build import build_index
    from vestis.search import Catalog

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vestis-mini")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--data", default=None, help="KAGL parquet folder (default: the shared data folder's kagl)")
    ap.add_argument("--out", default="results/bench/steering.json")
    args = ap.parse_args()
    data = Path(args.data) if args.data else shared_data_dir() / "kagl"
    encoder = vestis.load_encoder(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        catalog = val_catalog(data, Path(tmp))
        build_index(catalog, Path(tmp) / "index", encoder=encoder, title_column="productDisplayName", quiet=True)
        build_s = time.perf_counter() - t0
        with Catalog.open(Path(tmp) / "index", encoder=encoder) as cat:
            for name, query, prop, column, values in CASES:
                hits = cat.search(k=args.k, **query).hits
                n = sum(str(h.metadata.get(column)) in values for h in hits)
                rows.append({"query": name, "property": prop, "count": n, "k": len(hits)})
    print(f"{args.model} ({encoder.runtime}), KAGL val split, top {args.k}; index built in {build_s:.0f} s")
    print("| query | judged | in top k |\n|---|---|---|")
    for r in rows:
        print(f"| {r['query']} | {r['property']} | {r['count']}/{r['k']} |")
    out = REPO / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved[args.model] = {"runtime": encoder.runtime, "k": args.k, "dark_colours": sorted(DARK), "rows": rows}
    out.write_text(json.dumps(saved, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
