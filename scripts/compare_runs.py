"""Compare a training re-run with the original: per-epoch log figures and final weights.

    python scripts/compare_runs.py runs/vestis-mini-label-aware runs/vestis-mini-v6-repro
    python scripts/compare_runs.py runs/vestis-mini-label-aware runs/vestis-mini-v6-repro \\
        --weights vestis/models/weights/vestis-mini/model.safetensors

Prints a table (epoch, equal, what differs) and, when both runs have final weights
(``RUN/model/model.safetensors``, or ``--weights`` for the first run's), whether they
are bitwise identical.  Exit status 0 when everything compared is equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    from vestis.errors import VestisError
    from vestis.train.reproduce import compare_logs, compare_weights, read_log

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("original", help="the original run folder (or its log.jsonl)")
    ap.add_argument("rerun", help="the re-run's folder (or its log.jsonl)")
    ap.add_argument("--weights", help="the original's weights file, if not ORIGINAL/model/model.safetensors")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    try:
        a, b = read_log(args.original), read_log(args.rerun)
        rows = compare_logs(a, b)
        wa = Path(args.weights) if args.weights else Path(args.original) / "model" / "model.safetensors"
        wb = Path(args.rerun) / "model" / "model.safetensors"
        weights = compare_weights(wa, wb) if wa.is_file() and wb.is_file() else None
    except VestisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok = all(r["equal"] for r in rows) and (weights is None or weights["identical"])
    if args.json:
        print(json.dumps({"epochs": rows, "original_epochs": len(a), "rerun_epochs": len(b),
                          "weights": weights, "equal": ok}))  # fmt: skip
        return 0 if ok else 1
    print(f"{'epoch':>5}  equal  differs")
    for r in rows:
        differs = ", ".join(f"{k}: {x} vs {y}" for k, (x, y) in r["differ"].items())
        print(f"{r['epoch']:>5}  {'yes' if r['equal'] else 'NO':5}  {differs}")
    print(f"compared {len(rows)} epochs (original has {len(a)}, re-run {len(b)})")
    if weights is None:
        print("weights: not compared (a run has no final model yet)")
    else:
        print(f"weights: {weights['tensors']} tensors, "
              f"{'bitwise identical' if weights['identical'] else 'DIFFERENT'}, "
              f"max |diff| {weights['max_abs_diff']:g}, only in one: {weights['only_in_one'] or 'none'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
