"""The CLI as a user meets it: the installed ``vestis`` entry point run in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import vestis

#: The console script pip installed (pyproject's ``vestis = "vestis.cli:main"``), not ``python -m``.
VESTIS = Path(sys.executable).with_name("vestis")


def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VESTIS), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"vestis {vestis.__version__}"


def test_embed_json_matches_library(image_files):
    proc = run("embed", "--text", "red summer dress", "--image", image_files[0], "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    enc = vestis.load_encoder()
    assert out["model"] == vestis.default_model() == enc.name and out["dim"] == enc.dim
    assert [d["type"] for d in out["data"]] == ["text", "image"]
    text = np.asarray(out["data"][0]["embedding"])
    image = np.asarray(out["data"][1]["embedding"])
    assert np.abs(text - enc.encode_texts(["red summer dress"])[0]).max() < 1e-5
    assert np.abs(image - enc.encode_images([image_files[0]])[0]).max() < 1e-5


def test_embed_table_output():
    proc = run("embed", "--text", "jeans")
    assert proc.returncode == 0 and "jeans" in proc.stdout and "1.0000" in proc.stdout


def test_models_lists_registry_and_presence(tmp_path):
    proc = run("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["models"]}
    assert {"fashion-clip", "marqo-fashionclip", "chinese-clip-vit-b16", "fashion-clip-onnx"} <= set(rows)
    assert rows["vestis-tiny-random"]["present"] and rows[vestis.default_model()]["default"]
    assert rows["fashion-clip"]["hub_id"] == "patrickjohncyh/fashion-clip"


def test_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    for args, words in [
        (("embed", "--model", "nope", "--text", "x"), "unknown model 'nope'"),
        (("embed", "--image", str(bad)), "not a readable image"),
        (("embed", "--text", ""), "text 0: empty"),
        (("embed",), "nothing to embed"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and words in proc.stderr.replace("\n", " ")
    debug = run("--debug", "embed", "--model", "nope", "--text", "x")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_demo_builds_searches_and_writes_a_page(tmp_path):
    proc = run("demo", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "zero-shot tags for" in proc.stdout and "more like item" in proc.stdout
    html = (tmp_path / "results.html").read_text()
    assert (tmp_path / "results.html").stat().st_mode & 0o044  # readable by the user's browser, not 0600
    assert html.count("<section>") == 13 and "data:image/jpeg;base64," in html
    # the street photo is searched whole and by the garment found in it (a held-out CCP photo of a dress)
    assert "street photo ccp-street-129.jpg, whole" in proc.stdout
    assert "street photo ccp-street-129.jpg, by its dress at" in proc.stdout
    # one Chinese query with the bilingual sibling model
    assert "Chinese text (vestis-mini-zh): '男士运动鞋'" in proc.stdout
    again = run("demo", "--json", "--out", str(tmp_path))  # the indexes are reused, nothing re-embedded
    assert again.returncode == 0 and "0 new" in again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["chinese"]["男士运动鞋"][:3].count("Sports Shoes") >= 2, summary["chinese"]
    assert "Dresses" in summary["chinese"]["红色连衣裙"][:3], summary["chinese"]


# ------------------------------------------------------------------ usage errors and help


def _commands():
    """Every leaf command of the app as (path, click command)."""
    import typer

    from vestis.cli import app

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    return list(walk(typer.main.get_command(app), ()))


def test_usage_errors_print_clicks_usage_naming_the_flag(tmp_path):
    for args, words in [
        (("search", "--bogus"), "No such option: --bogus"),
        (("search",), "Invalid value for 'INDEX': missing"),  # INDEX may be left out for --store / VESTIS_STORE
        (("serch", str(tmp_path), "jeans"), "No such command 'serch'"),
        (("search", str(tmp_path), "jeans", "--hybrid", "1.5"), "Invalid value for '--hybrid'"),
        (("index", "build", "x.parquet", "--out", str(tmp_path), "--weights", "0.9"), "Invalid value for --weights"),
    ]:
        proc = run(*args, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        text = " ".join(proc.stderr.replace("│", " ").split())  # the error panel wraps at the terminal's width
        assert "Usage: vestis" in text and words in text, (args, proc.stderr)
        assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr


def test_dash_h_is_help():
    for args in (("-h",), ("search", "-h"), ("index", "build", "-h"), ("export", "onnx", "-h")):
        proc = run(*args, timeout=60)
        assert proc.returncode == 0 and "Usage: vestis" in proc.stdout and "--help" in proc.stdout, args


def test_every_option_and_argument_has_help():
    missing = [
        f"vestis {' '.join(path)} {param.opts[0]}"
        for path, cmd in _commands()
        for param in cmd.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, missing


def test_every_command_that_prints_results_takes_json():
    no_results = {("serve",)}  # runs a server; prints no result
    lacking = [" ".join(path) for path, cmd in _commands() if path not in no_results and not any(
        "--json" in p.opts for p in cmd.params)]  # fmt: skip
    assert not lacking, lacking


def test_model_option_is_one_definition():
    helps = {
        p.help for _, cmd in _commands() for p in cmd.params if "--model" in p.opts and cmd.name != "serve"
    }  # serve's --model says what it serves (the catalog's model by default)
    assert len(helps) == 1, helps


def test_classify_missing_file_prints_no_empty_table(tmp_path):
    proc = run("classify", str(tmp_path / "nope.jpg"), "--labels", "a,b")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.strip() == "" and "┏" not in proc.stdout
    assert "nope.jpg" in proc.stderr and "none of the images could be read" in proc.stderr


def test_a_bad_image_is_named_by_its_file_not_a_buffer(tmp_path, image_files):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "good.jpg").write_bytes(Path(image_files[0]).read_bytes())
    proc = run("index", "build", str(folder), "--out", str(tmp_path / "idx"), "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    (bad,) = report["unreadable_images"] + report["not_indexed"]
    assert "broken.jpg" in bad["id"] and "BytesIO" not in bad["reason"] and "not a readable image" in bad["reason"]
    proc = run("classify", str(folder / "broken.jpg"), "--labels", "a,b")
    assert "broken.jpg" in proc.stderr and "BytesIO" not in proc.stderr
