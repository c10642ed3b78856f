"""Which map explains a match more faithfully: occlusion or gradient x input? A deletion test on KAGL.

For ``--items`` products of KAGL's validation split (every ``n``-th, so all kinds appear), the
query is the product's own colour and article type ("navy blue tshirts"). Each map (occlusion,
gradient x input, and a random order as the floor) ranks the cells of an 8 x 8 grid; the
deletion test (Petsiuk et al., 2018) paints out the top 0%, 10%, ..., 100% of cells with the
model's mean colour and reads the photo's cosine to the query after each step. The rule,
written before measuring: the map whose curve has the lower mean, relative to its start
(``deletion area``), is the more faithful; ties within 0.01 are ties.

Occlusion paints out one cell at a time when it builds its map, so it sees what removing a
single cell does; the deletion test removes many at once, where cells interact. Time per map
is measured too (one explanation: the occlusion batch of 65 images, or one forward and one
backward pass).

    python benchmarks/explain.py                      # vestis-mini, 200 items

Prints a table and writes results/bench/explain.json (one entry per model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    import vestis
    from vestis.data import shared_data_dir
    from vestis.data.catalog import read_catalog
    from vestis.data.split import select_split
    from vestis.explain import deletion_area, deletion_curve, gradient_map, model_pixels, occlusion_map

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vestis-mini")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--data", default=None, help="KAGL parquet folder (default: the shared data folder's kagl)")
    ap.add_argument("--out", default="results/bench/explain.json")
    args = ap.parse_args()
    data = Path(args.data) if args.data else shared_data_dir() / "kagl"
    encoder = vestis.load_encoder(args.model)
    table = select_split(read_catalog(data), "val")
    step = max(1, table.num_rows // args.items)
    rows = table.take(list(range(0, table.num_rows, step))[: args.items]).to_pylist()
    rng = np.random.default_rng(0)
    areas = {"occlusion": [], "gradient": [], "random": []}
    curves = {name: [] for name in areas}
    seconds = {"occlusion": 0.0, "gradient": 0.0}
    for n, row in enumerate(rows, 1):
        text = f"{row['baseColour']} {row['articleType']}".lower()
        pixels, photo = model_pixels(encoder, row["image"])
        q = encoder.encode_texts([text])[0]
        t0 = time.perf_counter()
        occ, _ = occlusion_map(encoder, pixels, q, args.grid, photo)
        t1 = time.perf_counter()
        grad = gradient_map(encoder, pixels, q, args.grid, photo)
        t2 = time.perf_counter()
        seconds["occlusion"] += t1 - t0
        seconds["gradient"] += t2 - t1
        maps = {"occlusion": occ, "gradient": grad, "random": rng.random((args.grid, args.grid))}
        for name, cells in maps.items():
            if cells is None:
                continue
            curve = deletion_curve(encoder, pixels, q, cells, photo=photo)
            areas[name].append(deletion_area(curve))
            curves[name].append((curve / curve[0]).tolist() if curve[0] > 0 else curve.tolist())
        if n % 25 == 0:
            print(f"{n}/{len(rows)} items", flush=True)
    occ_a, grad_a = np.array(areas["occlusion"]), np.array(areas["gradient"])
    summary = {
        name: {"deletion_area": round(float(np.mean(a)), 4), "median": round(float(np.median(a)), 4),
               "mean_curve": np.round(np.mean(curves[name], axis=0), 4).tolist()}
        for name, a in areas.items() if a
    }  # fmt: skip
    wins = {"occlusion": int(np.sum(occ_a < grad_a - 0.01)), "gradient": int(np.sum(grad_a < occ_a - 0.01)),
            "tie": int(np.sum(np.abs(occ_a - grad_a) <= 0.01))} if len(grad_a) else {}  # fmt: skip
    ms = {k: round(1000 * v / len(rows), 1) for k, v in seconds.items()}
    print(f"{args.model} ({encoder.runtime}), {len(rows)} KAGL-val items, {args.grid}x{args.grid} grid; "
          "machine shared with a training job")  # fmt: skip
    print("| map | deletion area (mean, lower = more faithful) | median | score left after 10% / 20% / 50% "
          "| ms per map |\n|---|---|---|---|---|")  # fmt: skip
    for name, s in summary.items():
        c = s["mean_curve"]
        print(f"| {name} | {s['deletion_area']:.3f} | {s['median']:.3f} | {c[1]:.3f} / {c[2]:.3f} / {c[5]:.3f} "
              f"| {ms.get(name, '')} |")  # fmt: skip
    if wins:
        print(f"per item: occlusion more faithful on {wins['occlusion']}, gradient on {wins['gradient']}, "
              f"tie on {wins['tie']}")  # fmt: skip
    out = REPO / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved[args.model] = {"runtime": encoder.runtime, "items": len(rows), "grid": args.grid, "summary": summary,
                         "wins": wins, "ms_per_map": ms,
                         "note": "measured on a shared 2-core machine (a training job ran alongside)"}  # fmt: skip
    out.write_text(json.dumps(saved, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
