"""The catalog commands as scripts use them (the contract in the README), and their errors."""

from __future__ import annotations

import json
import os
import stat

import pyarrow.parquet as pq
import pytest

from tests.test_cli import run


def last_json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(kagl_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "idx"
    proc = run("index", "build", str(kagl_small), "--out", str(out), "--model", "vestis-mini", "--id-column", "id",
               "--image-column", "image")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_search_json_contract(built, kagl_small):
    columns = set(pq.read_schema(kagl_small).names) - {"image"}
    out = last_json(run("search", str(built), "jeans", "--k", "5", "--json"))
    assert list(out) == ["results"] and len(out["results"]) == 5
    first = out["results"][0]
    assert list(first) == ["id", "score", "cosine", "rank", "metadata"] and columns <= set(first["metadata"])
    assert first["score"] == first["cosine"] and first["rank"] == 1  # Hit.to_dict, as the HTTP API reports
    assert isinstance(first["id"], int)
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    sim = last_json(run("similar", str(built), str(first["id"]), "--k", "4", "--json"))
    assert len(sim["results"]) == 4 and first["id"] not in [r["id"] for r in sim["results"]]


def test_search_options_from_the_command_line(built, tmp_path, image_files):
    out = last_json(run("search", str(built), "shoes", "--where", "masterCategory = 'Footwear'", "--k", "50",
                        "--hybrid", "0.3", "--steer", "darker", "--json"))  # fmt: skip
    assert out["results"] and all(r["metadata"]["masterCategory"] == "Footwear" for r in out["results"])
    out = last_json(run("search", str(built), "--image", image_files[0], "--k", "3", "--html", str(tmp_path / "r.html"),
                        "--json"))  # fmt: skip
    assert len(out["results"]) == 3 and "data:image/jpeg;base64," in (tmp_path / "r.html").read_text()
    table = run("search", str(built), "red dress", "--k", "3")
    assert table.returncode == 0 and "score" in table.stdout


def test_index_maintenance_commands(built, kagl_small, tmp_path):
    import shutil

    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    ids = [str(i) for i in pq.read_table(kagl_small).column("id").to_pylist()[:2]]
    out = last_json(run("index", "delete", str(copy), *ids, "--json"))
    assert sorted(out["deleted"]) == sorted(ids) and out["total_items"] == 58
    out = last_json(run("index", "add", str(copy), str(kagl_small), "--json"))
    assert out["added"] == 2 and len(out["skipped_existing"]) == 58
    out = last_json(run("index", "update", str(copy), str(kagl_small), "--json"))
    assert out["unchanged"] == 60
    info = last_json(run("index", "info", str(copy), "--facet", "season", "--json"))
    assert info["items"] == 60 and info["check"]["ok"] and info["model"] == "vestis-mini"
    assert sum(n for _, n in info["facets"]["season"]) <= 60


def test_index_settings_shows_and_changes_the_search_settings(built, kagl_small, tmp_path):
    import shutil

    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    shown = last_json(run("index", "settings", str(copy), "--json"))
    assert shown["changed"] == [] and shown["ann"]["ef_search"] == 96 and not shown["graph_rebuilt"]
    out = last_json(run("index", "settings", str(copy), "--ef-search", "300", "--ann-threshold", "20", "--json"))
    assert out["changed"] == ["threshold", "ef_search"] and out["ann"]["ef_search"] == 300
    info = last_json(run("index", "info", str(copy), "--json"))
    assert info["settings"]["ann"]["ef_search"] == 300 and info["settings"]["ann"]["threshold"] == 20
    table = run("index", "settings", str(copy), "--quantizer", "float16")
    assert table.returncode == 0, table.stderr
    assert "quantizer: float16  (was float32)" in table.stdout and "built again" in table.stdout
    hits = last_json(run("search", str(copy), "jeans", "--k", "5", "--json"))["results"]
    assert len(hits) == 5
    # index build changes only the settings it is given, keeping the others
    out = last_json(run("index", "build", str(kagl_small), "--out", str(copy), "--ef-search", "120", "--json"))
    assert out["unchanged"] == 60
    ann = last_json(run("index", "settings", str(copy), "--json"))["ann"]
    assert ann == {**shown["ann"], "threshold": 20, "quantizer": "float16", "ef_search": 120}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "{tmp}/nowhere", "jeans"], "not a vestis index"),
        (["search", "{idx}", "jeans", "--where", "colour = 'Red'"], "unknown field 'colour'"),
        (["search", "{idx}", "jeans", "--where", "baseColour = 'Red'; DROP TABLE items"], "not allowed"),
        (["search", "{idx}"], "give a text QUERY"),
        (["search", "{idx}", "jeans", "--steer", "fancier"], "unknown steering"),
        (["similar", "{idx}", "no-such-id"], "no item"),
        (["index", "build", "{tmp}/missing.parquet", "--out", "{tmp}/x"], "no such file"),
        (["index", "build", "{catalog}", "--out", "{idx}", "--model", "vestis-tiny-random"], "cannot take vectors"),
        (["index", "delete", "{idx}"], "no ids given"),
        (["index", "add", "{idx}", "{catalog}", "--workers", "2"], "only with --engine ray"),
        (["index", "update", "{idx}", "{catalog}", "--engine", "spark"], "local or ray, not 'spark'"),
        (["index", "info", "--store", "postgresql://nobody@/nodb?host=/nonexistent&pool_size=0"], "pool_size '0'"),
        (["index", "settings", "{idx}", "--quantizer", "float64"], "quantizer 'float64': use float32, float16, int8"),
        (["index", "settings", "{idx}", "--ef-search", "0"], "--ef-search"),
        (["index", "build", "{catalog}", "--out", "{tmp}/x", "--ef-search", "5000"], "--ef-search"),
        (["index", "settings", "{tmp}/nowhere"], "not a vestis index"),
    ],
)
def test_errors_are_one_line(built, kagl_small, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, idx=built, catalog=kagl_small) for a in args]
    proc = run(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_pages_for_people_get_the_usual_file_mode(built, tmp_path):
    page = tmp_path / "page.html"
    last_json(run("search", str(built), "jeans", "--k", "3", "--html", str(page), "--json"))
    mode = stat.S_IMODE(page.stat().st_mode)
    assert mode == 0o666 & ~_umask() and mode & 0o044  # group and others may read it (not mkstemp's 0600)


def test_long_work_piped_prints_progress_lines_and_quiet_silences_them(kagl_small, tmp_path):
    env = {**os.environ, "VESTIS_PROGRESS_SECONDS": "0"}  # a line at every step instead of every 5 s
    proc = run("index", "build", str(kagl_small), "--out", str(tmp_path / "a"), "--batch-size", "16", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("indexing kagl-60.parquet: ")]
    assert len(lines) >= 3 and "items/s" in lines[0] and lines[-1].endswith(" s")
    assert "16/60" in lines[0] and "60/60 in" in lines[-1]
    quiet = run("index", "build", str(kagl_small), "--out", str(tmp_path / "b"), "--batch-size", "16", "-q", env=env)
    assert quiet.returncode == 0 and "indexing" not in quiet.stderr and "items/s" not in quiet.stderr
