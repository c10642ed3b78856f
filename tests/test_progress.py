"""Progress on a pipe: a line every few seconds naming what is counted."""

from __future__ import annotations

from vestis.progress import progress_bar


def lines_of(capsys, **kwargs) -> list[str]:
    with progress_bar(4, "epoch 1/2", **kwargs) as advance:
        for _ in range(4):
            advance(1)
    return capsys.readouterr().err.splitlines()


def test_lines_name_the_unit_counted(capsys, monkeypatch):
    monkeypatch.setenv("VESTIS_PROGRESS_SECONDS", "0")  # a line at every step
    steps = lines_of(capsys, unit="steps")
    assert len(steps) == 4 and all("steps/s" in line for line in steps[:-1])
    assert steps[0].startswith("epoch 1/2: 1/4 (25%)") and steps[-1].startswith("epoch 1/2: 4/4 in ")
    assert "items/s" in lines_of(capsys)[0]  # the default unit
    assert lines_of(capsys, quiet=True) == []
