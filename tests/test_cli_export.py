"""``vestis export onnx``: a round trip on a tiny FashionCLIP-format checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vestis
from tests.models.test_hf_clip import write_hf_clip
from tests.test_cli import run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    source = tmp_path_factory.mktemp("fashion-clip-tiny")
    write_hf_clip(source, seed=11)
    out = tmp_path_factory.mktemp("export") / "fashion-clip-tiny-onnx"
    proc = run(
        "export", "onnx", str(source), "--out", str(out), "--int8", "--json", "--quiet",
        "--parity-images", "16", "--parity-texts", "16", "--calibration-images", "8", "--threads", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return source, out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_report_and_files(exported):
    _, out, report = exported
    rows = report["rows"]
    assert {"torch fp32 (reference)", "onnx fp32", "onnx int8"} <= set(rows)
    fp32 = rows["onnx fp32"]
    assert fp32["passed"] and fp32["image_cos_min"] > 0.9999 and fp32["top1_agreement"] == 1.0
    assert fp32["n_images"] == 16
    saved = json.loads((out / "parity.json").read_text())
    assert saved["rows"].keys() == rows.keys()
    meta = json.loads((out / "onnx" / "vestis_onnx.json").read_text())
    assert meta["parity"]["onnx fp32"]["passed"] is True
    assert (out / "onnx" / "vision_model.onnx").is_file() and (out / "onnx" / "text_model.onnx").is_file()
    assert (out / "tokenizer.json").is_file() or (out / "vocab.json").is_file()


def test_table_output(exported, tmp_path):
    source, _, _ = exported
    proc = run(
        "export", "onnx", str(source), "--out", str(tmp_path / "again"), "--quiet", "--no-bf16",
        "--parity-images", "8", "--parity-texts", "8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "onnx fp32" in proc.stdout and "pass" in proc.stdout and "parity.json" in proc.stdout


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_dynamic_batch_gives_the_same_embeddings(exported, precision, sample_images, sample_texts):
    _, out, report = exported
    if precision == "int8" and not report["rows"]["onnx int8"]["written"]:
        pytest.skip("no int8 graph passed parity on these random weights")
    enc = vestis.load_encoder(out, runtime="onnx", precision=precision)
    assert enc.precision == precision
    for batch in (1, 3):
        img = enc.encode_images(sample_images[:7], batch_size=batch)
        txt = enc.encode_texts(sample_texts[:7], batch_size=batch)
        if batch == 1:
            img1, txt1 = img, txt
    # int8 quantises activations per batch, so batches may differ a little; fp32 not at all.
    limit = 1e-5 if precision == "fp32" else 2e-2
    assert np.abs(img - img1).max() < limit and np.abs(txt - txt1).max() < limit


def test_onnx_fp32_matches_the_torch_model(exported, sample_images, sample_texts):
    source, out, _ = exported
    torch_enc = vestis.load_encoder(source)
    onnx_enc = vestis.load_encoder(out, runtime="onnx", precision="fp32")
    assert np.abs(onnx_enc.encode_images(sample_images) - torch_enc.encode_images(sample_images)).max() < 1e-4
    assert np.abs(onnx_enc.encode_texts(sample_texts) - torch_enc.encode_texts(sample_texts)).max() < 1e-4


def test_default_precision_of_the_export_follows_its_parity(exported):
    _, out, report = exported
    int8 = report["rows"]["onnx int8"]
    expected = "int8" if int8.get("written") and int8["passed"] else "fp32"
    assert vestis.load_encoder(out).precision == expected


def test_errors_are_one_line(exported, tmp_path):
    _, out, _ = exported
    for args, words in [
        (("export", "onnx", "nope", "--out", str(tmp_path / "x")), "unknown model 'nope'"),
        (("export", "onnx", str(out), "--out", str(tmp_path / "y")), "cannot run on runtime 'torch'"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_a_checkpoint_with_a_verified_int8_export_beside_it_runs_that(exported, tmp_path):
    """A torch checkpoint whose onnx/ folder holds a vestis int8 export that passed parity runs it."""
    import shutil

    source, out, _ = exported
    both = tmp_path / "both"
    shutil.copytree(source, both)
    shutil.copytree(out / "onnx", both / "onnx")
    meta_path = both / "onnx" / "vestis_onnx.json"
    meta = json.loads(meta_path.read_text())
    if "int8" not in meta["graphs"]:  # the tiny model's int8 failed its coin-flip parity: keep fp32 graphs as int8
        meta["graphs"]["int8"] = meta["graphs"]["fp32"]

    def load_with(passed: bool, **kwargs):
        meta.setdefault("parity", {})["onnx int8"] = {**meta["parity"].get("onnx int8", {}), "passed": passed}
        meta_path.write_text(json.dumps(meta))
        return vestis.load_encoder(both, **kwargs)

    enc = load_with(True)
    assert enc.runtime.startswith("onnxruntime int8") and enc.precision == "int8"
    assert "torch" in load_with(False).runtime  # not verified: the published runtime
    assert "torch" in load_with(True, precision="fp32").runtime  # asked for: as asked
    assert "torch" in load_with(True, runtime="torch").runtime
