"""The CLI: JSON output, models listing, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import vestis


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vestis", *args], capture_output=True, text=True, timeout=300, env=env)


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
    assert html.count("<section>") == 9 and "data:image/jpeg;base64," in html
    again = run("demo", "--quiet", "--out", str(tmp_path))  # the index is reused, nothing re-embedded
    assert again.returncode == 0 and "0 new" in again.stdout
