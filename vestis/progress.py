"""Progress of long work: a rich bar on a terminal, a plain line every few seconds otherwise.

Piped or in CI (stderr is not a terminal) a bar would be noise and silence looks like
a hang, so a line such as ``embedding images: 1,536/5,000 (31%), 210 items/s, ~16 s left``
goes to stderr every ``VESTIS_PROGRESS_SECONDS`` seconds (default 5), and a last
line says how long the whole took.  ``quiet=True`` (``--quiet``) silences both.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Callable, Iterator

DEFAULT_INTERVAL_S = 5.0
#: Whether a progress display is already running here: work nested in it (one batch's
#: embedding inside a whole index build) reports through the outer one only.
_active: contextvars.ContextVar[bool] = contextvars.ContextVar("vestis_progress_active", default=False)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("VESTIS_PROGRESS_SECONDS", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


@contextlib.contextmanager
def progress_bar(
    total: int, description: str, *, quiet: bool = False, unit: str = "items"
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a bar on a terminal, periodic lines on a pipe, nothing when quiet or nested.
    ``unit`` names what is counted in the rate ("items/s", "steps/s")."""
    if quiet or _active.get():
        yield lambda n: None
        return
    token = _active.set(True)
    try:
        display = _progress_lines(total, description, _interval(), unit) if not sys.stderr.isatty() else None
        with display or _progress_bar(total, description, unit) as advance:
            yield advance
    finally:
        _active.reset(token)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


@contextlib.contextmanager
def _progress_lines(
    total: int, description: str, interval: float, unit: str = "items"
) -> Iterator[Callable[[int], None]]:
    start = time.monotonic()
    state = {"done": 0, "last": start, "printed": False}

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        state["printed"] = True

    def advance(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] < interval or state["done"] >= total:
            return
        state["last"] = now
        done, elapsed = state["done"], now - start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", ~{_seconds((total - done) / rate)} left" if rate > 0 else ""
        say(f"{description}: {done:,}/{total:,} ({done / max(total, 1):.0%}), {rate:,.0f} {unit}/s{left}")

    yield advance
    if state["printed"]:
        say(f"{description}: {state['done']:,}/{total:,} in {_seconds(time.monotonic() - start)}")


@contextlib.contextmanager
def _progress_bar(total: int, description: str, unit: str = "items") -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            if speed:
                progress.update(task, rate=f"{speed:,.0f} {unit}/s")

        yield advance
