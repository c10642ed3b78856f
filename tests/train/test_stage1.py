"""Chinese-CLIP's stage 1 for vestis-mini (issue #21): the image tower locked and embedded once, a new
head over a multilingual text tower, trained on English and Chinese captions of the same items."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import vestis
from tests.train import VAL_FRACTION
from vestis.data import demo_catalog_path, kagl_parquets
from vestis.errors import InputError
from vestis.models.vestis_mini import MiniConfig, MiniModel
from vestis.train.augment import AugmentConfig
from vestis.train.captions import caption_languages, product_views_in
from vestis.train.data import _encode_views, _Strings
from vestis.train.loop import TrainConfig, _draw, _param_groups, _positives, batch_loss
from vestis.train.models import MiniTrainable, build_trainable, with_text_tower
from vestis.train.views import ViewMaker, cached_trunk_features, view_generator

E5 = "multilingual-e5-small"
TINY = MiniConfig(embed_dim=32, image_size=32, widths=(8, 16, 32, 32), blocks=(1, 1, 1, 1), text_hidden=64)
HAN = re.compile(r"[\u4e00-\u9fff]")
WEIGHTS = {"article": 1.0, "composed": 1.0, "title": 1.0, "synonym": 0.5, "sub": 0.5, "colour": 0.5}
N = 24


def catalog_file():
    files = kagl_parquets()
    return files[0] if files else demo_catalog_path()


@pytest.fixture(scope="module")
def rows():
    cols = ["articleType", "subCategory", "masterCategory", "baseColour", "season", "usage", "productDisplayName"]
    table = pq.read_table(catalog_file(), columns=cols).slice(0, 400).to_pylist()
    return [r for r in table if r["articleType"] and r["baseColour"]][:N]


def views_of(rows, languages):
    strings = _Strings()
    views = [
        _encode_views(product_views_in(r, caption_languages(languages), synonym_field=True), strings) for r in rows
    ]
    return views, strings.as_list()


def locked_trainable(seed: int = 0) -> MiniTrainable:
    torch.manual_seed(seed)
    model = MiniTrainable(with_text_tower(MiniModel(TINY), E5))
    model.freeze(image=True)
    return model.train()


def image_views(seed: int = 0) -> ViewMaker:
    images = torch.randint(0, 256, (N, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return ViewMaker(images, AugmentConfig(), TINY.mean, TINY.std)


def sentence_bank(n: int) -> torch.Tensor:
    """Stands in for the frozen sentence encoder's features of the captions (the head's input)."""
    return F.normalize(torch.randn(n, 384, generator=torch.Generator().manual_seed(1)), dim=-1)


def test_a_locked_image_tower_does_not_move_while_the_text_head_learns(rows):
    model = locked_trainable()
    views, strings = views_of(rows, ["en", "zh"])
    before = {k: v.clone() for k, v in model.model.image_tower.state_dict().items()}
    head = model.model.text_head.linear.weight.detach().clone()
    optimizer = torch.optim.AdamW(_param_groups(model, 0.05, 1e-2), lr=1e-2)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.model.image_tower.parameters()}
    for step in range(2):  # the forward runs in training mode: BatchNorm statistics must not move either
        x, colourless = image_views()(np.arange(N), torch.Generator().manual_seed(step))
        image_emb = F.normalize(model.encode_images(x), dim=-1)
        loss = batch_loss(model, image_emb, views, np.arange(N), colourless.numpy(), sentence_bank(len(strings)),
                          WEIGHTS, np.random.default_rng(step), label_aware=True, languages=("en", "zh"))  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.model.image_tower.state_dict()
    assert any("running_mean" in k for k in after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head, model.model.text_head.linear.weight)


def test_cached_image_embeddings_give_the_live_loss(rows, tmp_path):
    model = locked_trainable()
    views, strings = views_of(rows, ["en", "zh"])
    bank, maker = sentence_bank(len(strings)), image_views()
    feats, lost = cached_trunk_features(model.encode_images, maker, N, 2, 0, "k", tmp_path, dtype=np.float32,
                                        bf16=False, quiet=True, prefix="images")  # fmt: skip
    x, colourless = maker(np.arange(N), view_generator(0, 1))  # view 1's pixels, made live
    with torch.no_grad():
        live = model.encode_images(x)
    assert np.array_equal(lost[1], colourless.numpy())
    assert float((torch.from_numpy(feats[1]) - live).abs().max()) < 1e-5

    def loss(image_emb):
        rng = np.random.default_rng(7)
        with torch.no_grad():
            return float(batch_loss(model, F.normalize(image_emb, dim=-1), views, np.arange(N), lost[1], bank,
                                    WEIGHTS, rng, label_aware=True, languages=("en", "zh")))  # fmt: skip

    assert abs(loss(torch.from_numpy(feats[1])) - loss(live)) < 1e-5
    # read back from disk the second time: the tower is not run again
    again, _ = cached_trunk_features(lambda x: pytest.fail("re-embedded"), maker, N, 2, 0, "k", tmp_path,
                                     dtype=np.float32, quiet=True, prefix="images")  # fmt: skip
    assert np.array_equal(again, feats)
    # the cache key names the tower's weights: any change to them changes the digest
    digest = model.image_digest()
    with torch.no_grad():
        model.model.image_tower.proj.bias[0] += 1e-3
    assert model.image_digest() != digest


def test_chinese_captions_reach_the_loss(rows):
    model = locked_trainable()
    views, strings = views_of(rows, ["en", "zh"])
    bank, drawn = sentence_bank(len(strings)), []
    encode = model.encode_texts
    model.encode_texts = lambda b, idx: drawn.extend(strings[i] for i in idx.tolist()) or encode(b, idx)
    image_emb = F.normalize(torch.randn(N, 32), dim=-1)
    for languages in (("en", "zh"), ("en",), ("zh",)):
        drawn.clear()
        batch_loss(model, image_emb, views, np.arange(N), np.zeros(N, bool), bank, WEIGHTS, np.random.default_rng(0),
                   languages=languages)  # fmt: skip
        chinese = sum(bool(HAN.search(s)) for s in drawn)
        if languages == ("en", "zh"):
            assert 0.2 < chinese / len(drawn) < 0.8, drawn
        else:
            assert chinese == (len(drawn) if languages == ("zh",) else 0)
    # an item's captions in both languages are its positives (连衣裙 beside "a photo of a dress.")
    article = np.array(sorted({c for v in views[:2] for c in v["article"] + v["article@zh"]}))
    pos = _positives(views, np.array([0]), "article", np.array([False]), article, ("en", "zh"))[0]
    assert set(article[pos]) == set(views[0]["article"] + views[0]["article@zh"])
    assert any(HAN.search(strings[c]) for c in article[pos])


def test_english_only_runs_draw_as_before(rows):
    """Chinese views beside the English ones change nothing for an English-only run (v1-v6 reproduce)."""
    en_views, en_strings = views_of(rows, ["en"])
    both_views, both_strings = views_of(rows, ["en", "zh"])
    for field in WEIGHTS:
        a = _draw(en_views, np.arange(N), field, np.zeros(N, bool), np.random.default_rng(3))
        b = _draw(both_views, np.arange(N), field, np.zeros(N, bool), np.random.default_rng(3), ("en",))
        assert [en_strings[i] if i >= 0 else None for i in a] == [both_strings[i] if i >= 0 else None for i in b]


def test_stage1_settings_are_checked(tmp_path):
    config = tmp_path / "c.yaml"
    for text, message in (("languages: [en, fr]\n", "caption languages"),
                          ("lock_image: true\nfreeze_blocks: 4\n", "lock_image"),
                          ("text_tower: labse\n", "text_tower must be one of")):  # fmt: skip
        config.write_text(text)
        with pytest.raises(InputError, match=message):
            TrainConfig.from_yaml(config)
    with pytest.raises(InputError, match="model: text_tower"):
        build_trainable(None, TINY, text_tower=E5)


def test_with_text_tower_keeps_the_image_tower_and_starts_a_new_head():
    torch.manual_seed(0)
    base = MiniModel(TINY)
    new = with_text_tower(base, E5)
    assert new.cfg.text_tower == E5 and base.cfg.text_tower == "minilm"
    state, old = new.image_tower.state_dict(), base.image_tower.state_dict()
    assert all(torch.equal(state[k], old[k]) for k in old) and torch.equal(new.logit_scale, base.logit_scale)
    assert with_text_tower(new, E5) is new  # the same tower: the head is kept


def test_vestis_train_runs_stage1_and_writes_a_model_vestis_loads(tmp_path):
    """Through the installed CLI: a tiny random vestis-mini's image tower under multilingual-e5-small."""
    torch.manual_seed(0)
    MiniModel(TINY).save(tmp_path / "init")
    config = tmp_path / "stage1.yaml"
    config.write_text(f"""
out: {tmp_path / "run"}
init: {tmp_path / "init"}
text_tower: {E5}
languages: [en, zh]
lock_image: true
cache_views: 2
kagl: {catalog_file()}
ccp: null
limit: 40
val_fraction: {VAL_FRACTION}
epochs: 2
batch_size: 16
lr: 0.01
warmup_steps: 2
synonym_field: true
label_aware: true
fields: {json.dumps(WEIGHTS)}
""")
    env = {**os.environ, "VESTIS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vestis", "train", "--config", str(config), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[-1]["loss"] < history[0]["first_loss"]
    assert {"val_article_weighted_f1", "val_article_zh_weighted_f1"} <= set(history[-1])
    assert len(list((tmp_path / "cache" / "train").glob("images-*-v1.npy"))) == 1  # 2 views embedded once

    model_dir = tmp_path / "run" / "model"
    saved, init = (
        load_file(str(model_dir / "model.safetensors")),
        load_file(str(tmp_path / "init" / "model.safetensors")),
    )
    image_keys = [k for k in init if k.startswith("image_tower.")]
    assert image_keys and all(torch.equal(saved[k], init[k]) for k in image_keys)  # the locked tower, as it was
    assert not torch.equal(saved["text_head.linear.weight"], init["text_head.linear.weight"])
    enc = vestis.load_encoder(model_dir)
    assert enc.model.cfg.text_tower == E5
    txt = enc.encode_texts(["红色连衣裙", "red dress", "男士运动鞋"])
    assert txt.shape == (3, 32) and np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)


def test_the_stage1_config_reads():
    from pathlib import Path

    cfg = TrainConfig.from_yaml(Path(__file__).resolve().parents[2] / "configs" / "vestis-mini-zh-stage1.yaml")
    assert (cfg.init, cfg.text_tower, cfg.languages, cfg.lock_image) == ("vestis-mini", E5, ["en", "zh"], True)
    assert cfg.cache_views >= 1 and not cfg.ccp_holdout  # the data v6's image tower was trained on
