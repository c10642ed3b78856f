"""Feedback on KAGL's validation split: does one like and one dislike bring the wanted items up?

Indexes the KAGL validation split (4,103 products never trained on) as ``benchmarks/steering.py``
does. A shopper wants a kind of garment in one colour (a target: an ``articleType`` and a
``baseColour`` with at least ``--min-items`` products in the split, the ``--targets`` most
frequent pairs). The rules, written before measuring:

* the query is the article type alone ("tshirts": the colour is what feedback must find) or
  the colour and the type ("black tshirts");
* from the query's top 20, the shopper likes the best-ranked product that matches the target
  (type and colour) and dislikes the best-ranked one that does not; a target whose top 20 holds
  no match (or no miss) gets no feedback and is counted apart;
* **before**: how many of the top 20 match, among the plain search's results other than the two
  examples (so the liked item itself does not count); **after**: the same for ``recommend``
  (which never returns the examples), for each set of Rocchio weights, and for the two
  examples alone (no query).

    python benchmarks/recommend.py                      # vestis-mini, k = 20

Prints a table and writes results/bench/recommend.json (one entry per model).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

from steering import val_catalog

REPO = Path(__file__).resolve().parents[1]

#: (name, query weight, like weight, dislike weight)
WEIGHTS = [
    ("default 1/0.75/0.25", 1.0, 0.75, 0.25),
    ("like only 1/0.75/0", 1.0, 0.75, 0.0),
    ("classic 1/0.75/0.15", 1.0, 0.75, 0.15),
    ("strong 1/1.5/0.5", 1.0, 1.5, 0.5),
    ("gentle 1/0.4/0.1", 1.0, 0.4, 0.1),
]


def main() -> None:
    import vestis
    from vestis.data import shared_data_dir
    from vestis.index.build import build_index
    from vestis.recommend import RocchioWeights
    from vestis.search import Catalog

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vestis-mini")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--targets", type=int, default=40)
    ap.add_argument("--min-items", type=int, default=10)
    ap.add_argument("--data", default=None, help="KAGL parquet folder (default: the shared data folder's kagl)")
    ap.add_argument("--index", default=None, help="Reuse (or build here) the KAGL-val index")
    ap.add_argument("--out", default="results/bench/recommend.json")
    args = ap.parse_args()
    data = Path(args.data) if args.data else shared_data_dir() / "kagl"
    encoder = vestis.load_encoder(args.model)
    k = args.k
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(args.index) if args.index else Path(tmp) / "index"
        t0 = time.perf_counter()
        if not (index / "index.sqlite").is_file():
            catalog = val_catalog(data, Path(tmp))
            build_index(catalog, index, encoder=encoder, title_column="productDisplayName", quiet=True)
        build_s = time.perf_counter() - t0
        with Catalog.open(index, encoder=encoder) as cat:
            ids = cat.store.all_ids()
            meta = {i: r.metadata for i, r in cat.store.get(ids).items()}
            pairs = collections.Counter((m.get("articleType"), m.get("baseColour")) for m in meta.values())
            targets = [p for p, n in pairs.most_common() if n >= args.min_items and all(p)][: args.targets]
            rows = []
            for kind, colour in targets:
                for form, text in (("type", kind.lower()), ("colour type", f"{colour} {kind}".lower())):

                    def good(h, kind=kind, colour=colour):
                        return h.metadata.get("articleType") == kind and h.metadata.get("baseColour") == colour

                    plain = cat.search(text, k=k + 2).hits
                    liked = next((h for h in plain[:k] if good(h)), None)
                    disliked = next((h for h in plain[:k] if not good(h)), None)
                    row = {"target": f"{colour} {kind}", "query": text, "form": form,
                           "in_catalog": pairs[(kind, colour)]}  # fmt: skip
                    if liked is None or disliked is None:
                        row["before"] = sum(good(h) for h in plain[:k])
                        row["feedback"] = False
                        rows.append(row)
                        continue
                    examples = {liked.id, disliked.id}
                    row["before"] = sum(good(h) for h in [h for h in plain if h.id not in examples][:k])
                    row["feedback"] = True
                    for name, wq, wl, wd in WEIGHTS:
                        w = RocchioWeights(query=wq, like=wl, dislike=wd)
                        hits = cat.recommend([liked.id], [disliked.id], text, rocchio_weights=w, k=k).hits
                        row[name] = sum(good(h) for h in hits)
                    hits = cat.recommend([liked.id], [disliked.id], k=k).hits
                    row["examples only"] = sum(good(h) for h in hits)
                    rows.append(row)
    columns = ["before", *(w[0] for w in WEIGHTS), "examples only"]
    summary = {}
    for form in ("type", "colour type"):
        fed = [r for r in rows if r["form"] == form and r["feedback"]]
        summary[form] = {
            "targets": len([r for r in rows if r["form"] == form]), "with_feedback": len(fed),
            **{c: round(sum(r[c] for r in fed) / max(1, len(fed)), 2) for c in columns},
            "improved_default": sum(r[WEIGHTS[0][0]] > r["before"] for r in fed),
            "worse_default": sum(r[WEIGHTS[0][0]] < r["before"] for r in fed),
        }  # fmt: skip
    print(f"{args.model} ({encoder.runtime}), KAGL val split, {len(targets)} targets (type + colour), top {k}; "
          f"index {build_s:.0f} s")  # fmt: skip
    print("mean matches in the top 20 (type and colour), targets with one like + one dislike:")
    print("| query | targets (with feedback) | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for form, s in summary.items():
        cells = " | ".join(f"{s[c]:.2f}" for c in columns)
        print(f"| {form} | {s['targets']} ({s['with_feedback']}) | {cells} |")
    for form, s in summary.items():
        print(f"{form}: default weights better on {s['improved_default']}, worse on {s['worse_default']} targets")
    out = REPO / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved[args.model] = {"runtime": encoder.runtime, "k": k, "weights": WEIGHTS, "summary": summary, "rows": rows,
                         "note": "measured on a shared 2-core machine (a training job ran alongside)"}  # fmt: skip
    out.write_text(json.dumps(saved, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
