"""What the commands print: results on stdout (a table, or one JSON object with ``--json``),
everything else (progress, notes, errors) on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True, soft_wrap=True)
#: Piped output is not cut to 80 columns (the parity table is ~120 wide).
wide = Console(width=None if sys.stdout.isatty() else 160)


def _jsonable(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else str(value)


def print_json(data: Any) -> None:
    """One JSON object on one line of stdout (the contract scripts rely on); typed results via ``to_dict()``."""
    print(json.dumps(data, default=_jsonable))


def metrics_table(title: str, result: dict, keys: list[str]) -> Table:
    """Two columns, metric and value, for the keys of ``result`` that are set."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        value = result.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def note(line: str) -> None:
    """A line for the person at the terminal (stderr; never mixed into results)."""
    err.print(line, highlight=False)
