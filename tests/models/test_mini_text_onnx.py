"""vestis-mini's text tower on onnxruntime: same embeddings as torch, picked only while its record holds,
and a text query that never imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import vestis
from tests.test_cli import run
from vestis.models.mini_text_onnx import RECORD_FILE, TEXT_ONNX_DIR, MiniTextOnnxEncoder, SentenceTokenizer
from vestis.models.registry import BUNDLED_DIR
from vestis.models.vestis_mini import MiniConfig, MiniModel, VestisMiniEncoder, sentence_tokenizer, text_model_dir

BUNDLED = BUNDLED_DIR / "vestis-mini"


@pytest.fixture(scope="module")
def tiny_mini(tmp_path_factory):
    """A small random-weight vestis-mini (real frozen MiniLM, random head) with its text tower exported."""
    import torch

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("mini") / "tiny-mini"
    MiniModel(MiniConfig(embed_dim=32, widths=(8, 16, 16, 32), text_hidden=64)).save(folder)
    before = vestis.load_encoder(folder)
    proc = run("export", "text-tower", str(folder), "--parity-images", "8", "--parity-texts", "24", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    return folder, before, json.loads(proc.stdout.strip().splitlines()[-1])


def test_tokenizer_without_transformers_gives_the_same_ids(sample_texts):
    reference = sentence_tokenizer(128)
    mine = SentenceTokenizer(text_model_dir() / "tokenizer.json", 128)
    texts = [*sample_texts, "Ünïcödé café — 😀 naïve", "x" * 2000, "a"]
    ids, mask = reference(texts)
    got = mine(texts, padding="longest", truncation=True, max_length=128, return_tensors="np")
    assert np.array_equal(got["input_ids"], ids) and np.array_equal(got["attention_mask"], mask)
    assert mine(texts, truncation=True, max_length=128)["input_ids"] == reference._token_lists(texts)


def test_export_writes_a_small_graph_and_a_passing_record(tiny_mini):
    folder, before, report = tiny_mini
    assert isinstance(before, VestisMiniEncoder)  # no export yet: torch
    graph = folder / TEXT_ONNX_DIR / "text_model.onnx"
    assert graph.stat().st_size < 2 * 2**20  # the MiniLM weights stay in the package
    assert report["parity"]["passed"] and report["parity"]["text_cos_min"] > 0.9999
    assert report["external"]["tensors"] == 101
    enc = vestis.load_encoder(folder)
    assert isinstance(enc, MiniTextOnnxEncoder) and enc.fingerprint != before.fingerprint


def test_onnx_text_and_torch_images_match_the_torch_model(tiny_mini, sample_texts, sample_images):
    folder, before, _ = tiny_mini
    enc = vestis.load_encoder(folder)
    assert np.abs(enc.encode_texts(sample_texts) - before.encode_texts(sample_texts)).max() < 1e-5
    assert np.abs(enc.encode_images(sample_images[:6]) - before.encode_images(sample_images[:6])).max() < 1e-5
    assert enc.logit_scale == pytest.approx(before.logit_scale)


def test_a_stale_or_failed_record_falls_back_to_torch(tiny_mini, tmp_path):
    folder, _, _ = tiny_mini
    retrained = tmp_path / "retrained"
    shutil.copytree(folder, retrained)
    model = MiniModel.load(retrained)
    with __import__("torch").no_grad():
        model.text_head.linear.bias.add_(0.1)
    model.save(retrained)  # new weights, old text export beside them
    assert isinstance(vestis.load_encoder(retrained), VestisMiniEncoder)
    failed = tmp_path / "failed"
    shutil.copytree(folder, failed)
    record = json.loads((failed / TEXT_ONNX_DIR / RECORD_FILE).read_text())
    record["parity"]["passed"] = False
    (failed / TEXT_ONNX_DIR / RECORD_FILE).write_text(json.dumps(record))
    assert isinstance(vestis.load_encoder(failed), VestisMiniEncoder)
    assert isinstance(vestis.load_encoder(folder, runtime="torch"), VestisMiniEncoder)


def test_the_bundled_model_runs_its_verified_text_export():
    enc = vestis.load_encoder("vestis-mini", precision="fp32")
    assert isinstance(enc, MiniTextOnnxEncoder)
    torch_enc = vestis.load_encoder("vestis-mini", precision="fp32", runtime="torch")
    texts = ["red summer dress", "Men Navy Blue Slim Fit Jeans", "something for a beach wedding"]
    assert np.abs(enc.encode_texts(texts) - torch_enc.encode_texts(texts)).max() < 1e-5


def test_a_text_query_does_not_import_torch():
    code = (
        "import sys, vestis; enc = vestis.load_encoder('vestis-mini', precision='fp32'); "
        "enc.encode_texts(['red dress']); "
        "print(type(enc).__name__, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["MiniTextOnnxEncoder", "False", "False"], proc.stderr


def test_an_index_built_on_torch_before_the_export_still_opens(tmp_path, catalog_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vestis.index.build import build_index
    from vestis.search import Catalog

    pq.write_table(pa.Table.from_pylist(catalog_rows), tmp_path / "c.parquet")
    torch_enc = vestis.load_encoder("vestis-mini", runtime="torch")
    build_index(tmp_path / "c.parquet", tmp_path / "idx", encoder=torch_enc, quiet=True)
    with Catalog.open(tmp_path / "idx") as cat:
        assert cat.encoder.fingerprint == torch_enc.fingerprint
        assert cat.search("shirt", k=3).hits
