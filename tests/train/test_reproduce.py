"""Comparing a training re-run with the original (the model card's reproduction claims)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from vestis.errors import InputError
from vestis.train.reproduce import compare_logs, compare_weights, read_log


def _write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_logs_equal_except_wall_time_and_the_figure_that_differs_is_named(tmp_path):
    a = [{"epoch": 1, "loss": 3.30283, "seconds": 290.0}, {"epoch": 2, "loss": 2.5, "val_f1": 0.41, "seconds": 231.0}]
    b = [{"epoch": 1, "loss": 3.30283, "seconds": 483.0}, {"epoch": 2, "loss": 2.5, "val_f1": 0.42, "seconds": 230.0}]
    (tmp_path / "run").mkdir()
    _write_log(tmp_path / "run" / "log.jsonl", a)
    rows = compare_logs(read_log(tmp_path / "run"), read_log(_write_log(tmp_path / "b.jsonl", b)))
    assert rows[0] == {"epoch": 1, "equal": True, "differ": {}}
    assert rows[1]["equal"] is False and rows[1]["differ"] == {"val_f1": (0.41, 0.42)}
    # a figure logged by one run only is a difference too
    assert compare_logs([{"epoch": 1}], [{"epoch": 1, "loss": 1.0}])[0]["differ"] == {"loss": (None, 1.0)}


def test_weights_bitwise_or_not(tmp_path):
    w = {"a": torch.randn(3, 4), "b": torch.zeros(2)}
    save_file(w, str(tmp_path / "x.safetensors"))
    save_file({k: v.clone() for k, v in w.items()}, str(tmp_path / "y.safetensors"))
    same = compare_weights(tmp_path / "x.safetensors", tmp_path / "y.safetensors")
    assert same["identical"] and same["tensors"] == 2 and same["max_abs_diff"] == 0.0

    nudged = {"a": w["a"].clone(), "b": w["b"] + 1e-7, "c": torch.ones(1)}
    save_file(nudged, str(tmp_path / "z.safetensors"))
    diff = compare_weights(tmp_path / "x.safetensors", tmp_path / "z.safetensors")
    assert not diff["identical"] and diff["differing"] == ["b"] and diff["only_in_one"] == ["c"]
    assert diff["max_abs_diff"] == pytest.approx(1e-7, rel=1e-3)


def test_missing_or_malformed_inputs_are_named(tmp_path):
    with pytest.raises(InputError, match="no training log"):
        read_log(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(InputError, match=r"log.jsonl:2: not a JSON line"):
        read_log(tmp_path)
    with pytest.raises(InputError, match="no weights file"):
        compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
