"""EfficientNet-Lite0/1/2: the network, the part of it a FeatureExtractor runs, and the renaming of the weight
file's keys.

Lite0 channels per layer (see :mod:`adlib.backbones.architectures` for the names) 16 24 40 80 112 192 320 1280;
Lite2 16 24 48 88 120 208 352 1280. Convolutions use TensorFlow's 'SAME' padding computed from the actual input
size, exactly as the weights were trained, so a map has ceil(size / stride) pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (width, depth) multipliers of Lite0/1/2 (Lite: the stem, the head and the first and last block groups are
# not scaled).
_LITE_SCALING = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2)}
# Block groups of the unscaled network: (repeats, kernel, stride, expansion, output channels).
_LITE_BASE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                     (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_LITE_STEM, _LITE_HEAD = 32, 1280


def _round_width(channels: int, width: float) -> int:
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never more than 10 % down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def lite_stage_specs(arch: str) -> list[tuple[int, int, int, int, int, int]]:
    """(repeats, kernel, stride, expansion, in channels, out channels) of the seven block groups of ``arch``."""
    width, depth = _LITE_SCALING[arch]
    specs, in_channels = [], _LITE_STEM
    for i, (repeats, kernel, stride, expand, out) in enumerate(_LITE_BASE_STAGES):
        if 0 < i < len(_LITE_BASE_STAGES) - 1:
            repeats = math.ceil(depth * repeats)
        out = _round_width(out, width)
        specs.append((repeats, kernel, stride, expand, in_channels, out))
        in_channels = out
    return specs


class SameConv2d(nn.Conv2d):
    """Bias-free convolution with TensorFlow's 'SAME' padding: output size ceil(input / stride).

    Stride 1 (odd kernel): the symmetric padding k // 2. Stride 2: TF pads (total) max((out-1) s + k - in, 0),
    the smaller half on the top/left, computed from the actual input size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride, padding=kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            k, s = self.kernel_size[0], self.stride[0]
            pad_h = max((-(-x.shape[-2] // s) - 1) * s + k - x.shape[-2], 0)
            pad_w = max((-(-x.shape[-1] // s) - 1) * s + k - x.shape[-1], 0)
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             relu6: bool = True) -> nn.Sequential:
    layers = [SameConv2d(in_channels, out_channels, kernel, stride, groups), nn.BatchNorm2d(out_channels, eps=1e-3)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConvLite(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise kxk, 1x1 linear projection."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self.expand = _conv_bn(in_channels, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, out_channels, 1, relu6=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y  # (drop-connect only matters for training from scratch)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 (Tan & Le 2019, Lite variant): EfficientNet-B without squeeze-excitation, ReLU6
    instead of swish, stem (32 ch) and head (1280 ch) not scaled. Written for this project; its logits equal
    those of the ``efficientnet_lite_pytorch`` package's network with the same weights (max abs diff 0.0 at
    the native 224/240/260 px and at 97/128 px, checked when this was written).

    Modules: ``stem`` (3x3/2), ``stages`` (the seven block groups, :func:`lite_stage_specs`), ``head`` (1x1 to
    1280 ch), ``classifier`` (1000 ImageNet classes, after global average pooling; dropout omitted - eval only).
    """

    def __init__(self, arch: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__()
        self.arch = arch
        self.stem = _conv_bn(3, _LITE_STEM, 3, stride=2)
        self.stages = nn.ModuleList()
        for repeats, kernel, stride, expand, cin, cout in lite_stage_specs(arch):
            self.stages.append(nn.Sequential(*[MBConvLite(cin if j == 0 else cout, cout, kernel,
                                                          stride if j == 0 else 1, expand) for j in range(repeats)]))
        self.head = _conv_bn(cout, _LITE_HEAD, 1)
        self.classifier = nn.Linear(_LITE_HEAD, num_classes)
        for m in self.modules():  # torchvision's EfficientNet initialisation (used by weights='random')
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(self.head(x).mean(dim=(2, 3)))


class _LiteFeatures(nn.Module):
    """The part of an EfficientNetLite a FeatureExtractor needs: ``body(x) -> {layer name: features}``."""

    def __init__(self, model: EfficientNetLite, return_nodes: dict[str, str]):
        super().__init__()
        self.return_nodes = dict(return_nodes)  # node -> layer name
        last = max((int(n.split(".")[1]) for n in return_nodes if n.startswith("stages.")), default=-1)
        self.stem = model.stem
        self.stages = nn.ModuleList(model.stages[:len(model.stages) if "head" in return_nodes else last + 1])
        self.head = model.head if "head" in return_nodes else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if f"stages.{i}" in self.return_nodes:
                out[self.return_nodes[f"stages.{i}"]] = x
        if self.head is not None:
            out[self.return_nodes["head"]] = self.head(x)
        return out


_LITE_KEY_PARTS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
                   "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}
_LITE_TOP_PARTS = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1",
                   "_fc": "classifier"}


def lite_state_from_package(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename the package file's keys (flat ``_blocks.<j>.``, lukemelas layout) to :class:`EfficientNetLite`'s."""
    blocks = [(i, j) for i, spec in enumerate(lite_stage_specs(arch)) for j in range(spec[0])]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks" and len(parts) == 4:
                i, j = blocks[int(parts[1])]
                new = f"stages.{i}.{j}.{_LITE_KEY_PARTS[parts[2]]}.{parts[3]}"
            elif len(parts) == 2:
                new = f"{_LITE_TOP_PARTS[parts[0]]}.{parts[1]}"
            else:
                raise KeyError(key)
        except (KeyError, IndexError, ValueError):
            raise RuntimeError(f"unexpected key {key!r} in the {arch} weights file") from None
        renamed[new] = value
    return renamed
