"""Pretrained image towers in training: loading, freezing, cached trunk features, shoppers'-photo views."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vestis
from tests.train import VAL_FRACTION
from vestis.data import demo_catalog_path, kagl_parquets, shared_data_dir
from vestis.data.ccp import is_heldout, read_photos
from vestis.errors import InputError
from vestis.models.efficientnet import imagenet_weights_path
from vestis.models.preprocess import preprocess_images
from vestis.models.vestis_mini import MiniConfig, MiniModel
from vestis.train.augment import AugmentConfig
from vestis.train.composite import composite, product_alpha
from vestis.train.data import ccp_items
from vestis.train.loop import TrainConfig, batch_loss, load_data, train, view_maker
from vestis.train.models import build_trainable
from vestis.train.views import render_view, view_generator

CCP = (shared_data_dir() or demo_catalog_path().parent) / "ccp" / "ccp.parquet"
needs_ccp = pytest.mark.skipif(not CCP.is_file(), reason="needs the shared Clothing Co-Parsing data")


def lite_config(out, **kw) -> TrainConfig:
    files = kagl_parquets()
    base = dict(
        out=str(out),
        kagl=str(files[0] if files else demo_catalog_path()),
        ccp=None,
        limit=96,
        val_fraction=VAL_FRACTION,
        epochs=2,
        batch_size=32,
        lr=3e-3,
        warmup_steps=2,
        bf16=False,
        freeze_blocks=12,
        backbone_lr=0.5,
        fields={"article": 1.0, "composed": 1.0, "sub": 0.5},
        model=MiniConfig(embed_dim=32, image_size=32, image_tower="efficientnet-lite0", text_hidden=64),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_a_fresh_pretrained_tower_starts_from_imagenet_weights():
    trainable = build_trainable(None, MiniConfig(image_tower="efficientnet-lite0", image_size=32))
    reference = torch.load(imagenet_weights_path("efficientnet-lite0"), weights_only=True)
    net = trainable.model.image_tower.net
    assert torch.equal(net.blocks[3].depthwise.conv.weight, reference["_blocks.3._depthwise_conv.weight"])
    assert torch.equal(net.head.bn.running_var, reference["_bn1.running_var"])
    scratch = build_trainable(None, MiniConfig(image_tower="efficientnet-lite0", image_size=32), pretrained=False)
    assert not torch.equal(scratch.model.image_tower.net.blocks[3].depthwise.conv.weight,
                           reference["_blocks.3._depthwise_conv.weight"])  # fmt: skip


def test_frozen_blocks_do_not_move_and_keep_their_statistics():
    trainable = build_trainable(None, MiniConfig(image_tower="efficientnet-lite0", image_size=32), freeze_blocks=12)
    net = trainable.model.image_tower.net
    frozen_before = {k: v.clone() for k, v in net.blocks[11].state_dict().items()}
    trained_before = net.blocks[12].project.conv.weight.clone()
    trainable.train()
    assert not net.blocks[11].training and net.blocks[12].training and not net.stem.training
    opt = torch.optim.SGD([p for p in trainable.parameters() if p.requires_grad], lr=0.1)
    emb = trainable.encode_images(torch.randn(8, 3, 32, 32))
    emb.square().sum().backward()
    opt.step()
    assert all(torch.equal(frozen_before[k], v) for k, v in net.blocks[11].state_dict().items())
    assert not torch.equal(trained_before, net.blocks[12].project.conv.weight)
    assert not any(p.requires_grad for p in net.stem.parameters())


def test_freezing_needs_a_pretrained_tower(tmp_path):
    with pytest.raises(InputError, match="pretrained image tower"):
        build_trainable(None, MiniConfig(), freeze_blocks=3)
    with pytest.raises(InputError, match="freeze_blocks"):
        train(lite_config(tmp_path, freeze_blocks=0, cache_views=2), quiet=True, log=lambda _: None)


def test_cached_trunk_features_give_the_same_loss_as_the_uncached_path(tmp_path):
    cfg = lite_config(tmp_path, augment=AugmentConfig(composite=0.0))
    trainable = build_trainable(None, cfg.model, freeze_blocks=cfg.freeze_blocks)
    trainable.train()
    train_set, _, _ = load_data(cfg, trainable.image_config, quiet=True)
    views = view_maker(cfg, train_set, trainable.image_config, quiet=True)
    captions = trainable.text_bank(train_set.strings, tmp_path / "cache", quiet=True)
    n = len(train_set)
    feats, lost = render_view(trainable.trunk_features, views, n, view=1, seed=0, batch_size=n,
                              dtype=np.float32, bf16=False)  # fmt: skip
    idx = np.arange(n)
    x, colourless = views(idx, view_generator(0, 1))  # the pixels the cache was made from
    assert np.array_equal(colourless.numpy(), lost)
    weights = {"article": 1.0, "composed": 1.0, "sub": 0.5}

    def loss_of(emb):
        rng = np.random.default_rng(3)
        return batch_loss(trainable, F.normalize(emb, dim=-1), train_set.views, idx, lost, captions, weights, rng)

    with torch.no_grad():
        uncached = loss_of(trainable.encode_images(x))
        cached = loss_of(trainable.encode_features(torch.from_numpy(feats)))
    assert abs(uncached.item() - cached.item()) < 1e-5


def test_a_cached_run_learns_saves_and_loads(tmp_path, sample_images, sample_texts):
    out = tmp_path / "run"
    final = train(lite_config(out, epochs=3, cache_views=2), quiet=True, log=lambda _: None)
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert history[-1]["loss"] < history[0]["first_loss"]
    assert final["val_n"] > 0
    enc = vestis.load_encoder(out / "model")
    assert enc.dim == 32 and enc.model.cfg.image_tower == "efficientnet-lite0"
    img = enc.encode_images(sample_images[:4])
    assert img.shape == (4, 32) and np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-3)
    loaded = MiniModel.load(out / "model").eval()  # no ImageNet weights needed: the tower's own are saved
    # the encoder runs the tower with its BatchNorms folded into the convolutions: the saved
    # model's own function, to float32 rounding
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.model.image_tower.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.image_tower.modules())
    with torch.no_grad():
        pixels = torch.from_numpy(preprocess_images(sample_images[:4], enc.image_config))
        direct = F.normalize(loaded.image_tower(pixels), dim=-1).numpy()
    assert np.allclose(img, direct, atol=1e-4)
    # an interrupted run resumes from the cached views on disk and ends where the uninterrupted one did
    again = tmp_path / "again"
    train(lite_config(again, epochs=3, cache_views=2), quiet=True, log=lambda _: None, stop_after=1)
    lines = []
    train(lite_config(again, epochs=3, cache_views=2), resume=True, quiet=True, log=lines.append)
    assert any("resumed" in line for line in lines)
    a, b = MiniModel.load(out / "model").state_dict(), MiniModel.load(again / "model").state_dict()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-5


def test_product_outline_keeps_white_inside_the_product():
    img = np.full((32, 32, 3), 255, np.uint8)
    img[8:24, 8:24] = 40  # a dark frame ...
    img[11:21, 11:21] = 250  # ... around a white panel (a white shirt's front)
    alpha = product_alpha(img)
    assert alpha[0, 0] == 0 and alpha[16, 16] == 255 and alpha[9, 9] == 255
    grey = np.full((32, 32, 3), 190, np.uint8)  # a studio backdrop in grey
    grey[10:22, 10:22] = (200, 30, 30)
    alpha = product_alpha(grey)
    assert alpha[0, 0] == 0 and alpha[2, 30] == 0 and alpha[15, 15] == 255


def test_composite_puts_the_product_on_the_scene():
    gen = torch.Generator().manual_seed(0)
    product = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    product[..., 0] = 255  # pure red, everywhere the outline says
    alpha = torch.zeros(4, 32, 32, dtype=torch.uint8)
    alpha[:, 8:24, 8:24] = 255
    scene = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    scene[..., 2] = 200  # a blue scene
    out = composite(product, alpha, scene, gen, scale=(0.8, 0.8), synthetic=0.0)
    red = (out[..., 0] > 200) & (out[..., 2] < 50)
    blue = (out[..., 2] > 150) & (out[..., 0] < 50)
    for i in range(4):
        assert 0.1 < red[i].float().mean() < 0.3  # 16x16 of 32x32, scaled by 0.8: about 16%
        assert blue[i].float().mean() > 0.6


@needs_ccp
def test_held_out_photos_are_never_trained_on_nor_used_as_scenes(tmp_path):
    cfg_image = MiniConfig(image_size=32).image_config()
    trained = {item.split("-")[1] for item, *_ in ccp_items(CCP, cfg_image, quiet=True, holdout=True)}
    assert trained and not any(is_heldout(int(p)) for p in trained)
    heldout = {p.id for p in read_photos(CCP, "val")}
    assert 0.15 < len(heldout) / 2098 < 0.25
    assert heldout.isdisjoint(p.id for p in read_photos(CCP, "train"))
    everything = {item.split("-")[1] for item, *_ in ccp_items(CCP, cfg_image, quiet=True, holdout=False)}
    assert {str(p) for p in heldout} & everything  # without the holdout (v6's recipe) they are in


def test_fine_tuning_a_saved_model_starts_from_it_as_saved(tmp_path, sample_images):
    """``init`` naming a vestis-mini folder trains the model as saved, not its inference encoder's
    copy (whose BatchNorms are folded into the convolutions): the result loads and runs like any."""
    first = tmp_path / "first"
    train(lite_config(first, epochs=1), quiet=True, log=lambda _: None)
    again = tmp_path / "again"
    train(lite_config(again, epochs=1, init=str(first / "model"), freeze_blocks=12), quiet=True, log=lambda _: None)
    before, after = MiniModel.load(first / "model"), MiniModel.load(again / "model")  # both load
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in after.image_tower.modules())
    assert before.state_dict().keys() == after.state_dict().keys()
    moved = [k for k in before.state_dict() if not torch.equal(before.state_dict()[k], after.state_dict()[k])]
    assert moved and all(not k.startswith("image_tower.net.blocks.0.") for k in moved)  # frozen blocks stay
    assert vestis.load_encoder(again / "model").encode_images(sample_images[:2]).shape == (2, 32)
