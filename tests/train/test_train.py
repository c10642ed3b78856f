"""Training: a tiny run learns, resumes exactly, and saves a model vestis can load and export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vestis
from tests.models.test_chinese_clip import chinese_clip_dir  # noqa: F401 (a fixture, for base_checkpoint)
from tests.models.test_open_clip import open_clip_reference, run_open_clip_reference  # noqa: F401 (a fixture)
from tests.train import VAL_FRACTION
from vestis.data import demo_catalog_path, kagl_parquets
from vestis.data.split import is_validation
from vestis.export import export_onnx
from vestis.models.vestis_mini import MiniConfig
from vestis.train.augment import AugmentConfig, augment
from vestis.train.captions import product_views
from vestis.train.loop import TrainConfig, train
from vestis.train.loss import field_loss


def tiny_config(out, epochs: int) -> TrainConfig:
    files = kagl_parquets()
    return TrainConfig(
        out=str(out),
        kagl=str(files[0] if files else demo_catalog_path()),
        ccp=None,
        limit=240,
        val_fraction=VAL_FRACTION,
        epochs=epochs,
        batch_size=48,
        lr=3e-3,
        warmup_steps=3,
        model=MiniConfig(embed_dim=32, image_size=32, widths=(8, 16, 32, 32), blocks=(1, 1, 1, 1), text_hidden=64),
    )


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("run3")
    final = train(tiny_config(out, 3), quiet=True, log=lambda _: None)
    return out, final


def test_loss_falls(three_epochs):
    out, final = three_epochs
    history = [__import__("json").loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(history) == 3
    assert history[-1]["loss"] < history[0]["first_loss"] - 0.2
    assert 0 <= final["val_article_weighted_f1"] <= 1 and final["val_n"] > 0


def test_resume_reproduces_an_uninterrupted_run(three_epochs, tmp_path):
    out, _ = three_epochs
    train(tiny_config(tmp_path, 3), quiet=True, log=lambda _: None, stop_after=2)  # "interrupted"
    assert not (tmp_path / "model").exists()
    lines = []
    train(tiny_config(tmp_path, 3), resume=True, quiet=True, log=lines.append)
    assert any("resumed" in line for line in lines)
    a = load_file(str(out / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-5


def test_trained_model_loads_and_exports_to_onnx(three_epochs, tmp_path, sample_images, sample_texts):
    out, _ = three_epochs
    enc = vestis.load_encoder(out / "model")
    assert enc.dim == 32 and "vestis-mini" in enc.runtime
    img, txt = enc.encode_images(sample_images[:6]), enc.encode_texts(sample_texts[:6])
    assert img.shape == (6, 32) and np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    onnx_enc = vestis.load_encoder(export_onnx(enc, tmp_path / "onnx"))
    assert np.abs(onnx_enc.encode_images(sample_images[:6]) - img).max() < 1e-4
    assert np.abs(onnx_enc.encode_texts(sample_texts[:6]) - txt).max() < 1e-4


def test_validation_split_is_stable_and_sized():
    ids = range(20000)
    picked = [i for i in ids if is_validation(i, 0.1)]
    assert 0.09 < len(picked) / 20000 < 0.11
    assert picked == [i for i in ids if is_validation(str(i), 0.1)]  # ids as int or str agree


def test_a_catalog_without_products_of_a_split_is_named_not_a_pyarrow_error():
    from vestis.errors import InputError
    from vestis.models.preprocess import ImageConfig
    from vestis.train.data import kagl_items

    cfg = ImageConfig(resize=None, crop_hw=(8, 8))
    with pytest.raises(InputError, match=r"none of its 300 products is in the train split at val_fraction 1\.0"):
        next(kagl_items(demo_catalog_path(), cfg, 1.0, "train", quiet=True))  # every product a validation one
    with pytest.raises(InputError, match="in the val split at val_fraction 0.0"):
        next(kagl_items(demo_catalog_path(), cfg, 0.0, "val", quiet=True))
    item = next(kagl_items(demo_catalog_path(), cfg, 0.0, "train", quiet=True))
    assert item[1].shape[:2] == (8, 8)


def test_colourless_augmentations_are_flagged():
    images = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    x, colourless = augment(images, AugmentConfig(gray=0.5, invert=0.2), torch.Generator().manual_seed(0))
    assert x.shape == (64, 3, 32, 32) and 0 < colourless.sum() < 64
    gray = x[colourless]
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    assert not torch.allclose(x[~colourless][:, 0], x[~colourless][:, 1])


def test_identical_captions_are_not_negatives():
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1]]), dim=-1)
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05]]), dim=-1)
    # both products carry the same caption: one column, so nothing pushes them apart
    loss = field_loss(image, text, torch.tensor([0, 0]), torch.tensor(10.0))
    assert float(loss) < 0.75  # i2t is exactly 0; t2i spreads over the two images (ln 2 at most)


def test_label_aware_targets_treat_every_true_caption_as_positive():
    from vestis.train.loop import _positives

    unit = torch.nn.functional.normalize
    text = unit(torch.tensor([[1.0, 0.2], [1.0, -0.2], [0.0, 1.0]]), dim=-1)
    scale, columns = torch.tensor(20.0), torch.tensor([0, 1, 2])
    own = torch.nn.functional.one_hot(columns, 3).bool()
    # two identical t-shirts drawn as different captions (columns 0 and 1) that describe both
    same = own.clone()
    same[0, 1] = same[1, 0] = True
    grads = {}
    for name, positives in (("plain", None), ("own", own), ("aware", same)):
        image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
        field_loss(image, text, columns, scale, positives).backward()
        grads[name] = image.grad
    # only each image's own caption marked: the plain loss
    assert torch.allclose(grads["own"], grads["plain"], atol=1e-6)
    # plain targets pull the two t-shirts apart, each towards the caption it happened to draw
    assert float(grads["plain"][0, 1]) < -1.0 and float(grads["plain"][1, 1]) > 1.0
    # label-aware targets do not
    assert float(grads["aware"][:2].abs().max()) < 1e-4

    from vestis.train.data import _encode_views, _Strings

    strings = _Strings()
    shirt = {"articleType": "Tshirts", "baseColour": "Navy Blue", "usage": "Casual", "productDisplayName": ""}
    views = [_encode_views(product_views(row), strings) for row in (shirt, {**shirt, "baseColour": "Red"})]
    index = {text: i for i, text in enumerate(strings.as_list())}
    article = np.array([index["Tshirts"], index["a photo of a t-shirt."]])
    pos = _positives(views, np.array([0, 1]), "article", np.array([False, True]), article)
    assert pos.tolist() == [[True, True], [True, True]]
    # a caption without colour is true of a coloured item; a coloured one is not of a grayscale
    # item, nor of an item of another colour
    composed = np.array([index["a t-shirt"], index["a photo of a navy blue t-shirt."], index["red Tshirts"]])
    pos = _positives(views, np.array([0, 1, 1]), "composed", np.array([False, True, False]), composed)
    assert pos.tolist() == [[True, True, False], [True, False, False], [True, False, True]]


def test_label_aware_training_learns(three_epochs, tmp_path):
    out, _ = three_epochs
    cfg = tiny_config(tmp_path, 3)
    cfg.label_aware = True
    train(cfg, quiet=True, log=lambda _: None)
    plain, aware = _history(out), _history(tmp_path)
    assert aware[-1]["loss"] < aware[0]["first_loss"] - 0.2
    assert aware[0]["first_loss"] != plain[0]["first_loss"]  # the option reaches the loss


def test_caption_views_never_invent_unknown_fields():
    views = product_views({"articleType": "Tshirts", "baseColour": "", "productDisplayName": ""})
    assert "colour" not in views and "title" not in views
    assert all("  " not in c and c for c in views["composed"])


def test_synonyms_can_be_a_field_of_their_own():
    from vestis.train.captions import garment_views

    row = {"articleType": "Casual Shoes", "baseColour": "White", "usage": "Casual", "productDisplayName": ""}
    mixed, split = product_views(row), product_views(row, synonym_field=True)
    assert "sneakers" in mixed["article"] and "synonym" not in mixed
    assert "a white sneakers" in mixed["composed"]
    assert not any("sneaker" in c or "trainer" in c for k in ("article", "composed") for c in split[k])
    assert {c for c in split["synonym"] if "photo" not in c} == {"sneakers", "trainers", "canvas shoes"}
    assert len(split["synonym"]) == 6 and "a photo of a sneakers." in split["synonym"]
    assert split["article"] == [c for c in mixed["article"] if c not in split["synonym"]]
    # no synonyms known: no synonym captions, and the other fields do not change
    plain = {"articleType": "Kurtas", "baseColour": "Red", "productDisplayName": ""}
    assert "synonym" not in product_views({**plain, "articleType": "Free Gifts"}, synonym_field=True)
    coat = garment_views("coat", synonym_field=True)
    assert "overcoat" in coat["synonym"] and "overcoat" not in coat["article"]
    assert "overcoat" in garment_views("coat")["article"]


def test_a_synonym_weight_needs_the_synonym_field(tmp_path):
    from vestis.errors import InputError

    config = tmp_path / "c.yaml"
    config.write_text("fields:\n  article: 1.0\n  synonym: 0.5\n")
    with pytest.raises(InputError, match="synonym_field"):
        TrainConfig.from_yaml(config)
    config.write_text("synonym_field: true\nfields:\n  article: 1.0\n  synonym: 0.5\n")
    assert TrainConfig.from_yaml(config).fields["synonym"] == 0.5
    with pytest.raises(InputError, match="synonym_field"):  # a config built in code too
        TrainConfig(fields={"article": 1.0, "synonym": 0.5})


@pytest.mark.parametrize(
    ("section", "text"),
    [("model", "model:\n  image_sise: 80\n"), ("augment", "augment:\n  grey: 0.5\n")],
)
def test_a_misspelt_model_or_augment_setting_is_refused(tmp_path, section, text):
    """A typo must not silently train with the default value."""
    from vestis.errors import InputError

    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(InputError, match=f"unknown {section} settings"):
        TrainConfig.from_yaml(config)


def test_channels_last_training_learns_the_same_way(three_epochs, tmp_path, sample_images):
    """NHWC convolutions only reorder float sums: the same run, nearly the same losses."""
    if not kagl_parquets():  # a known crash, not a pass: see the README's note on channels_last
        pytest.skip("on the demo set's batch shapes oneDNN's bf16 1x1-convolution weight-gradient kernel "
                    "(jit_avx512_core_bf16_1x1_convolution_bwd_weights_t) aborts the process")  # fmt: skip
    out, _ = three_epochs
    cfg = tiny_config(tmp_path, 3)
    cfg.channels_last, cfg.synonym_field = True, True
    cfg.fields = {**cfg.fields, "synonym": 0.5}
    train(cfg, quiet=True, log=lambda _: None)
    nchw, nhwc = _history(out), _history(tmp_path)
    assert abs(nchw[0]["first_loss"] - nhwc[0]["first_loss"]) < 0.05  # the synonym field moves it a little
    assert nhwc[-1]["loss"] < nhwc[0]["first_loss"] - 0.2
    enc = vestis.load_encoder(tmp_path / "model")
    assert enc.encode_images(sample_images[:2]).shape == (2, 32)


def _history(out) -> list[dict]:
    return [__import__("json").loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_text_tower_from_scratch_learns_and_loads(tmp_path, sample_texts):
    cfg = tiny_config(tmp_path, 3)
    cfg.model = MiniConfig(embed_dim=32, image_size=32, widths=(8, 16, 32, 32), blocks=(1, 1, 1, 1),
                           text_tower="scratch", text_layers=1, text_width=32)  # fmt: skip
    train(cfg, quiet=True, log=lambda _: None)
    history = _history(tmp_path)
    assert history[-1]["loss"] < history[0]["first_loss"] - 0.2
    enc = vestis.load_encoder(tmp_path / "model")
    assert enc.text is None  # no MiniLM: the tower is its own
    txt = enc.encode_texts(sample_texts[:4])
    assert txt.shape == (4, 32) and np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    assert not np.allclose(txt[0], txt[1])


@pytest.fixture(params=["hf-clip", "chinese-clip", "open-clip"])
def base_checkpoint(request, tmp_path):
    """A tiny random FashionCLIP-format, Chinese-CLIP or Marqo-FashionCLIP-format (open_clip) checkpoint."""
    if request.param == "hf-clip":
        from tests.models.test_hf_clip import write_hf_clip

        write_hf_clip(tmp_path / "base")
        return request.param, tmp_path / "base"
    if request.param == "open-clip":
        return request.param, request.getfixturevalue("open_clip_reference") / "gelu"
    return request.param, request.getfixturevalue("chinese_clip_dir")


def test_fine_tuning_a_loaded_checkpoint(base_checkpoint, tmp_path, sample_images, sample_texts, image_files):
    from vestis.models.loading import detect_format

    fmt, base = base_checkpoint
    before = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    cfg = tiny_config(tmp_path / "run", 4)  # 2 left the random Chinese-CLIP at chance on the demo set's products
    cfg.init, cfg.limit, cfg.batch_size, cfg.lr = str(base), 96, 32, 5e-4
    final = train(cfg, quiet=True, log=lambda _: None)
    history = _history(tmp_path / "run")
    assert history[-1]["last_loss"] < history[0]["first_loss"] and final["val_n"] > 0
    assert {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()} == before  # the base is untouched
    tuned = tmp_path / "run" / "model"
    assert detect_format(tuned) == fmt  # saved in the format it was loaded from
    old, new = vestis.load_encoder(base), vestis.load_encoder(tuned)
    assert new.image_config == old.image_config and new.tokenizer.context_length == old.tokenizer.context_length
    if fmt == "open-clip":  # open_clip itself loads the fine-tuned checkpoint and agrees with vestis
        texts = sample_texts[:4]
        run_open_clip_reference({"check": [str(tuned)], "images": image_files[:4], "texts": texts}, tmp_path / "s.json")
        ref = np.load(tuned / "open_clip_check.npz")
        assert np.abs(new.encode_images(image_files[:4]) - ref["image_emb"]).max() < 1e-4
        assert np.abs(new.encode_texts(texts) - ref["text_emb"]).max() < 1e-4
    for a, b in ((old.encode_images(sample_images[:4]), new.encode_images(sample_images[:4])),
                 (old.encode_texts(sample_texts[:4]), new.encode_texts(sample_texts[:4]))):  # fmt: skip
        assert a.shape == b.shape and np.abs(a - b).max() > 1e-3  # the weights moved


def test_fine_tuning_refuses_models_it_cannot_train(tmp_path):
    from vestis.errors import VestisError

    onnx_dir = export_onnx(vestis.load_encoder("vestis-tiny-random"), tmp_path / "onnx")
    for init in (tmp_path / "nowhere", onnx_dir):
        cfg = tiny_config(tmp_path / "run", 1)
        cfg.init = str(init)
        with pytest.raises(VestisError, match=f"cannot fine-tune {init}"):
            train(cfg, quiet=True, log=lambda _: None)
        assert not (tmp_path / "run" / "model").exists()


def test_frozen_sentence_head_stays_fp32_under_the_loops_autocast():
    """The shipped vestis-mini was trained with its text head in fp32; bf16 autocast must not change that."""
    from vestis.train.models import MiniTrainable

    model = MiniTrainable(vestis.models.vestis_mini.MiniModel(MiniConfig(embed_dim=32, text_hidden=64)))
    bank = torch.nn.functional.normalize(torch.randn(10, 384), dim=-1)
    idx = torch.arange(10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.encode_texts(bank, idx)
    assert out.dtype == torch.float32
    assert torch.equal(out, model.model.text_head(bank))


def test_cli_overrides_reach_the_training_config(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import vestis.train.loop
    from vestis.cli import app

    seen = []
    monkeypatch.setattr(vestis.train.loop, "train", lambda cfg, **kw: seen.append((cfg, kw)) or {"val_n": 0})
    config = tmp_path / "c.yaml"
    config.write_text("out: runs/x\nepochs: 24\nseed: 0\n")
    args = ["train", "--config", str(config), "--out", str(tmp_path / "o"), "--epochs", "3", "--seed", "7"]
    result = CliRunner().invoke(app, [*args, "--stop-after", "2", "-q"])
    assert result.exit_code == 0, result.output
    ((cfg, kw),) = seen
    assert (cfg.seed, cfg.epochs, cfg.out, kw["stop_after"]) == (7, 3, str(tmp_path / "o"), 2)
