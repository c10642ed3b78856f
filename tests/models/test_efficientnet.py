"""vestis' EfficientNet-Lite against the reference implementation, and its ImageNet weights."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vestis.data import kagl_parquets
from vestis.errors import ModelFormatError
from vestis.models.efficientnet import EfficientNetLite, imagenet_weights_path, load_imagenet_weights

reference = pytest.importorskip("efficientnet_lite_pytorch")


@pytest.fixture(scope="module")
def lite0_pair():
    ours = EfficientNetLite("efficientnet-lite0", 224).eval()
    classifier = load_imagenet_weights(ours)
    path = str(imagenet_weights_path("efficientnet-lite0"))
    theirs = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    return ours, classifier, theirs


def _logits(model: EfficientNetLite, classifier, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(model(x).mean(dim=(2, 3)), classifier["_fc.weight"], classifier["_fc.bias"])


def test_matches_the_reference_implementation_with_imagenet_weights(lite0_pair):
    ours, classifier, theirs = lite0_pair
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (_logits(ours, classifier, x) - theirs(x)).abs().max() < 1e-4


@pytest.mark.parametrize("size", [96, 128, 131])
def test_tensorflow_same_padding_at_other_input_sizes(size):
    """Stride-2 layers pad one more pixel bottom/right, as TensorFlow's SAME does (and the reference)."""
    path = str(imagenet_weights_path("efficientnet-lite0"))
    theirs = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, image_size=size).eval()
    ours = EfficientNetLite("efficientnet-lite0", size).eval()
    load_imagenet_weights(ours)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(x) - theirs.extract_features(x)).abs().max() < 1e-4


def test_trunk_and_top_compose_to_the_whole_network(lite0_pair):
    ours, _, _ = lite0_pair
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        whole = ours(x)
        for k in (0, 5, 12, 16):
            assert torch.equal(ours.top(ours.trunk(x, k), k), whole)


def test_weights_for_another_architecture_are_refused():
    with pytest.raises(ModelFormatError, match="shape"):
        load_imagenet_weights(EfficientNetLite("efficientnet-lite2", 96), imagenet_weights_path("efficientnet-lite0"))
    with pytest.raises(ModelFormatError, match="unknown image tower"):
        EfficientNetLite("efficientnet-b0")


#: ImageNet-1k classes for a few KAGL article types, written down by hand (class index: name).
IMAGENET = {
    "Sports Shoes": {770},  # running shoe
    "Jeans": {608},  # jean, blue jean, denim
    "Tshirts": {610},  # jersey, T-shirt
    "Backpacks": {414},  # backpack
    "Sunglasses": {836, 837},  # sunglass, sunglasses
    "Watches": {531, 826},  # digital watch, stopwatch
    "Ties": {906, 457},  # Windsor tie, bow tie
}


@pytest.mark.skipif(not kagl_parquets(), reason="needs the shared KAGL data")
def test_imagenet_predictions_on_catalog_photos(lite0_pair):
    """The converted weights still recognise ImageNet classes (a broken conversion scores ~0)."""
    _, _, theirs = lite0_pair
    ours, classifier, _ = lite0_pair
    rows = pq.read_table(kagl_parquets()[0], columns=["image", "articleType"]).to_pylist()
    picked = {k: [r["image"] for r in rows if r["articleType"] == k][:8] for k in IMAGENET}
    hits = n = 0
    for label, images in picked.items():
        x = []
        for data in images:
            img = Image.open(io.BytesIO(data)).convert("RGB").resize((168, 224), Image.Resampling.BICUBIC)
            canvas = Image.new("RGB", (224, 224), (255, 255, 255))
            canvas.paste(img, (28, 0))
            x.append((np.asarray(canvas, np.float32) / 255 - 0.5) / 0.5)
        with torch.no_grad():
            top5 = _logits(ours, classifier, torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2)).topk(5).indices
        hits += sum(bool(set(row.tolist()) & IMAGENET[label]) for row in top5)
        n += len(images)
    assert hits / n >= 0.4, f"top-5 hit rate {hits / n:.2f} on {n} catalog photos"


def test_folding_batchnorm_keeps_the_function_and_drops_the_layers(lite0_pair):
    """Inference folds every BatchNorm into its convolution: the same outputs (to float32
    rounding) from a network with no BatchNorm left; folding twice changes nothing."""
    import copy

    ours, _, _ = lite0_pair
    x = torch.randn(3, 3, 224, 224)
    folded = copy.deepcopy(ours).fold_batchnorm()
    with torch.no_grad():
        before, after = ours(x), folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in ours.modules())  # the original is untouched
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-4)
    assert torch.nn.functional.cosine_similarity(before.flatten(1), after.flatten(1)).min() > 0.99999
    state = copy.deepcopy(folded.state_dict())
    folded.fold_batchnorm()
    assert all(torch.equal(state[k], v) for k, v in folded.state_dict().items())
