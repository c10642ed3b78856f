"""Did a re-run reproduce a training run?  Compare two runs' logs and weights.

The model card's reproduction claims come from here: every epoch's logged figures
(loss, first and last batch loss, temperature, validation metrics; wall time aside)
compared for equality, and the final weights compared tensor by tensor.

    python scripts/compare_runs.py runs/vestis-mini-label-aware runs/vestis-mini-v6-repro
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vestis.errors import InputError

TIMING_KEYS = frozenset({"seconds"})  # wall time differs run to run and says nothing of the result


def read_log(run: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``log.jsonl`` (or of that file itself)."""
    path = Path(run)
    path = path / "log.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"{path}: no training log here")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}:{n}: not a JSON line") from None
    return records


def compare_logs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch both logs have: equal or not, and the figures that differ."""
    rows = []
    for x, y in zip(a, b):
        keys = (set(x) | set(y)) - TIMING_KEYS
        differ = {k: (x.get(k), y.get(k)) for k in sorted(keys) if x.get(k) != y.get(k)}
        rows.append({"epoch": x.get("epoch", len(rows) + 1), "equal": not differ, "differ": differ})
    return rows


def compare_weights(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Two safetensors files: tensors in one only, and the largest |difference| of the shared ones."""
    from safetensors.torch import load_file

    for path in (a, b):
        if not Path(path).is_file():
            raise InputError(f"{path}: no weights file here")
    wa, wb = load_file(str(a)), load_file(str(b))
    shared = sorted(set(wa) & set(wb))
    max_diff, differing = 0.0, []
    for name in shared:
        if wa[name].shape != wb[name].shape:
            differing.append(name)
            max_diff = float("inf")
            continue
        diff = float((wa[name].double() - wb[name].double()).abs().max()) if wa[name].numel() else 0.0
        if diff > 0:
            differing.append(name)
        max_diff = max(max_diff, diff)
    only = sorted(set(wa) ^ set(wb))
    return {"tensors": len(shared), "only_in_one": only, "differing": differing,
            "max_abs_diff": max_diff, "identical": not only and not differing}  # fmt: skip
