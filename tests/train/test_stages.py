"""Training in stages (issue #21): Chinese-CLIP's recipe, the image tower locked while the text side
learns, then both towers trained; one loop, resumable inside any stage, any checkpoint format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertTokenizer, ChineseCLIPModel

import vestis
from tests.models.test_chinese_clip import write_tiny_chinese_clip
from tests.train import VAL_FRACTION
from vestis.data import demo_catalog_path, kagl_parquets
from vestis.errors import InputError
from vestis.models.loading import detect_format
from vestis.models.vestis_mini import MiniConfig
from vestis.train.loop import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
TINY = MiniConfig(embed_dim=32, image_size=32, widths=(8, 16, 32, 32), blocks=(1, 1, 1, 1), text_hidden=64)
TWO_STAGES = [
    {"name": "locked image", "epochs": 2, "lock_image": True, "cache_views": 1, "lr": 1.0e-2},
    {"name": "both towers", "epochs": 2, "lr": 3.0e-3, "warmup_steps": 1},
]


def catalog_file() -> str:
    files = kagl_parquets()
    return str(files[0] if files else demo_catalog_path())


def mini_config(out, stages=None, **kw) -> TrainConfig:
    base = dict(out=str(out), kagl=catalog_file(), ccp=None, limit=96, val_fraction=VAL_FRACTION, epochs=2,
                batch_size=32, lr=3e-3, warmup_steps=2, bf16=False,
                fields={"article": 1.0, "composed": 1.0, "sub": 0.5}, model=TINY, stages=stages)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def history(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "model.safetensors"))


def max_diff(a: dict, b: dict, keys) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in keys)


# ------------------------------------------------------------------ the settings


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("[]", "give a list of at least one stage"),
        ("{epochs: 2}", "give a list of at least one stage"),
        ("[{epochs: 2, learning_rate: 0.1}]", r"stage 1: unknown settings \['learning_rate'\]"),
        ("[{epochs: 1}, {lock_image: true, lock_text: true}]", "stage 2: freezes everything"),
        ("[{lock_image: true, freeze_blocks: 4}]", "stage 1: lock_image fixes the whole image tower"),
        ("[{epochs: 0}]", "stage 1: epochs must be at least 1"),
        ("[{lr: 1e-4}]", r"stage 1: lr must be a number, not '1e-4' \(YAML reads 1e-4 as text"),
        ("[{lock_image: yes please}]", "stage 1: lock_image must be bool"),
        ("[lock_image]", "stage 1: a stage is a mapping of settings"),
    ],
)
def test_bad_stages_are_refused_naming_the_problem(tmp_path, stages, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"epochs: 3\nstages: {stages}\n")
    with pytest.raises(InputError, match=message) as err:
        TrainConfig.from_yaml(config)
    assert str(config) in str(err.value)


def test_the_top_level_settings_are_the_defaults_each_stage_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.002\nwarmup_steps: 50\nbatch_size: 64\nstages:\n"
                      "  - {epochs: 1, lock_image: true, lr: 1.0e-4}\n  - {epochs: 3, name: both}\n")  # fmt: skip
    first, second = TrainConfig.from_yaml(config).plan()
    assert (first.name, first.epochs, first.lr, first.lock_image, first.warmup_steps) == ("stage 1", 1, 1e-4, True, 50)
    assert (second.name, second.epochs, second.lr, second.lock_image, second.batch_size) == ("both", 3, 2e-3, False, 64)
    # without stages: one stage of the top-level settings
    (only,) = TrainConfig(epochs=5, lock_image=True, cache_views=2).plan()
    assert (only.epochs, only.lock_image, only.cache_views, only.lock_text) == (5, True, 2, False)
    with pytest.raises(InputError, match="freezes everything"):
        TrainConfig(lock_image=True, lock_text=True)


def test_epochs_on_the_command_line_are_refused_for_a_staged_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"out: {tmp_path / 'run'}\nstages: [{{epochs: 1}}, {{epochs: 1}}]\n")
    proc = subprocess.run([sys.executable, "-m", "vestis", "train", "--config", str(config), "--epochs", "3"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "sets the epochs of each of its stages" in proc.stderr


# ------------------------------------------------------------------ vestis-mini, in process


@pytest.fixture(scope="module")
def mini_two_stages(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini-stages")
    train(mini_config(out, TWO_STAGES, keep_epochs=[2]), quiet=True, log=lambda _: None)
    return out


def test_stage_one_locks_the_image_tower_and_stage_two_trains_it(mini_two_stages):
    out = mini_two_stages
    log = history(out)
    assert [(r["epoch"], r["stage"], r["stage_epoch"]) for r in log] == [(1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2)]
    for stage in (1, 2):  # the loss falls inside each stage
        rows = [r for r in log if r["stage"] == stage]
        assert rows[-1]["loss"] < rows[0]["loss"]
    after_stage1, final = weights(out / "model-epoch2"), weights(out / "model")
    image = [k for k in final if k.startswith("image_tower.")]
    head = [k for k in final if k.startswith("text_head.")]
    assert image and head
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (checkpoint["stage"], checkpoint["stage_epoch"], checkpoint["epoch"]) == (2, 2, 4)
    # the run's own starting weights: seeded, so a fresh build under the same seed gives them
    from vestis.train.loop import seed_everything
    from vestis.train.models import build_trainable

    seed_everything(0)
    start = build_trainable(None, TINY).model.state_dict()
    assert max_diff(start, after_stage1, image) == 0  # stage 1: not one image weight (nor BatchNorm statistic) moved
    assert max_diff(start, after_stage1, head) > 1e-3  # ... while the text head learned
    assert max_diff(after_stage1, final, image) > 1e-3  # stage 2: the image tower trains


def test_one_stage_of_the_top_level_settings_is_the_run_without_stages(mini_two_stages, tmp_path):
    """The stage machinery adds nothing: a config without stages trains exactly as one stage of the same settings
    (and logs as before: no stage fields)."""
    train(mini_config(tmp_path / "plain"), quiet=True, log=lambda _: None)
    train(mini_config(tmp_path / "staged", [{}]), quiet=True, log=lambda _: None)
    plain, staged = history(tmp_path / "plain"), history(tmp_path / "staged")
    assert "stage" not in plain[0] and staged[0]["stage"] == 1
    for a, b in zip(plain, staged, strict=True):
        assert (a["loss"], a["first_loss"], a["val_article_weighted_f1"]) == (
            b["loss"], b["first_loss"], b["val_article_weighted_f1"])  # fmt: skip
    a, b = weights(tmp_path / "plain" / "model"), weights(tmp_path / "staged" / "model")
    assert a.keys() == b.keys() and max_diff(a, b, a) == 0


@pytest.mark.parametrize("stop_after", [3, 2])
def test_a_run_stopped_in_a_stage_resumes_in_that_stage(mini_two_stages, tmp_path, stop_after):
    """Stopped inside stage 2 (after epoch 3) or at the boundary (after epoch 2, stage 1's last), a re-run goes on
    from there, not from stage 1, and ends where the uninterrupted run did."""
    lines = []
    train(mini_config(tmp_path, TWO_STAGES), quiet=True, log=lines.append, stop_after=stop_after)
    assert not (tmp_path / "model").exists()
    stage = 2 if stop_after == 3 else 1
    assert f"stopped after epoch {stop_after} of 4 (stage {stage}/2)" in lines[-1]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["stage"]) == (stop_after, stage)
    lines.clear()
    train(mini_config(tmp_path, TWO_STAGES), resume=True, quiet=True, log=lines.append)
    assert any(f"resumed from {tmp_path / 'checkpoint.pt'} after epoch {stop_after} (stage {stage}/2" in x
               for x in lines)  # fmt: skip
    assert not any(x.startswith("stage 1/2") for x in lines)  # stage 1 is not run again
    assert any(x.startswith("stage 2/2 (both towers): 2 epochs") for x in lines)
    assert [r["epoch"] for r in history(tmp_path)] == [1, 2, 3, 4]
    a, b = weights(mini_two_stages / "model"), weights(tmp_path / "model")
    assert a.keys() == b.keys() and max_diff(a, b, a) < 1e-5


def test_a_checkpoint_from_other_stages_is_not_resumed_silently(tmp_path):
    train(mini_config(tmp_path, TWO_STAGES), quiet=True, log=lambda _: None, stop_after=3)  # stage 2's first epoch
    longer = [{**TWO_STAGES[0], "epochs": 3}, TWO_STAGES[1]]  # now epoch 3 is stage 1's
    with pytest.raises(InputError, match="written in stage 2 after epoch 3, but this config's stages put epoch 3 in "
                                         "stage 1"):  # fmt: skip
        train(mini_config(tmp_path, longer), resume=True, quiet=True, log=lambda _: None)


def assert_locked_then_trained(init: dict, after_stage1: dict, final: dict) -> None:
    """A transformers two-tower checkpoint's weights: stage 1 left the image tower as it was and trained the text
    tower; stage 2 trained the image tower too."""
    vision = [k for k in init if k.startswith(("vision_model.", "visual_projection."))]
    text = [k for k in init if k.startswith(("text_model.", "text_projection."))]
    assert vision and text and set(init) == set(after_stage1) == set(final)
    assert max_diff(init, after_stage1, vision) == 0
    assert max_diff(init, after_stage1, text) > 1e-4
    assert max_diff(after_stage1, final, vision) > 1e-5


def test_a_transformers_clip_trains_in_stages_and_stays_one(tmp_path):
    from tests.models.test_hf_clip import write_hf_clip

    base = tmp_path / "base"
    write_hf_clip(base)
    stages = [{"epochs": 1, "lock_image": True, "cache_views": 1, "lr": 1.0e-3}, {"epochs": 1, "lr": 5.0e-4}]
    out = tmp_path / "run"
    train(mini_config(out, stages, init=str(base), limit=48, batch_size=16, keep_epochs=[1]), quiet=True,
          log=lambda _: None)  # fmt: skip
    assert detect_format(out / "model") == detect_format(base) == "hf-clip"
    assert_locked_then_trained(weights(base), weights(out / "model-epoch1"), weights(out / "model"))
    assert vestis.load_encoder(out / "model").image_config == vestis.load_encoder(base).image_config


# ------------------------------------------------------------------ Chinese-CLIP through the CLI


def tiny_chinese_clip(directory: Path) -> Path:
    """A random-weight Chinese-CLIP shrunk to 32 x 32 images, so a step takes milliseconds."""
    return write_tiny_chinese_clip(directory, image_size=32, patch_size=8, max_positions=64, seed=5)


CHINESE_CLIP_STAGES = """
stages:
  - name: lit
    epochs: 2
    lock_image: true
    cache_views: 1
    lr: 1.0e-3
    warmup_steps: 2
  - name: both towers
    epochs: 3
    lr: 2.0e-4
    warmup_steps: 1
"""


def test_chinese_clip_trains_in_two_stages_through_the_cli_and_stays_chinese_clip(tmp_path):
    base = tiny_chinese_clip(tmp_path / "base")
    config = tmp_path / "two-stage.yaml"
    config.write_text(f"""
out: {tmp_path / "run"}
init: {base}
languages: [zh]
kagl: {catalog_file()}
ccp: null
limit: 96
val_fraction: {VAL_FRACTION}
batch_size: 16
bf16: false
keep_epochs: [2]
fields: {{article: 1.0, composed: 1.0, sub: 0.5, colour: 0.5}}
{CHINESE_CLIP_STAGES}""")
    env = {**os.environ, "VESTIS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vestis", "train", "--config", str(config)]
    first = subprocess.run([*cmd, "--stop-after", "3"], capture_output=True, text=True, timeout=1200, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stage 1/2 (lit): 2 epochs, lr 0.001, image tower locked" in first.stderr
    assert "stage 2/2 (both towers): 3 epochs, lr 0.0002, both towers trained" in first.stderr
    assert "stopped after epoch 3 of 5 (stage 2/2)" in first.stderr
    # killed in stage 2: the re-run continues stage 2
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "after epoch 3 (stage 2/2, both towers)" in again.stderr and "stage 1/2" not in again.stderr

    log = history(tmp_path / "run")
    assert [(r["stage"], r["stage_epoch"]) for r in log] == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]
    assert "val_article_zh_weighted_f1" in log[-1]  # validated with Chinese prompts
    for stage in (1, 2):  # the loss falls inside each stage
        rows = [r for r in log if r["stage"] == stage]
        assert rows[-1]["loss"] < rows[0]["loss"], rows

    run = tmp_path / "run"
    init, after_stage1, final = weights(base), weights(run / "model-epoch2"), weights(run / "model")
    assert_locked_then_trained(init, after_stage1, final)

    # written back as Chinese-CLIP: transformers loads it, and vestis encodes as transformers does
    model_dir = tmp_path / "run" / "model"
    assert detect_format(model_dir) == detect_format(base) == "chinese-clip"
    reference = ChineseCLIPModel.from_pretrained(str(model_dir)).eval()
    assert type(reference).__name__ == "ChineseCLIPModel"
    texts = ["红色连衣裙", "男士黑色皮鞋", "夏季白色T恤"]
    tokens = BertTokenizer.from_pretrained(str(model_dir))(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = reference.get_text_features(**tokens)
    ref = torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1).numpy()
    enc = vestis.load_encoder(model_dir)
    assert np.abs(enc.encode_texts(texts) - ref).max() < 1e-4
    assert enc.image_config == vestis.load_encoder(base).image_config


def test_the_example_config_reads():
    cfg = TrainConfig.from_yaml(REPO / "configs" / "chinese-clip-two-stage.yaml")
    first, second = cfg.plan()
    assert first.lock_image and not first.lock_text and first.cache_views >= 1
    assert not (second.lock_image or second.lock_text or second.freeze_blocks) and second.lr < first.lr
    assert cfg.init == "chinese-clip-vit-b16" and "zh" in cfg.languages
