"""Feedback that steers: Rocchio recommend and score modifiers (boost), from the library and the
installed CLI, on real demo products indexed with vestis-mini."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vestis.errors import InputError
from vestis.recommend import RocchioWeights, boost_values, parse_boost, rocchio, value_range
from vestis.search import Catalog

VESTIS = Path(sys.executable).with_name("vestis")


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------ pure functions


def test_rocchio_moves_towards_likes_and_away_from_dislikes():
    rng = np.random.default_rng(0)
    q, liked, disliked = unit(rng.normal(size=16)), rng.normal(size=(2, 16)), rng.normal(size=(1, 16))
    moved = rocchio(q, liked, disliked)
    assert abs(np.linalg.norm(moved) - 1) < 1e-6
    centroid_like, centroid_dislike = unit(liked.mean(0)), unit(disliked[0])
    assert moved @ centroid_like > q @ centroid_like
    assert moved @ centroid_dislike < q @ centroid_dislike
    # the documented formula, exactly
    w = RocchioWeights(query=0.5, like=2.0, dislike=1.0)
    expected = unit(0.5 * q + 2.0 * liked.mean(0) - 1.0 * disliked.mean(0))
    np.testing.assert_allclose(rocchio(q, liked, disliked, w), expected, atol=1e-6)
    # zero feedback weights leave the query as it was; no query: the liked centroid
    np.testing.assert_allclose(rocchio(q, liked, disliked, RocchioWeights(like=0, dislike=0)), q, atol=1e-6)
    np.testing.assert_allclose(rocchio(None, liked, np.empty((0, 16))), centroid_like, atol=1e-6)
    with pytest.raises(InputError, match="dislikes alone"):
        rocchio(None, np.empty((0, 16)), disliked)
    with pytest.raises(InputError, match="Rocchio weight 'like'"):
        RocchioWeights(like=-1)


def test_boost_parsing_and_values():
    assert parse_boost("rating:0.1") == {"rating": 0.1}
    assert parse_boost(["rating:0.1", "price:-2e-1"]) == {"rating": 0.1, "price": -0.2}
    assert parse_boost({"rating": 1}) == {"rating": 1.0}
    for bad in ("rating", "rating:x", ":0.1"):
        with pytest.raises(InputError, match="FIELD:WEIGHT"):
            parse_boost(bad)
    with pytest.raises(InputError, match="finite"):
        parse_boost({"rating": float("nan")})
    with pytest.raises(InputError, match="between -10 and 10"):
        parse_boost({"rating": 11})
    assert value_range([3, None, float("nan"), "7", True, 1.5]) == (1.5, 3.0)
    ranges = {"rating": (1.0, 5.0)}
    assert boost_values({"rating": 3.0}, {"rating": 0.4}, ranges) == pytest.approx(0.2)
    assert boost_values({"rating": float("nan")}, {"rating": 0.4}, ranges) == 0
    assert boost_values({}, {"rating": 0.4}, ranges) == 0
    assert boost_values({"rating": None}, {"rating": 0.4}, ranges) == 0


# ----------------------------------------------------------------------------- library


def kinds(results) -> list[str]:
    return [h.metadata["articleType"] for h in results.hits]


def first_of(rows, kind):
    return next(r for r in rows if r["articleType"] == kind)


def test_recommend_from_likes_finds_their_kind_and_never_returns_the_examples(rated_index):
    directory, rows = rated_index
    heel, jeans = first_of(rows, "Heels"), first_of(rows, "Jeans")
    with Catalog.open(directory) as cat:
        res = cat.recommend([heel["id"]], [jeans["id"]], k=5)
        ids = [h.id for h in res.hits]
        assert heel["id"] not in ids and jeans["id"] not in ids
        assert Counter(kinds(res))["Heels"] >= 2, kinds(res)
        assert res.query["like"] == [heel["id"]] and res.query["dislike"] == [jeans["id"]]
        assert res.query["rocchio"] == {"query": 1.0, "like": 0.75, "dislike": 0.25}
        # everything but the examples is ranked: asking for all returns the catalog less 2
        everything = cat.recommend([heel["id"]], [jeans["id"]], k=1000)
        assert len(everything.hits) == len(rows) - 2


def test_feedback_moves_a_text_query(rated_index):
    directory, rows = rated_index
    with Catalog.open(directory) as cat:
        plain = cat.search("shoes", k=len(rows))
        liked = next(h for h in plain.hits if h.metadata["articleType"] == "Heels")
        disliked = next(h for h in plain.hits if h.metadata["articleType"] == "Casual Shoes")
        moved = cat.recommend([liked.id], [disliked.id], "shoes", k=len(rows))
        examples = {liked.id, disliked.id}

        def ranks(results, kind):  # 1-based places of ``kind`` among the results other than the examples
            rest = [h for h in results.hits if h.id not in examples]
            return [n for n, h in enumerate(rest, 1) if h.metadata["articleType"] == kind]

        assert sum(ranks(moved, "Heels")) < sum(ranks(plain, "Heels"))
        assert sum(ranks(moved, "Casual Shoes")) > sum(ranks(plain, "Casual Shoes"))
        assert moved.query["terms"] == [{"text": "shoes", "weight": 1.0}]
        # the query vector is the documented Rocchio sum of the parts
        q, _ = cat.query_vector("shoes", like=[liked.id], dislike=[disliked.id])
        text = cat.encoder.encode_texts(["shoes"])[0]
        got = cat.store.get([str(liked.id), str(disliked.id)], vectors=True)
        expected = unit(text + 0.75 * got[str(liked.id)].vector - 0.25 * got[str(disliked.id)].vector)
        np.testing.assert_allclose(q, expected, atol=1e-5)


def test_recommend_with_filter_and_steering(rated_index):
    directory, rows = rated_index
    tee = first_of(rows, "Tshirts")
    with Catalog.open(directory) as cat:
        colour = tee["baseColour"]
        res = cat.recommend([tee["id"]], where=f"baseColour != '{colour}'", steer=["darker"], k=10)
        assert res.hits and all(h.metadata["baseColour"] != colour for h in res.hits)
        assert res.query["steer"] == ["light->dark"] and res.query["filter"]
        plain = cat.recommend([tee["id"]], where=f"baseColour != '{colour}'", k=10)
        assert [h.id for h in res.hits] != [h.id for h in plain.hits]


def test_recommend_errors_name_the_problem(rated_index):
    directory, rows = rated_index
    with Catalog.open(directory) as cat:
        with pytest.raises(InputError, match="no item 'nope'"):
            cat.recommend(["nope"])
        with pytest.raises(InputError, match="dislikes alone"):
            cat.recommend([], [rows[0]["id"]])
        with pytest.raises(InputError, match="both liked and disliked"):
            cat.recommend([rows[0]["id"]], [rows[0]["id"]])


def test_boost_adds_the_scaled_field_and_missing_or_nan_counts_zero(rated_index):
    directory, rows = rated_index
    ratings = [r["rating"] for r in rows if r["rating"] is not None and not math.isnan(r["rating"])]
    lo, hi = min(ratings), max(ratings)
    assert any(r["rating"] is None for r in rows) and any(r["rating"] is not None and math.isnan(r["rating"])
                                                          for r in rows)  # fmt: skip
    with Catalog.open(directory) as cat:
        plain = cat.search("shoes", k=len(rows))
        boosted = cat.search("shoes", k=len(rows), boost={"rating": 0.5})
        assert boosted.query["score"] == "cosine + boost" and boosted.query["boost"] == {"rating": 0.5}
        by_id = {h.id: h for h in plain.hits}
        for h in boosted.hits:
            r = h.metadata.get("rating")
            expected = 0.0 if r is None else 0.5 * (r - lo) / (hi - lo)
            assert h.score - h.cosine == pytest.approx(expected, abs=1e-6)
            assert h.cosine == pytest.approx(by_id[h.id].score, abs=1e-6)
        scores = [h.score for h in boosted.hits]
        assert scores == sorted(scores, reverse=True)
        # a heavy boost puts the best-rated item first; a heavy negative one the unrated and worst ones
        top = cat.search("shoes", k=1, boost="rating:10").hits[0]
        assert top.metadata["rating"] == hi
        bottom = cat.search("shoes", k=3, boost="rating:-10").hits
        assert all(h.metadata.get("rating") in (None, lo) for h in bottom[:1])
        with pytest.raises(InputError, match="no such field"):
            cat.search("shoes", boost={"price": 0.1})
        with pytest.raises(InputError, match="holds no numbers"):
            cat.search("shoes", boost={"baseColour": 0.1})
        with pytest.raises(InputError, match="without hybrid"):
            cat.search("shoes", boost={"rating": 0.1}, hybrid=0.5)


# --------------------------------------------------------------------------------- CLI


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VESTIS), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_recommend_matches_the_library(rated_index):
    directory, rows = rated_index
    heel, jeans = first_of(rows, "Heels"), first_of(rows, "Jeans")
    proc = run("recommend", directory, "--like", heel["id"], "--dislike", jeans["id"], "--boost", "rating:0.1",
               "--where", "masterCategory = 'Footwear'", "-k", "5", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    with Catalog.open(directory) as cat:
        lib = cat.recommend([heel["id"]], [jeans["id"]], boost="rating:0.1", where="masterCategory = 'Footwear'", k=5)
    assert [h["id"] for h in got] == [h.id for h in lib.hits]
    assert all(h["metadata"]["masterCategory"] == "Footwear" for h in got)
    assert heel["id"] not in [h["id"] for h in got]
    # with a query and weights, and the table output
    proc = run("recommend", directory, "shoes", "--like", heel["id"], "--like-weight", "2", "-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert "recommend 'shoes'; like" in proc.stdout
    # search takes --boost too
    proc = run("search", directory, "shoes", "--boost", "rating:10", "-k", "1", "--json")
    top = json.loads(proc.stdout.strip().splitlines()[-1])["results"][0]
    assert top["metadata"]["rating"] == max(r["rating"] for r in rows if r["rating"] == r["rating"] and r["rating"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dislike", "15970"], "at least one --like"),
        (["--like", "nope"], "no item 'nope'"),
        (["--like", "{first}", "--boost", "rating"], "FIELD:WEIGHT"),
        (["--like", "{first}", "--boost", "colour:0.1"], "no such field"),
    ],
)
def test_cli_recommend_errors_are_one_line(rated_index, args, message):
    directory, rows = rated_index
    args = [a.format(first=rows[0]["id"]) for a in args]
    proc = run("recommend", directory, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
