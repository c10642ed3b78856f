"""Snapshot files: atomic saves that tolerate losing the race to another reader."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from vestis.index import vectors
from vestis.index.vectors import AnnConfig, build_vector_set, load_vector_set, save_vector_set


def snapshot(n: int = 20, seed: int = 0):
    vecs = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return build_vector_set(np.arange(n), vecs / np.linalg.norm(vecs, axis=1, keepdims=True), AnnConfig())


def test_save_and_load_round_trip(tmp_path):
    vs = snapshot()
    save_vector_set(vs, tmp_path / "g1", {"generation": 1})
    loaded, meta = load_vector_set(tmp_path / "g1")
    assert meta["generation"] == 1 and np.array_equal(loaded.rows, vs.rows)
    assert np.array_equal(np.asarray(loaded.vectors), vs.vectors) and np.array_equal(loaded.live, vs.live)


def test_losing_the_race_keeps_the_winner_and_leaves_no_temporary_folder(tmp_path):
    save_vector_set(snapshot(seed=1), tmp_path / "g1", {"generation": 1, "who": "first"})
    save_vector_set(snapshot(seed=2), tmp_path / "g1", {"generation": 1, "who": "second"})
    assert load_vector_set(tmp_path / "g1")[1]["who"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g1"]


def test_a_generation_pruned_by_a_newer_reader_is_not_an_error(tmp_path, monkeypatch):
    # another reader saved g1 first (our rename fails) and a third pruned it before we looked
    def rename(src, dst):
        raise OSError(errno.ENOTEMPTY, "Directory not empty")

    monkeypatch.setattr(vectors.os, "rename", rename)
    save_vector_set(snapshot(), tmp_path / "g1", {"generation": 1})
    assert list(tmp_path.iterdir()) == []


def test_other_failures_are_raised(tmp_path, monkeypatch):
    def rename(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(vectors.os, "rename", rename)
    with pytest.raises(PermissionError):
        save_vector_set(snapshot(), tmp_path / "g1", {"generation": 1})
    assert list(tmp_path.iterdir()) == []
