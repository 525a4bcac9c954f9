"""FeatureExtractor: frozen intermediate features of a pretrained CNN, with the input adaptation in one place;
`describe_weights`: the result-row columns that name the weights it used.

Input adaptation, :meth:`FeatureExtractor.prepare`:
  1. uint8 input is scaled to [0, 1]; float input must already be in [0, 1];
  2. grayscale (1 channel) is repeated to 3 channels (all sources expect RGB);
  3. resize: to ``input_size`` x ``input_size`` when given (bilinear, antialiased when shrinking); otherwise
     images keep their size, except that images smaller than ``MIN_INPUT_SIZE`` = 32 px (e.g. 28 px MedMNIST)
     are upsampled to 32 px. 32 px is the CIFAR-10 pretraining resolution and the smallest size at which
     every exposed layer of every architecture still has a spatial map of at least 1 x 1 (DenseNet121's
     denseblock4 needs 32 px; at 28 px its last transition pooling would get an empty map);
  4. normalisation with the mean/std the weights were trained with (:mod:`adlib.backbones.weights`).

The extractor's parameters are frozen (``requires_grad=False``) and it stays in eval mode even inside a model
that is put in training mode. Its forward pass is *not* wrapped in ``no_grad`` so that a perceptual loss
(DPA) can back-propagate to the input; wrap calls in ``torch.no_grad()`` when only features are needed.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from .architectures import LAYERS, LITE_ARCHS, _check_arch
from .efficientnet_lite import _LiteFeatures
from .weights import WeightsInfo, load_backbone

# the smallest side images are upsampled to (the resize policy above)
MIN_INPUT_SIZE = 32


class FeatureExtractor(nn.Module):
    """Frozen intermediate features of a pretrained CNN: ``ext(x) -> {layer: (N, C, h, w)}``.

    x: float in [0, 1] (or uint8), shape (N, 1 | 3, H, W). See the module docstring for the input adaptation.
    """

    def __init__(self, arch: str, layers: str | Iterable[str], weights: str = "auto", seed: int = 0,
                 input_size: int | None = None, directory: str | os.PathLike | None = None):
        super().__init__()
        _check_arch(arch)
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            raise ValueError("give at least one layer")
        unknown = [name for name in layers if name not in LAYERS[arch]]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} for {arch}; available: {', '.join(LAYERS[arch])}")
        if input_size is not None and input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be >= {MIN_INPUT_SIZE} (got {input_size})")
        model, info = load_backbone(arch, weights, seed, directory)
        self.arch, self.layers, self.input_size, self.seed = arch, layers, input_size, seed
        self.info = info
        self.weights_source = info.source
        self.weights_sha256 = info.sha256
        self.weights_file = info.file
        nodes = {LAYERS[arch][name]: name for name in layers}
        if arch in LITE_ARCHS:  # TF 'SAME' padding depends on the input size: not FX-traceable, a plain module
            self.body = _LiteFeatures(model, nodes)
        else:
            self.body = create_feature_extractor(model, nodes)
        self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        super().train(False)
        with torch.no_grad():
            probe = self(torch.zeros(1, 3, input_size or MIN_INPUT_SIZE, input_size or MIN_INPUT_SIZE))
        self.out_channels = {name: int(t.shape[1]) for name, t in probe.items()}

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Always eval: BatchNorm statistics and dropout of a frozen backbone must not change.
        return super().train(False)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The spatial size images of (height, width) are resized to before the network (the resize policy)."""
        if self.input_size is not None:
            return self.input_size, self.input_size
        return max(height, MIN_INPUT_SIZE), max(width, MIN_INPUT_SIZE)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Input adaptation: [0,1] floats, 3 channels, resize policy, the weights' normalisation."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"expected a tensor of shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            raise ValueError(f"expected float images in [0, 1] or uint8, got {x.dtype}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"expected 1 (grayscale) or 3 (RGB) channels, got {x.shape[1]}")
        size = self.target_size(x.shape[-2], x.shape[-1])
        if size != tuple(x.shape[-2:]):
            shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.body(self.prepare(x))
        return {name: out[name] for name in self.layers}  # in the order asked for

    def extra_repr(self) -> str:
        return f"arch={self.arch}, layers={self.layers}, weights={self.weights_source}, input_size={self.input_size}"


def describe_weights(ext: "FeatureExtractor | WeightsInfo") -> dict[str, str]:
    """The columns that say which weights produced a result row: source, file name, SHA-256."""
    info = ext if isinstance(ext, WeightsInfo) else ext.info
    return {"weights": info.source, "weights_file": info.file, "weights_sha256": info.sha256}
