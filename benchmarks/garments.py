"""Garments in street photos: detection on held-out CCP photos, and photo->catalog search with and without cropping.

Three parts, on Clothing Co-Parsing's held-out photos (the 20% never trained on:
:func:`vestis.data.ccp.is_heldout`; 208 pixel-annotated photos):

* ``detect``: ground-truth boxes are :func:`vestis.data.ccp.garment_crops`' boxes
  (from the masks, padded 10%) grouped as the segmenter groups labels
  (:mod:`vestis.garments.groups`; one box per group per photo, the union of its
  labels' boxes); a ground-truth box is found when :func:`find_garments` returns a
  box of the same group with IoU >= 0.5.  Recall and precision per group, the main
  garment's group and box, and pixel IoU per group.
* ``passthrough``: share of KAGL catalog photos (validation split) that go through
  unchanged (no garment found), and share of held-out CCP photos taken as street photos.
* ``search``: KAGL indexed with ``--model`` (in ``--workdir``, reused when it exists);
  each held-out photo is searched once per ground-truth garment group it shows, (a)
  whole, (b) cropped by :func:`garment_crop` to that group (the whole photo when none
  is found: what a user gets), (c) cropped to the ground-truth box (the ceiling for
  (b)); and for its main garment, whole vs ``garment_crop(photo, "main")``.  A hit is
  relevant when its ``articleType`` is one of the group's KAGL types (the groups'
  table, written before measuring).  Top-10 precision per group, macro and micro means.

    python benchmarks/garments.py --workdir ../scratch/garments            # vestis-mini, KAGL-val (4,103)
    python benchmarks/garments.py --model runs/vestis-mini-v7 --workdir ../scratch/garments
    python benchmarks/garments.py --parts detect,passthrough --limit 50   # quick

Prints tables and writes results/bench/garments.json (search results keyed by model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
console = Console()
IOU = 0.5
K = 10


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def truth(photo) -> tuple[dict[str, tuple], dict[str, int], np.ndarray]:
    """Ground truth of a held-out photo: {group: box}, {group: pixel count}, the group mask."""
    from vestis.data.ccp import CCP_LABELS, garment_crops
    from vestis.garments.groups import GROUPS, IGNORE_INDEX
    from vestis.garments.train import group_mask

    label_group = dict(zip(CCP_LABELS, group_mask(np.arange(len(CCP_LABELS), dtype=np.uint8))))
    boxes: dict[str, tuple] = {}
    for g in garment_crops(photo):
        gi = int(label_group[g.label])
        if gi == IGNORE_INDEX or not GROUPS[gi].is_garment:
            continue
        name, b = GROUPS[gi].name, g.box
        old = boxes.get(name)
        boxes[name] = b if old is None else (min(old[0], b[0]), min(old[1], b[1]), max(old[2], b[2]), max(old[3], b[3]))
    groups = group_mask(photo.mask)
    pixels = {GROUPS[i].name: int((groups == i).sum()) for i in range(len(GROUPS)) if GROUPS[i].is_garment}
    return boxes, pixels, groups


def main_group(boxes: dict, pixels: dict) -> str | None:
    from vestis.garments.groups import NOT_MAIN

    cands = [g for g in boxes if g not in NOT_MAIN] or list(boxes)
    return max(cands, key=lambda g: pixels[g]) if cands else None


# ------------------------------------------------------------------------------ detect


def bench_detect(photos, segmenter) -> dict:
    from vestis.garments import parse_photo
    from vestis.garments.groups import GROUP_NAMES, GROUPS, IGNORE_INDEX

    n = len(GROUP_NAMES)
    conf = np.zeros((n, n), dtype=np.int64)
    per = {g.name: {"truth": 0, "found": 0, "predicted": 0, "correct": 0} for g in GROUPS if g.is_garment}
    main = {"photos": 0, "group_right": 0, "box_iou_05": 0}
    street = 0
    t = time.perf_counter()
    for photo in photos:
        boxes, pixels, groups = truth(photo)
        parse = parse_photo(photo.image, segmenter=segmenter)
        street += parse.street
        for name, box in boxes.items():
            per[name]["truth"] += 1
            per[name]["found"] += any(g.group == name and iou(g.box, box) >= IOU for g in parse.garments)
        for g in parse.garments:
            per[g.group]["predicted"] += 1
            per[g.group]["correct"] += g.group in boxes and iou(g.box, boxes[g.group]) >= IOU
        gt_main = main_group(boxes, pixels)
        if gt_main is not None:
            main["photos"] += 1
            if parse.main is not None and parse.main.group == gt_main:
                main["group_right"] += 1
                main["box_iou_05"] += iou(parse.main.box, boxes[gt_main]) >= IOU
        seg = segmenter.segment(photo.image)
        pred = seg.labels
        if pred.shape == groups.shape:
            keep = groups != IGNORE_INDEX
            conf += np.bincount(groups[keep].astype(np.int64) * n + pred[keep], minlength=n * n).reshape(n, n)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    for name, row in per.items():
        row["recall"] = round(row["found"] / row["truth"], 4) if row["truth"] else None
        row["precision"] = round(row["correct"] / row["predicted"], 4) if row["predicted"] else None
        i = GROUP_NAMES.index(name)
        row["pixel_iou"] = round(float(inter[i] / union[i]), 4) if union[i] else None
    found, total = sum(r["found"] for r in per.values()), sum(r["truth"] for r in per.values())
    correct, predicted = sum(r["correct"] for r in per.values()), sum(r["predicted"] for r in per.values())
    return {
        "photos": len(photos),
        "taken_as_street": street,
        "recall": round(found / total, 4),
        "precision": round(correct / predicted, 4) if predicted else None,
        "macro_recall": round(float(np.mean([r["recall"] for r in per.values() if r["recall"] is not None])), 4),
        "pixel_iou": {name: round(float(inter[i] / union[i]), 4) for i, name in enumerate(GROUP_NAMES) if union[i]},
        "main": {**main, "group_accuracy": round(main["group_right"] / max(1, main["photos"]), 4),
                 "box_recall": round(main["box_iou_05"] / max(1, main["photos"]), 4)},
        "per_group": per,
        "seconds": round(time.perf_counter() - t, 1),
    }  # fmt: skip


# ------------------------------------------------------------------------------ passthrough


def kagl_sample(n: int) -> list[tuple[int, bytes, str]]:
    """``n`` KAGL products of the validation split, in a fixed order: (id, jpeg, articleType)."""
    import pyarrow.parquet as pq

    from vestis.data import kagl_parquets
    from vestis.data.split import is_validation

    rows = []
    for f in kagl_parquets():
        for r in pq.read_table(f, columns=["id", "image", "articleType"]).to_pylist():
            if r["image"] and is_validation(r["id"]):
                rows.append((r["id"], r["image"], r["articleType"]))
    rows.sort(key=lambda r: r[0])
    step = max(1, len(rows) // n)
    return rows[::step][:n]


def bench_passthrough(segmenter, n: int) -> dict:
    from vestis.garments import parse_photo

    sample = kagl_sample(n)
    unchanged, by_reason, cropped = 0, {"no_person": 0, "plain_backdrop": 0}, []
    for pid, jpeg, atype in sample:
        parse = parse_photo(jpeg, segmenter=segmenter)
        if not parse.street:
            unchanged += 1
            by_reason["plain_backdrop" if parse.plain_backdrop else "no_person"] += 1
        else:
            cropped.append({"id": pid, "articleType": atype, "person": round(parse.person, 3)})
    return {
        "kagl_photos": len(sample),
        "unchanged": unchanged,
        "unchanged_share": round(unchanged / len(sample), 4),
        "why_unchanged": by_reason,
        "cropped_examples": cropped[:20],
    }


# ------------------------------------------------------------------------------ search


def open_catalog(model: str, workdir: Path, which: str):
    import pyarrow.parquet as pq

    import vestis
    from vestis.data import kagl_parquets
    from vestis.data.catalog import read_catalog
    from vestis.data.split import select_split
    from vestis.errors import VestisError
    from vestis.index.build import build_index
    from vestis.search import Catalog

    encoder = vestis.load_encoder(model, threads=1)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{encoder.name}-{encoder.fingerprint[:12]}")
    index = workdir / f"kagl-{which}-{slug}"
    if index.exists():
        try:
            return Catalog.open(index, encoder=encoder), False
        except VestisError:
            pass
    src = workdir / f"kagl-{which}"
    if not src.exists():
        src.mkdir(parents=True)
        if which == "val":
            pq.write_table(select_split(read_catalog(kagl_parquets()[0].parent), "val"), src / "kagl-val.parquet")
        else:
            for f in kagl_parquets():
                os.symlink(f, src / f.name)
    t = time.perf_counter()
    build_index(src, index, encoder=encoder, title_column="productDisplayName", quiet=True)
    console.print(f"indexed KAGL ({which}) with {encoder.name} in {time.perf_counter() - t:.0f}s")
    return Catalog.open(index, encoder=encoder), True


def precision_at_k(catalog, image, acceptable: set[str]) -> float:
    hits = catalog.search(image=image, k=K).hits
    return sum(str(h.metadata.get("articleType")) in acceptable for h in hits) / K


def bench_search(photos, segmenter, catalog) -> dict:
    from vestis.garments import garment_crop, parse_photo
    from vestis.garments.find import GarmentCrop
    from vestis.garments.groups import group

    per: dict[str, dict[str, list]] = {}
    main_rows = {"whole": [], "cropped": []}
    found, t = 0, time.perf_counter()
    for photo in photos:
        boxes, pixels, _ = truth(photo)
        if not boxes:
            continue
        parse = parse_photo(photo.image, segmenter=segmenter)
        for name, box in boxes.items():
            ok = set(group(name).kagl_article_types)
            chosen = next((g for g in parse.garments if g.group == name), None)
            crop = GarmentCrop(photo.image.crop(chosen.box), chosen) if chosen else GarmentCrop(photo.image, None)
            found += chosen is not None
            row = per.setdefault(name, {"whole": [], "cropped": [], "truth_box": []})
            row["whole"].append(precision_at_k(catalog, photo.image, ok))
            row["cropped"].append(precision_at_k(catalog, crop.image, ok))
            row["truth_box"].append(precision_at_k(catalog, photo.image.crop(box), ok))
        gt_main = main_group(boxes, pixels)
        ok = set(group(gt_main).kagl_article_types)
        main_rows["whole"].append(precision_at_k(catalog, photo.image, ok))
        main_rows["cropped"].append(
            precision_at_k(catalog, garment_crop(photo.image, "main", segmenter=segmenter).image, ok)
        )
    queries = sum(len(r["whole"]) for r in per.values())

    def summary(rows: dict[str, list]) -> dict:
        return {k: round(float(np.mean(v)), 4) for k, v in rows.items()} | {"queries": len(next(iter(rows.values())))}

    per_group = {name: summary(rows) for name, rows in sorted(per.items())}
    variants = ("whole", "cropped", "truth_box")
    return {
        "queries": queries,
        "garment_found": found,
        "per_group": per_group,
        "macro": {v: round(float(np.mean([r[v] for r in per_group.values()])), 4) for v in variants},
        "micro": {v: round(float(np.mean([x for r in per.values() for x in r[v]])), 4) for v in variants},
        "main": summary(main_rows),
        "seconds": round(time.perf_counter() - t, 1),
    }


# ------------------------------------------------------------------------------ main


def print_detect(d: dict) -> None:
    table = Table(title=f"Box recall at IoU {IOU}, held-out CCP ({d['photos']} photos)")
    for col in ("group", "truth boxes", "recall", "precision", "pixel IoU"):
        table.add_column(col)
    for name, r in d["per_group"].items():
        table.add_row(name, str(r["truth"]), str(r["recall"]), str(r["precision"]), str(r["pixel_iou"]))
    table.add_row(
        "all", str(sum(r["truth"] for r in d["per_group"].values())), str(d["recall"]), str(d["precision"]), ""
    )
    console.print(table)
    console.print(f"main garment: group right {d['main']['group_accuracy']}, box found {d['main']['box_recall']}; "
                  f"taken as street photos: {d['taken_as_street']}/{d['photos']}")  # fmt: skip


def print_search(s: dict, model: str) -> None:
    table = Table(title=f"Photo -> KAGL search, P@{K} by garment type ({model})")
    for col in ("group", "queries", "whole photo", "garment_crop", "truth box"):
        table.add_column(col)
    for name, r in s["per_group"].items():
        table.add_row(name, str(r["queries"]), str(r["whole"]), str(r["cropped"]), str(r["truth_box"]))
    for agg in ("macro", "micro"):
        r = s[agg]
        table.add_row(agg, str(s["queries"]), str(r["whole"]), str(r["cropped"]), str(r["truth_box"]))
    m = s["main"]
    table.add_row("main garment", str(m["queries"]), str(m["whole"]), str(m["cropped"]), "")
    console.print(table)


def main() -> None:
    import torch

    from vestis.data import shared_data_dir
    from vestis.data.ccp import read_photos
    from vestis.garments import load_segmenter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vestis-mini", help="encoder for the search part")
    ap.add_argument("--segmenter", default=None, help="segmenter folder (default: the bundled one)")
    ap.add_argument("--parts", default="detect,passthrough,search")
    ap.add_argument("--catalog", choices=("all", "val"), default="val", help="KAGL products to index")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keeps the KAGL index between runs (default: a temp dir)"
    )
    ap.add_argument("--limit", type=int, default=None, help="first N held-out photos only")
    ap.add_argument("--kagl-photos", type=int, default=500, help="KAGL photos in the pass-through check")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench/garments.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    root = shared_data_dir()
    if root is None:
        raise SystemExit("the shared data folder (../shared/data or $VESTIS_DATA_DIR) is not here")
    photos = list(read_photos(root / "ccp" / "ccp.parquet", "val", pixel_only=True))[: args.limit]
    segmenter = load_segmenter(args.segmenter)
    out = REPO / args.out
    result = json.loads(out.read_text()) if out.exists() else {}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": args.threads}
    result["segmenter"] = args.segmenter or "bundled (vestis/garments/weights/garments-lite0)"
    if "detect" in parts:
        result["detect"] = bench_detect(photos, segmenter)
        print_detect(result["detect"])
    if "passthrough" in parts:
        result["passthrough"] = bench_passthrough(segmenter, args.kagl_photos)
        p = result["passthrough"]
        console.print(f"KAGL catalog photos unchanged: {p['unchanged']}/{p['kagl_photos']} ({p['why_unchanged']})")
    if "search" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            catalog, built = open_catalog(args.model, workdir, args.catalog)
            with catalog:
                s = bench_search(photos, segmenter, catalog)
                s["catalog"] = {"kagl": args.catalog, "index": str(workdir) if args.workdir else "temporary"}
            result.setdefault("search", {})[args.model] = s
            print_search(s, args.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    console.print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
